//! Self-healing against a real cluster with short timeouts: failure detection,
//! re-replication, trimming, garbage collection, scrubbing, drain, restart safety.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use testkit::{random_bytes, stderr, wait_until, Opts, TestCluster};

const MIB: usize = 1024 * 1024;

fn opts(nodes: usize, extra: &[(&str, &str)]) -> Opts {
    let mut env: Vec<(String, String)> = [
        ("DFSD_COORDINATOR__MAINTENANCE_INTERVAL", "300ms"),
        ("DFSD_COORDINATOR__GC_GRACE", "2s"),
        ("DFSD_COORDINATOR__SAFE_MODE_TIMEOUT", "20s"),
        ("DFSD_COORDINATOR__REPAIR_PER_NODE", "4"),
        ("DFSD_DATANODE__SCRUB_START_DELAY", "1h"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        env.retain(|(ek, _)| ek != k);
        env.push((k.to_string(), v.to_string()));
    }
    Opts {
        nodes,
        replication: 3,
        env,
    }
}

fn put(c: &TestCluster, remote: &str, data: &[u8], extra: &[&str]) {
    let local = c.dir.path().join(format!("in-{}", rand::random::<u64>()));
    std::fs::write(&local, data).unwrap();
    let mut args = vec!["put", local.to_str().unwrap(), remote];
    args.extend_from_slice(extra);
    let out = c.cli(&args);
    assert!(out.status.success(), "put {remote}: {}", stderr(&out));
}

fn get(c: &TestCluster, remote: &str) -> Vec<u8> {
    let out = c.cli(&["get", remote, "-"]);
    assert!(out.status.success(), "get {remote}: {}", stderr(&out));
    out.stdout
}

fn fsck(c: &TestCluster) -> serde_json::Value {
    let out = c.cli(&["fsck", "--json", "/"]);
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("fsck json: {e}: {}", stderr(&out)))
}

