//! Core behaviour of dfsd against a real cluster: round trips, dedup, atomic overwrites,
//! compare-and-swap, ranges, failures during writes and reads, restarts.

use std::time::{Duration, Instant};

use dfsd::client::{PutOptions, ReadRange};
use testkit::{random_bytes, stderr, wait_until, Opts, TestCluster};

const MIB: usize = 1024 * 1024;
const CHUNK: usize = 8 * MIB;

fn put_bytes(c: &TestCluster, remote: &str, data: &[u8], extra: &[&str]) -> std::process::Output {
    let local = c.dir.path().join(format!("in-{}", rand::random::<u64>()));
    std::fs::write(&local, data).unwrap();
    let mut args = vec!["put", local.to_str().unwrap(), remote];
    args.extend_from_slice(extra);
    c.cli(&args)
}

fn get_bytes(c: &TestCluster, remote: &str) -> Vec<u8> {
    let out = c.cli(&["get", remote, "-"]);
    assert!(out.status.success(), "get {remote}: {}", stderr(&out));
    out.stdout
}

#[test]
fn round_trips_at_chunk_boundaries_and_100_mib() {
    let c = TestCluster::start(3);
    for (i, len) in [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 100 * MIB]
        .into_iter()
        .enumerate()
    {
        let data = random_bytes(len, i as u64);
        let remote = format!("/rt/file-{len}");
        let out = put_bytes(&c, &remote, &data, &[]);
        assert!(out.status.success(), "put {len}: {}", stderr(&out));
        // To a file (temp + rename) and to stdout.
        let local = c.dir.path().join(format!("out-{len}"));
        let out = c.cli(&["get", &remote, local.to_str().unwrap()]);
        assert!(out.status.success(), "get {len}: {}", stderr(&out));
        assert!(
            std::fs::read(&local).unwrap() == data,
            "file round trip of {len} bytes differs"
        );
        assert!(
            get_bytes(&c, &remote) == data,
            "stdout round trip of {len} bytes differs"
        );
    }
    // Every chunk of the 100 MiB file has 3 replicas, on distinct nodes.
    let total: usize = (0..3).map(|i| c.chunk_files(i).len()).sum();
    let distinct: std::collections::HashSet<_> = (0..3)
        .flat_map(|i| c.chunk_files(i))
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(
        total,
        distinct.len() * 3,
        "every chunk on every one of the 3 nodes"
    );
    // No temporary files left behind anywhere.
    for i in 0..3 {
        assert_eq!(
            std::fs::read_dir(c.node_dir(i).join("tmp"))
                .unwrap()
                .count(),
            0
        );
    }
}

#[test]
fn empty_stdin_and_stdin_round_trip() {
    let c = TestCluster::start(3);
    let out = c.cli_stdin(&["put", "-", "/empty"], Some(b""));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_bytes(&c, "/empty"), b"");
    let stat = c.cli(&["stat", "/empty"]);
    assert!(
        String::from_utf8_lossy(&stat.stdout).contains("size:        0"),
        "{stat:?}"
    );
    let data = random_bytes(3 * MIB + 17, 9);
    let out = c.cli_stdin(
        &["put", "-", "/from-stdin", "--chunk-size", "1MiB"],
        Some(&data),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(get_bytes(&c, "/from-stdin") == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn dedup_sends_no_bytes_and_stores_nothing_new() {
    let c = TestCluster::start(3);
    let client = c.client();
    let data = random_bytes(20 * MIB, 1);
    let first = client
        .put(&data[..], "/a", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(first.uploaded_chunks, 3);
    assert_eq!(first.bytes_sent, data.len() as u64);
    let files_before: Vec<_> = (0..3).map(|i| c.chunk_files(i)).collect();
    let second = client
        .put(&data[..], "/b", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(
        second.bytes_sent, 0,
        "no chunk bytes sent for known content"
    );
    assert_eq!(second.deduplicated_chunks, 3);
    assert_eq!(
        (0..3).map(|i| c.chunk_files(i)).collect::<Vec<_>>(),
        files_before,
        "nothing new stored"
    );
    let mut back = Vec::new();
    client
        .get("/b", &mut back, ReadRange::default())
        .await
        .unwrap();
    assert!(back == data);
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_is_atomic_under_concurrent_readers() {
    let c = TestCluster::start(3);
    let client = c.client();
    let opts = PutOptions {
        chunk_size: Some(64 * 1024),
        ..Default::default()
    };
    let a = vec![b'a'; 5 * 64 * 1024 + 100];
    let b = vec![b'b'; 3 * 64 * 1024 + 7];
    client.put(&a[..], "/f", &opts).await.unwrap();

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut readers = Vec::new();
    for _ in 0..3 {
        let (client, stop, a, b) = (client.clone(), stop.clone(), a.clone(), b.clone());
        readers.push(tokio::spawn(async move {
            let mut reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let mut out = Vec::new();
                match client.get("/f", &mut out, ReadRange::default()).await {
                    Ok(_) => assert!(
                        out == a || out == b,
                        "read a mix of versions ({} bytes)",
                        out.len()
                    ),
                    // A reader paging across a swap is told so; never given mixed bytes.
                    Err(e) => panic!("read failed: {e}"),
                }
                reads += 1;
            }
            reads
        }));
    }
    for i in 0..30u32 {
        let data = if i.is_multiple_of(2) { &b } else { &a };
        client.put(&data[..], "/f", &opts).await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut total = 0;
    for r in readers {
        total += r.await.unwrap();
    }
    assert!(total > 0);
    let entry = client.stat("/f").await.unwrap();
    assert_eq!(entry.version, 31);
}

#[test]
fn twenty_concurrent_no_clobber_puts_have_one_winner() {
    let c = TestCluster::start(3);
    let mut locals = Vec::new();
    for i in 0..20 {
        let p = c.dir.path().join(format!("nc-{i}"));
        std::fs::write(&p, format!("writer {i}").repeat(1000)).unwrap();
        locals.push(p);
    }
    let outputs: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = locals
            .iter()
            .map(|p| s.spawn(|| c.cli(&["put", "--no-clobber", p.to_str().unwrap(), "/contended"])))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let winners: Vec<usize> = (0..20).filter(|&i| outputs[i].status.success()).collect();
    assert_eq!(winners.len(), 1, "exactly one winner");
    for (i, o) in outputs.iter().enumerate() {
        if !o.status.success() {
            assert!(
                stderr(o).contains("/contended: already exists"),
                "loser {i}: {}",
                stderr(o)
            );
            assert_eq!(
                stderr(o).trim().lines().count(),
                1,
                "one-line error: {}",
                stderr(o)
            );
        }
    }
    let content = get_bytes(&c, "/contended");
    assert_eq!(
        content,
        std::fs::read(&locals[winners[0]]).unwrap(),
        "the winner's bytes are stored"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn range_reads_fetch_only_what_they_need() {
    let c = TestCluster::start(3);
    let client = c.client();
    let opts = PutOptions {
        chunk_size: Some(MIB as u64),
        ..Default::default()
    };
    let data = random_bytes(5 * MIB + 333, 4);
    client.put(&data[..], "/r", &opts).await.unwrap();
    let cases: [(u64, Option<u64>); 8] = [
        (0, Some(10)),
        (MIB as u64 - 5, Some(10)),
        (MIB as u64, Some(MIB as u64)),
        (123_456, Some(3 * MIB as u64)),
        (5 * MIB as u64, None),
        (data.len() as u64 - 1, Some(100)),
        (data.len() as u64, None),
        (0, None),
    ];
    for (offset, length) in cases {
        let mut out = Vec::new();
        let report = client
            .get("/r", &mut out, ReadRange { offset, length })
            .await
            .unwrap();
        let end = length
            .map(|l| (offset + l).min(data.len() as u64))
            .unwrap_or(data.len() as u64);
        assert!(
            out[..] == data[offset as usize..end as usize],
            "range {offset}+{length:?}"
        );
        let first = offset / MIB as u64;
        let last = if end > offset {
            (end - 1) / MIB as u64 + 1
        } else {
            first
        };
        assert_eq!(
            report.chunks_fetched as u64,
            last - first,
            "only needed chunks for {offset}+{length:?}"
        );
    }
    // Via the CLI, and beyond the end.
    let out = c.cli(&["get", "/r", "-", "--offset", "1048570", "--length", "12"]);
    assert_eq!(out.stdout, data[1048570..1048582]);
    let out = c.cli(&["get", "/r", "-", "--offset", "99999999"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("beyond the end"), "{}", stderr(&out));
}

#[test]
fn datanode_killed_mid_put_does_not_fail_it() {
    let mut c = TestCluster::start_with(Opts {
        nodes: 4,
        replication: 3,
        ..Default::default()
    });
    let data = random_bytes(120 * MIB, 5);
    let local = c.dir.path().join("big");
    std::fs::write(&local, &data).unwrap();
    let mut put = c
        .cli_command()
        .args([
            "put",
            "--chunk-size",
            "1MiB",
            local.to_str().unwrap(),
            "/big",
        ])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a node once the upload is visibly under way on it.
    wait_until(
        "upload under way on node 1",
        Duration::from_secs(60),
        || c.chunk_files(1).len() >= 5,
    );
    c.kill_node(1);
    let status = put.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(put.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "put failed after a node died: {err}");
    assert!(get_bytes(&c, "/big") == data, "file reads back intact");
}

#[test]
fn corrupt_replica_is_skipped_and_reported() {
    let c = TestCluster::start(3);
    let data = random_bytes(2 * MIB, 6);
    assert!(put_bytes(&c, "/c", &data, &["--chunk-size", "1MiB"])
        .status
        .success());
    // Corrupt every chunk on node 0 and truncate every chunk on node 1: only node 2 is good.
    for p in c.chunk_files(0) {
        let mut b = std::fs::read(&p).unwrap();
        b[1000] ^= 0x55;
        std::fs::write(&p, b).unwrap();
    }
    for p in c.chunk_files(1) {
        let b = std::fs::read(&p).unwrap();
        std::fs::write(&p, &b[..b.len() / 2]).unwrap();
    }
    // Reads try replicas in random order, so keep reading (each read must be right) until
    // reads have met every bad replica; each was verified by its holder and moved aside.
    let quarantined = |i: usize| {
        std::fs::read_dir(c.node_dir(i).join("quarantine"))
            .unwrap()
            .count()
    };
    wait_until(
        "bad replicas found by reads and quarantined",
        Duration::from_secs(30),
        || {
            assert!(get_bytes(&c, "/c") == data, "get returned wrong bytes");
            quarantined(0) == 2 && quarantined(1) == 2
        },
    );
    // ...and the cluster restores good copies in their place.
    wait_until("good copies restored", Duration::from_secs(30), || {
        (0..3).all(|i| {
            let files = c.chunk_files(i);
            files.len() == 2
                && files.iter().all(|p| {
                    dfsd::chunk::ChunkId::of(&std::fs::read(p).unwrap()).to_hex()
                        == p.file_name().unwrap().to_str().unwrap()
                })
        })
    });
    assert!(get_bytes(&c, "/c") == data);
}

#[test]
fn no_intact_replica_is_an_error_not_wrong_bytes() {
    let c = TestCluster::start(3);
    let data = random_bytes(MIB, 7);
    assert!(put_bytes(&c, "/d", &data, &[]).status.success());
    for i in 0..3 {
        for p in c.chunk_files(i) {
            let mut b = std::fs::read(&p).unwrap();
            b[0] ^= 1;
            std::fs::write(&p, b).unwrap();
        }
    }
    let local = c.dir.path().join("d-out");
    let out = c.cli(&["get", "/d", local.to_str().unwrap()]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no replica returned intact data"),
        "{}",
        stderr(&out)
    );
    assert!(!local.exists(), "no partial download left in place");
    let out = c.cli(&["get", "/d", "-"]);
    assert!(
        out.stdout.is_empty(),
        "not a byte of unverified data written"
    );
}

#[test]
fn coordinator_restart_keeps_everything() {
    let mut c = TestCluster::start(3);
    let data = random_bytes(9 * MIB, 8);
    assert!(put_bytes(&c, "/keep/one", &data, &[]).status.success());
    assert!(c.cli(&["mkdir", "-p", "/keep/empty/dir"]).status.success());
    c.kill_coordinator();
    c.start_coordinator();
    assert!(get_bytes(&c, "/keep/one") == data);
    let ls = String::from_utf8(c.cli(&["ls", "/keep"]).stdout).unwrap();
    assert_eq!(ls, "empty/\none\n");
    c.wait_alive(3);
    assert!(
        put_bytes(&c, "/keep/two", &data, &[]).status.success(),
        "puts work again"
    );
    let nodes = c.node_infos();
    assert_eq!(nodes.len(), 3, "same three node identities");
}

#[test]
fn not_enough_nodes_fails_clearly_and_changes_nothing() {
    let c = TestCluster::start(2);
    let out = put_bytes(&c, "/x", b"hello", &["--replication", "3"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("not enough live datanodes") && e.contains("write quorum is 3"),
        "{e}"
    );
    assert!(
        !c.cli(&["stat", "/x"]).status.success(),
        "namespace unchanged"
    );
    // A lower write quorum lets it through with the replicas available.
    let out = put_bytes(
        &c,
        "/x",
        b"hello",
        &["--replication", "3", "--write-quorum", "2"],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(get_bytes(&c, "/x"), b"hello");
}

#[test]
fn unreachable_coordinator_fails_within_seconds() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let start = Instant::now();
    let out = std::process::Command::new(testkit::bin())
        .args(["--coordinator", &format!("127.0.0.1:{port}"), "ls", "/"])
        .env_remove("DFSD_COORDINATOR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains(&format!(
            "cannot reach coordinator at http://127.0.0.1:{port}"
        )),
        "{e}"
    );
    assert_eq!(e.trim().lines().count(), 1);
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "gave up in {:?}",
        start.elapsed()
    );
}

#[test]
fn node_declared_dead_before_commit_does_not_fail_the_put() {
    use std::io::Write;
    let mut c = TestCluster::start_with(Opts {
        nodes: 4,
        replication: 3,
        ..Default::default()
    });
    let data = random_bytes(12 * MIB, 11);
    let mut put = c
        .cli_command()
        .args(["put", "--chunk-size", "1MiB", "-", "/paced"])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = put.stdin.take().unwrap();
    // The first half is stored at full replication (3 of 4 nodes per chunk)...
    stdin.write_all(&data[..6 * MIB]).unwrap();
    stdin.flush().unwrap();
    wait_until("first chunks stored", Duration::from_secs(30), || {
        (0..4).map(|i| c.chunk_files(i).len()).sum::<usize>() >= 5 * 3
    });
    // ...then a node holding some of them dies and is declared dead before the commit, so
    // those chunks fall below the write quorum of 3.
    let victim = (0..4).max_by_key(|&i| c.chunk_files(i).len()).unwrap();
    let victim_id = std::fs::read_to_string(c.node_dir(victim).join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    c.kill_node(victim);
    wait_until("victim declared dead", Duration::from_secs(30), || {
        c.node_infos()
            .iter()
            .any(|n| n.node_id == victim_id && n.state == Some(dfsd::model::NodeState::Dead))
    });
    stdin.write_all(&data[6 * MIB..]).unwrap();
    drop(stdin);
    let status = put.wait().unwrap();
    let mut err = String::new();
    std::io::Read::read_to_string(put.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(status.success(), "put failed: {err}");
    assert!(get_bytes(&c, "/paced") == data, "file reads back intact");
}

/// A datanode started outside the harness with the given cluster and public addresses,
/// listening on `listen`; SIGKILLed (by its PID) when dropped.
struct OwnNode(std::process::Child);

impl OwnNode {
    fn start(c: &TestCluster, listen: u16, advertise: u16, public: u16) -> OwnNode {
        let data = c.dir.path().join(format!("own-node-{listen}"));
        let log =
            std::fs::File::create(c.dir.path().join(format!("own-node-{listen}.log"))).unwrap();
        let args: Vec<String> = [
            "datanode",
            "--join",
            c.coordinator_addr.as_str(),
            "--listen",
            &format!("127.0.0.1:{listen}"),
            "--advertise",
            &format!("127.0.0.1:{advertise}"),
            "--public-advertise",
            &format!("127.0.0.1:{public}"),
            "--data-dir",
            data.to_str().unwrap(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let child = c
            .server_command(&args)
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        OwnNode(child)
    }
}

impl Drop for OwnNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// docker/compose.yml publishes each datanode on the host and names that port as its
/// public address: a client dials a datanode's public address when a connection opens
/// there, and its cluster address otherwise. Each case here leaves the client only one
/// address that works (the other port has nothing listening), so a put and a get that
/// read back the same bytes prove which one it took.
#[test]
fn clients_use_a_datanodes_public_address_only_when_it_answers() {
    for public_works in [true, false] {
        let c = TestCluster::start_with(Opts {
            nodes: 0,
            replication: 1,
            ..Opts::default()
        });
        // The listen port must be known before the node starts (it is also an advertised
        // address): a port free now, bound by the node a moment later.
        let (listen, closed) = (testkit::closed_port(), testkit::closed_port());
        let (advertise, public) = match public_works {
            true => (closed, listen),
            false => (listen, closed),
        };
        let _node = OwnNode::start(&c, listen, advertise, public);
        c.wait_alive(1);
        let info = &c.node_infos()[0];
        assert_eq!(info.addr, format!("http://127.0.0.1:{advertise}"));
        assert_eq!(info.public_addr, format!("http://127.0.0.1:{public}"));

        let data = random_bytes(CHUNK + 777, 31);
        // The node takes chunk requests once its token key arrives, just after it is
        // listed alive: the first put may be refused for that moment.
        let mut last = String::new();
        wait_until(
            &format!("a put through the only working address (public works: {public_works})"),
            Duration::from_secs(20),
            || {
                let out = put_bytes(&c, "/routed", &data, &[]);
                last = stderr(&out);
                out.status.success()
            },
        );
        assert!(
            get_bytes(&c, "/routed") == data,
            "reads back intact: {last}"
        );
    }
}