fn status(c: &TestCluster) -> serde_json::Value {
    let out = c.cli(&["status", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// chunk id -> nodes (indices) whose disk holds it.
fn placement(c: &TestCluster, nodes: &[usize]) -> HashMap<String, Vec<usize>> {
    let mut out: HashMap<String, Vec<usize>> = HashMap::new();
    for &i in nodes {
        for p in c.chunk_files(i) {
            out.entry(p.file_name().unwrap().to_string_lossy().into_owned())
                .or_default()
                .push(i);
        }
    }
    out
}

fn fully_replicated(c: &TestCluster, live: &[usize], want: usize) -> bool {
    let f = fsck(c);
    f["under_replicated_chunks"] == 0
        && f["missing_chunks"] == 0
        && placement(c, live)
            .values()
            .all(|holders| holders.len() == want)
}

fn node_id(c: &TestCluster, i: usize) -> String {
    std::fs::read_to_string(c.node_dir(i).join("node_id"))
        .unwrap()
        .trim()
        .to_string()
}

#[test]
fn sigkill_of_one_of_four_restores_three_replicas() {
    let mut c = TestCluster::start_with(opts(4, &[]));
    let data = random_bytes(200 * MIB, 1);
    put(&c, "/big", &data, &[]);
    let victim = 2;
    assert!(!c.chunk_files(victim).is_empty());
    c.kill_node(victim);
    let live = [0, 1, 3];
    wait_until(
        "every chunk back to 3 live replicas",
        Duration::from_secs(120),
        || fully_replicated(&c, &live, 3),
    );
    assert!(
        get(&c, "/big") == data,
        "file reads back intact with the node still down"
    );
    let s = status(&c);
    assert_eq!(s["nodes"]["dead"], 1);
    assert!(s["repair"]["done"].as_u64().unwrap() > 0);
}

#[test]
fn two_holders_lost_then_the_third_after_repair() {
    let mut c = TestCluster::start_with(opts(5, &[]));
    let data = random_bytes(3 * MIB, 2);
    put(&c, "/f", &data, &["--chunk-size", "1MiB"]);
    let first = placement(&c, &[0, 1, 2, 3, 4]);
    // Pick one chunk and kill two of its holders.
    let (_, holders) = first.iter().next().unwrap();
    let (a, b, third) = (holders[0], holders[1], holders[2]);
    c.kill_node(a);
    c.kill_node(b);
    assert!(get(&c, "/f") == data, "reads from the third holder");
    let live: Vec<usize> = (0..5).filter(|i| *i != a && *i != b).collect();
    wait_until("repair to 3 live replicas", Duration::from_secs(60), || {
        fully_replicated(&c, &live, 3)
    });
    c.kill_node(third);
    assert!(
        get(&c, "/f") == data,
        "survives losing the third original holder"
    );
}

#[test]
fn scrubber_finds_flipped_truncated_and_deleted_chunks() {
    let c = TestCluster::start_with(opts(
        4,
        &[
            ("DFSD_DATANODE__SCRUB_START_DELAY", "500ms"),
            ("DFSD_DATANODE__SCRUB_PERIOD", "1s"),
            ("DFSD_DATANODE__SCRUB_RATE", "1GiB"),
        ],
    ));
    let data = random_bytes(3 * MIB, 3);
    put(&c, "/s", &data, &["--chunk-size", "1MiB"]);
    let all = [0, 1, 2, 3];
    // Flip a byte, truncate, delete: three different chunks on whichever nodes hold them.
    let chunks: Vec<(String, Vec<usize>)> = placement(&c, &all).into_iter().collect();
    assert_eq!(chunks.len(), 3);
    let path_of = |id: &str, node: usize| {
        c.chunk_files(node)
            .into_iter()
            .find(|p| p.file_name().unwrap() == id)
            .unwrap()
    };
    let p = path_of(&chunks[0].0, chunks[0].1[0]);
    let mut b = std::fs::read(&p).unwrap();
    b[77] ^= 0x80;
    std::fs::write(&p, b).unwrap();
    let p = path_of(&chunks[1].0, chunks[1].1[0]);
    let b = std::fs::read(&p).unwrap();
    std::fs::write(&p, &b[..b.len() - 1]).unwrap();
    std::fs::remove_file(path_of(&chunks[2].0, chunks[2].1[0])).unwrap();
    // No read yet: a client read would find and report the damage itself; this test is
    // about the scrubber finding it unaided. (Reads of damaged files: tests/core.rs.)
    wait_until(
        "scrubber found 2 corrupt chunks",
        Duration::from_secs(60),
        || status(&c)["scrub"]["errors"].as_u64().unwrap() >= 2,
    );
    wait_until("all three restored", Duration::from_secs(60), || {
        fully_replicated(&c, &all, 3)
            && placement(&c, &all).iter().all(|(id, holders)| {
                holders.iter().all(|&n| {
                    let bytes = std::fs::read(path_of(id, n)).unwrap();
                    dfsd::chunk::ChunkId::of(&bytes).to_hex() == *id
                })
            })
    });
    assert!(get(&c, "/s") == data);
}

#[test]
fn coordinator_restart_deletes_nothing_and_copies_nothing() {
    let mut c = TestCluster::start_with(opts(4, &[]));
    let data = random_bytes(20 * MIB, 4);
    put(&c, "/a", &data, &["--chunk-size", "1MiB"]);
    put(&c, "/b", &data[..5 * MIB], &["--chunk-size", "1MiB"]);
    let before: Vec<_> = (0..4).map(|i| c.chunk_files(i)).collect();
    c.kill_coordinator();
    c.start_coordinator();
    c.wait_alive(4);
    wait_until("safe mode over", Duration::from_secs(30), || {
        status(&c)["safe_mode"] == false
    });
    // Give the maintenance loop several rounds to do anything it (wrongly) would.
    std::thread::sleep(Duration::from_secs(3));
    let after: Vec<_> = (0..4).map(|i| c.chunk_files(i)).collect();
    assert_eq!(before, after, "no chunk deleted or copied");
    let s = status(&c);
    assert_eq!(s["repair"]["done"], 0);
    assert_eq!(s["under_replicated"], 0);
    assert!(get(&c, "/a") == data);
    put(&c, "/c", b"new", &[]);
}

#[test]
fn dead_node_that_returns_is_trimmed_and_counts_again() {
    let mut c = TestCluster::start_with(opts(4, &[]));
    let data = random_bytes(6 * MIB, 5);
    put(&c, "/t", &data, &["--chunk-size", "1MiB"]);
    let victim = (0..4).max_by_key(|&i| c.chunk_files(i).len()).unwrap();
    let held = c.chunk_files(victim).len();
    c.kill_node(victim);
    let live: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    wait_until(
        "repaired while the node is away",
        Duration::from_secs(60),
        || fully_replicated(&c, &live, 3),
    );
    c.start_node(victim);
    // Its copies are extra now: trimmed back to exactly 3 per chunk, across all 4 nodes.
    wait_until("surplus trimmed", Duration::from_secs(60), || {
        fully_replicated(&c, &[0, 1, 2, 3], 3) && status(&c)["over_replicated"] == 0
    });
    let info = c
        .node_infos()
        .into_iter()
        .find(|n| n.node_id == node_id(&c, victim))
        .unwrap();
    assert_eq!(info.state, Some(dfsd::model::NodeState::Alive));
    assert_eq!(
        info.replicas as usize,
        c.chunk_files(victim).len(),
        "its remaining chunks count again"
    );
    assert!(held > 0);
    assert!(get(&c, "/t") == data);
}

#[test]
fn deleted_files_are_collected_but_shared_chunks_kept() {
    let c = TestCluster::start_with(opts(3, &[]));
    let shared = random_bytes(MIB, 6);
    let only_a = random_bytes(MIB, 7);
    let a: Vec<u8> = shared.iter().chain(&only_a).copied().collect();
    let b: Vec<u8> = shared
        .iter()
        .chain(&random_bytes(MIB, 8))
        .copied()
        .collect();
    put(&c, "/a", &a, &["--chunk-size", "1MiB"]);
    put(&c, "/b", &b, &["--chunk-size", "1MiB"]);
    let shared_id = dfsd::chunk::ChunkId::of(&shared).to_hex();
    let only_a_id = dfsd::chunk::ChunkId::of(&only_a).to_hex();
    // Heartbeats carry the figures: wait until they show all three chunks on all three
    // nodes, or the baseline would be short.
    let used_now = || c.node_infos().iter().map(|n| n.used_bytes).sum::<u64>();
    wait_until(
        "heartbeats report the stored chunks",
        Duration::from_secs(10),
        || used_now() >= 9 * MIB as u64,
    );
    let used_before = used_now();
    assert!(c.cli(&["rm", "/a"]).status.success());
    wait_until(
        "a's own chunk gone from every disk",
        Duration::from_secs(30),
        || c.holders(&only_a_id).is_empty(),
    );
    assert_eq!(
        c.holders(&shared_id).len(),
        3,
        "the chunk /b shares is kept"
    );
    wait_until("used bytes drop", Duration::from_secs(10), || {
        c.node_infos().iter().map(|n| n.used_bytes).sum::<u64>() <= used_before - 3 * MIB as u64
    });
    assert!(get(&c, "/b") == b);
    assert!(status(&c)["gc"]["freed_bytes"].as_u64().unwrap() >= 3 * MIB as u64);
}

#[test]
fn client_killed_mid_upload_leaves_nothing_after_grace() {
    let c = TestCluster::start_with(opts(3, &[("DFSD_COORDINATOR__UPLOAD_IDLE_TIMEOUT", "2s")]));
    let data = random_bytes(200 * MIB, 9);
    let local = c.dir.path().join("big");
    std::fs::write(&local, &data).unwrap();
    let mut child = c
        .cli_command()
        .args([
            "put",
            "--chunk-size",
            "1MiB",
            local.to_str().unwrap(),
            "/partial",
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    wait_until("upload under way", Duration::from_secs(60), || {
        c.chunk_files(0).len() >= 10
    });
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !c.cli(&["stat", "/partial"]).status.success(),
        "the file never appears"
    );
    wait_until(
        "abandoned chunks collected",
        Duration::from_secs(60),
        || (0..3).all(|i| c.chunk_files(i).is_empty()),
    );
    assert_eq!(String::from_utf8(c.cli(&["ls", "/"]).stdout).unwrap(), "");
}

#[test]
fn drained_node_moves_everything_and_can_be_removed() {
    let mut c = TestCluster::start_with(opts(4, &[]));
    let data = random_bytes(8 * MIB, 10);
    put(&c, "/d", &data, &["--chunk-size", "1MiB"]);
    let victim = (0..4).max_by_key(|&i| c.chunk_files(i).len()).unwrap();
    let id = node_id(&c, victim);
    let out = c.cli(&["node", "drain", &id, "--wait"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("safe to remove"), "{}", stderr(&out));
    let rest: Vec<usize> = (0..4).filter(|&i| i != victim).collect();
    assert!(fully_replicated(&c, &rest, 3));
    wait_until("drained node's disk empty", Duration::from_secs(20), || {
        c.chunk_files(victim).is_empty()
    });
    // No new writes go to a draining node.
    put(&c, "/after", b"after the drain", &[]);
    assert!(c.chunk_files(victim).is_empty());
    let nodes = String::from_utf8(c.cli(&["nodes"]).stdout).unwrap();
    assert!(nodes.contains("safe to remove"), "{nodes}");
    // The operator stops the drained node, then removes it (a node still running would
    // simply register again on its next heartbeat).
    c.kill_node(victim);
    assert!(c.cli(&["node", "remove", &id]).status.success());
    assert_eq!(c.node_infos().len(), 3);
    assert!(get(&c, "/d") == data);
}

#[test]
fn remove_is_refused_for_a_live_node_or_a_sole_replica() {
    let mut c = TestCluster::start_with(opts(2, &[]));
    put(&c, "/one", b"only here", &["--replication", "1"]);
    let holder = (0..2).find(|&i| !c.chunk_files(i).is_empty()).unwrap();
    let id = node_id(&c, holder);
    let out = c.cli(&["node", "remove", &id]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("only a dead or drained node"),
        "{}",
        stderr(&out)
    );
    c.kill_node(holder);
    wait_until("node dead", Duration::from_secs(20), || {
        c.node_infos()
            .iter()
            .any(|n| n.node_id == id && n.state == Some(dfsd::model::NodeState::Dead))
    });
    let out = c.cli(&["node", "remove", &id]);
    assert!(
        stderr(&out).contains("only replica of 1 chunk"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn gc_racing_dedup_uploads_never_loses_a_committed_chunk() {
    let c = TestCluster::start_with(opts(
        3,
        &[
            ("DFSD_COORDINATOR__GC_GRACE", "1ms"),
            ("DFSD_COORDINATOR__MAINTENANCE_INTERVAL", "50ms"),
        ],
    ));
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| random_bytes(256 * 1024, 100 + i)).collect();
    let mut kept = HashSet::new();
    for round in 0..15 {
        let blob = &blobs[round % blobs.len()];
        // Write, delete (now garbage at once), and write the same bytes again: the second
        // upload reuses chunks the collector is going after.
        put(
            &c,
            &format!("/tmp{round}"),
            blob,
            &["--chunk-size", "64KiB"],
        );
        assert!(c.cli(&["rm", &format!("/tmp{round}")]).status.success());
        put(
            &c,
            &format!("/keep{round}"),
            blob,
            &["--chunk-size", "64KiB"],
        );
        kept.insert(round);
    }
    std::thread::sleep(Duration::from_secs(2)); // several collection rounds
    for round in kept {
        assert!(
            get(&c, &format!("/keep{round}")) == blobs[round % blobs.len()],
            "/keep{round} lost data"
        );
    }
    let f = fsck(&c);
    assert_eq!(f["missing_chunks"], 0);
    assert_eq!(f["under_replicated_chunks"], 0);
}
