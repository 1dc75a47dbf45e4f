//! Bad input and failures: each gets a clear one-line error, the right gRPC code on the
//! wire, a non-zero exit in the CLI, and loses nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use dfsd::chunk::ChunkId;
use dfsd::proto::pb;
use dfsd::security::token::{Op, WriteScope};
use dfsd::security::Role;
use testkit::{random_bytes, stderr, TestCluster};
use tonic::Code;

fn tree(root: &Path) -> BTreeSet<PathBuf> {
    let mut out = BTreeSet::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p.clone());
            }
            out.insert(p);
        }
    }
    out
}

fn node_addr(c: &TestCluster, i: usize) -> String {
    c.nodes[i].as_ref().unwrap().addr.clone()
}

async fn datanode(
    c: &TestCluster,
    addr: &str,
) -> pb::datanode_client::DatanodeClient<tonic::transport::Channel> {
    pb::datanode_client::DatanodeClient::new(c.raw_channel(addr, Role::Node, None))
}

/// A valid token for `op` on `id` (a token-shaped stand-in when `id` is not a chunk id, so
/// the id itself is what gets refused): these tests are about what datanodes do with bad
/// input from a client that is allowed in.
fn tok(c: &TestCluster, op: Op, id: &str) -> String {
    match id.parse::<ChunkId>() {
        Ok(id) => c.token_key().sign(op, &[id], Duration::from_secs(600)),
        Err(_) => "0.00".into(),
    }
}

/// A write header whose token covers every node of the cluster as a target.
fn header(
    c: &TestCluster,
    id: &str,
    size: u64,
    downstream: Vec<pb::NodeAddr>,
) -> pb::WriteChunkRequest {
    let targets: Vec<pb::NodeAddr> = c
        .node_infos()
        .into_iter()
        .map(|n| pb::NodeAddr {
            node_id: n.node_id.to_string(),
            addr: n.addr,
            public_addr: String::new(),
        })
        .collect();
    let token = match id.parse::<ChunkId>() {
        Ok(chunk) => {
            let scope = WriteScope {
                owner: "",
                targets: targets
                    .iter()
                    .map(|t| (t.node_id.as_str(), t.addr.as_str()))
                    .collect(),
            };
            c.token_key()
                .sign_write(chunk, &scope, Duration::from_secs(600))
        }
        Err(_) => "0.00".into(),
    };
    pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::Header(pb::WriteChunkHeader {
            chunk_id: id.into(),
            size,
            downstream,
            token,
            owner: String::new(),
            targets,
        })),
    }
}

fn end() -> pb::WriteChunkRequest {
    pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::End(true)),
    }
}

fn data(b: &[u8]) -> pb::WriteChunkRequest {
    pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::Data(Bytes::copy_from_slice(
            b,
        ))),
    }
}

async fn write(
    c: &TestCluster,
    addr: &str,
    msgs: Vec<pb::WriteChunkRequest>,
) -> Result<pb::WriteChunkResponse, tonic::Status> {
    datanode(c, addr)
        .await
        .write_chunk(futures::stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread")]
async fn datanode_refuses_bad_chunk_ids_and_bad_bytes_keeping_nothing() {
    let c = TestCluster::start(2);
    let addr = node_addr(&c, 0);
    let before = tree(c.dir.path());

    // A chunk id that is a path: refused by every method, nothing touched.
    for bad in [
        "../../etc/passwd",
        "",
        "ABCDEF",
        &"g".repeat(64),
        &format!("{}/x", "a".repeat(62)),
    ] {
        let e = write(
            &c,
            &addr,
            vec![header(&c, bad, 3, vec![]), data(b"abc"), end()],
        )
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "write {bad:?}: {e:?}");
        assert!(e.message().contains("invalid chunk id"), "{}", e.message());
        let e = datanode(&c, &addr)
            .await
            .read_chunk(pb::ReadChunkRequest {
                chunk_id: bad.into(),
                token: tok(&c, Op::Read, bad),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
        // An order, so from the coordinator's certificate.
        let e = pb::datanode_client::DatanodeClient::new(c.raw_channel(
            &addr,
            Role::Node,
            Some("coordinator"),
        ))
        .verify_chunk(pb::VerifyChunkRequest {
            chunk_id: bad.into(),
            token: tok(&c, Op::Verify, bad),
        })
        .await
        .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument);
    }

    let good = b"the real bytes".to_vec();
    let id = ChunkId::of(&good).to_hex();
    // Bytes that don't hash to the id.
    let e = write(
        &c,
        &addr,
        vec![
            header(&c, &id, good.len() as u64, vec![]),
            data(b"the fake bytes"),
            end(),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(e.message().contains("hash to"), "{}", e.message());
    // Longer than announced, in one frame and across frames.
    let e = write(
        &c,
        &addr,
        vec![header(&c, &id, 4, vec![]), data(&good), end()],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("longer than the announced"),
        "{}",
        e.message()
    );
    let e = write(
        &c,
        &addr,
        vec![
            header(&c, &id, good.len() as u64, vec![]),
            data(&good),
            data(b"x"),
            end(),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Shorter than announced.
    let e = write(
        &c,
        &addr,
        vec![header(&c, &id, 100, vec![]), data(&good), end()],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Every byte but no end marker (a client that died at the last moment): refused.
    let e = write(
        &c,
        &addr,
        vec![header(&c, &id, good.len() as u64, vec![]), data(&good)],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::Aborted);
    assert!(
        e.message().contains("without its end marker"),
        "{}",
        e.message()
    );
    // The exact bytes followed by an extra frame, through a pipeline: neither node keeps it.
    let next = pb::NodeAddr {
        node_id: c
            .node_infos()
            .into_iter()
            .find(|n| n.addr == node_addr(&c, 1))
            .unwrap()
            .node_id
            .to_string(),
        addr: node_addr(&c, 1),
        public_addr: String::new(),
    };
    let e = write(
        &c,
        &addr,
        vec![
            header(&c, &id, good.len() as u64, vec![next]),
            data(&good),
            data(b"more"),
        ],
    )
    .await
    .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // No header at all.
    let e = write(&c, &addr, vec![data(b"abc"), end()])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // An absurd size.
    let e = write(&c, &addr, vec![header(&c, &id, 1 << 40, vec![])])
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // The downstream node cleans up once its side of the stream ends: wait for that.
    for i in 0..2 {
        let tmp = c.node_dir(i).join("tmp");
        testkit::eventually(
            &format!("node {i} to drop the refused chunk and its temp file"),
            Duration::from_secs(10),
            || {
                let clean =
                    c.chunk_files(i).is_empty() && std::fs::read_dir(&tmp).unwrap().count() == 0;
                async move { clean }
            },
        )
        .await;
    }
    // Nothing appeared outside the data directories (logs aside).
    let after = tree(c.dir.path());
    let outside: Vec<_> = after
        .iter()
        .filter(|p| {
            !p.starts_with(c.node_dir(0))
                && !p.starts_with(c.node_dir(1))
                && !p.starts_with(c.coordinator_dir())
        })
        .filter(|p| !before.contains(*p) && p.extension().is_none_or(|e| e != "log"))
        .collect();
    assert!(outside.is_empty(), "created outside data dirs: {outside:?}");
    assert!(!Path::new("/etc/passwd.tmp").exists());

    // A missing chunk is NotFound; a good write still works afterwards.
    let e = datanode(&c, &addr)
        .await
        .read_chunk(pb::ReadChunkRequest {
            chunk_id: id.clone(),
            token: tok(&c, Op::Read, &id),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    let ok = write(
        &c,
        &addr,
        vec![
            header(&c, &id, good.len() as u64, vec![]),
            data(&good),
            end(),
        ],
    )
    .await
    .unwrap();
    assert_eq!(ok.stored_on.len(), 1);
}

fn fails_with(c: &TestCluster, args: &[&str], needle: &str) {
    let out = c.cli(args);
    let e = stderr(&out);
    assert!(!out.status.success(), "{args:?} succeeded");
    assert!(e.contains(needle), "{args:?}: expected {needle:?} in {e:?}");
    assert_eq!(
        e.trim_end().lines().count(),
        1,
        "{args:?}: not one line: {e:?}"
    );
    assert!(e.starts_with("dfsd: "), "{e}");
}

#[test]
fn namespace_errors_are_one_clear_line() {
    let c = TestCluster::start(1);
    let f = c.dir.path().join("f");
    std::fs::write(&f, b"file").unwrap();
    let f = f.to_str().unwrap();
    assert!(c.cli(&["put", f, "/dir/file"]).status.success());
    fails_with(
        &c,
        &["get", "/missing", "-"],
        "/missing: no such file or directory",
    );
    fails_with(
        &c,
        &["stat", "/dir/nope"],
        "/dir/nope: no such file or directory",
    );
    fails_with(
        &c,
        &["put", f, "/dir/file/below"],
        "/dir/file: not a directory",
    );
    fails_with(&c, &["rm", "/dir"], "/dir: directory not empty");
    fails_with(&c, &["rm", "/"], "cannot delete the root");
    assert!(c.cli(&["put", f, "/dir/other"]).status.success());
    fails_with(
        &c,
        &["mv", "/dir/file", "/dir/other"],
        "/dir/other: already exists",
    );
    fails_with(&c, &["mv", "/dir", "/dir/sub"], "into itself");
    fails_with(
        &c,
        &["mv", "/dir/file", "/nodir/file"],
        "/nodir: no such file or directory",
    );
    fails_with(&c, &["mkdir", "/dir"], "/dir: already exists");
    fails_with(&c, &["mkdir", "/a/b/c"], "/a: no such file or directory");
    fails_with(&c, &["get", "/dir", "-"], "/dir: is a directory");
    fails_with(&c, &["put", f, "/dir"], "/dir: is a directory");
    fails_with(
        &c,
        &["ls", "/dir/../etc"],
        "'.' and '..' segments are not allowed",
    );
    fails_with(&c, &["ls", "/dir//file"], "empty segment");
    fails_with(&c, &["stat", "/./dir"], "'.' and '..'");
    let long_name = format!("/{}", "n".repeat(256));
    fails_with(&c, &["mkdir", &long_name], "longer than 255 bytes");
    let long_path = "/abcdefghij".repeat(410);
    fails_with(&c, &["mkdir", "-p", &long_path], "longer than 4096 bytes");
    fails_with(
        &c,
        &["put", "/no/such/local/file", "/x"],
        "open /no/such/local/file",
    );
    fails_with(
        &c,
        &["put", "--chunk-size", "100GiB", f, "/x"],
        "chunk size",
    );
    // Nothing above changed the namespace.
    let ls = String::from_utf8(c.cli(&["ls", "/dir"]).stdout).unwrap();
    assert_eq!(ls, "file\nother\n");
    assert_eq!(
        String::from_utf8(c.cli(&["ls", "/"]).stdout).unwrap(),
        "dir/\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn servers_use_the_right_grpc_codes() {
    let c = TestCluster::start(1);
    let mut coord = c.raw_coordinator();
    let code = |r: Result<tonic::Response<pb::StatResponse>, tonic::Status>| r.unwrap_err().code();
    assert_eq!(
        code(
            coord
                .stat(pb::StatRequest {
                    path: "/nope".into()
                })
                .await
        ),
        Code::NotFound
    );
    for bad in ["relative", "/a\0b", "/a//b", "/a/..", ""] {
        assert_eq!(
            code(coord.stat(pb::StatRequest { path: bad.into() }).await),
            Code::InvalidArgument,
            "{bad:?}"
        );
    }
    coord
        .mkdir(pb::MkdirRequest {
            path: "/d".into(),
            parents: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = coord
        .mkdir(pb::MkdirRequest {
            path: "/d".into(),
            parents: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::AlreadyExists);
    coord
        .mkdir(pb::MkdirRequest {
            path: "/d/e".into(),
            parents: false,
            ..Default::default()
        })
        .await
        .unwrap();
    let e = coord
        .delete(pb::DeleteRequest {
            path: "/d".into(),
            recursive: false,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    let e = coord
        .place_chunks(pb::PlaceChunksRequest {
            upload_id: "nope".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    // A commit naming a chunk nobody stored: refused for want of a receipt, and with a
    // (test-made) receipt, by its quorum check.
    let up = coord
        .begin_upload(pb::BeginUploadRequest {
            path: "/q".into(),
            replication: 1,
            write_quorum: 0,
            no_clobber: false,
        })
        .await
        .unwrap()
        .into_inner();
    let ghost = ChunkId::of(b"never stored");
    let commit = |receipt: Option<pb::Receipt>| pb::CommitUploadRequest {
        upload_id: up.upload_id.clone(),
        chunks: vec![pb::ChunkRef {
            chunk_id: ghost.to_hex(),
            size: 12,
            receipt,
        }],
        size: 12,
        no_clobber: false,
        expected_version: None,
        ..Default::default()
    };
    let e = coord.commit_upload(commit(None)).await.unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(e.message().contains("no valid receipt"), "{}", e.message());
    let expires = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 60;
    let receipt = c
        .token_key()
        .receipt(&up.owner, ghost, 12, "dn-test", expires);
    let e = coord
        .commit_upload(commit(Some(receipt.into())))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("0 durable replica(s)"),
        "{}",
        e.message()
    );
    // A size that does not add up.
    let e = coord
        .commit_upload(pb::CommitUploadRequest {
            upload_id: up.upload_id.clone(),
            chunks: vec![],
            size: 5,
            no_clobber: false,
            expected_version: None,
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Attributes beyond the limits, or with a control character in a name.
    for attrs in [
        (0..65)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect(),
        [("big".to_string(), "x".repeat(9000))].into(),
        [("a\nb".to_string(), "v".to_string())].into(),
    ] {
        let e = coord
            .commit_upload(pb::CommitUploadRequest {
                upload_id: up.upload_id.clone(),
                attrs,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
        assert!(e.message().starts_with("attrs:"), "{}", e.message());
    }
    // Compose: no sources; a missing source; a deletion that holds the destination.
    let compose = |sources: &[&str], dst: &str, delete_after: &[&str]| pb::ComposeRequest {
        sources: sources
            .iter()
            .map(|p| pb::ComposeSource {
                path: p.to_string(),
                expected_version: None,
            })
            .collect(),
        dst: dst.into(),
        delete_after: delete_after.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    };
    let e = coord.compose(compose(&[], "/c", &[])).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    let e = coord
        .compose(compose(&["/nope"], "/c", &[]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{}", e.message());
    let e = coord
        .compose(compose(&["/nope"], "/d/c", &["/d"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{}", e.message());
    assert_eq!(
        code(coord.stat(pb::StatRequest { path: "/c".into() }).await),
        Code::NotFound
    );
    assert_eq!(
        code(coord.stat(pb::StatRequest { path: "/q".into() }).await),
        Code::NotFound,
        "nothing committed"
    );
}

#[test]
fn unreachable_datanode_is_a_clear_error_within_seconds() {
    let mut c = TestCluster::start(2);
    let data = random_bytes(1000, 3);
    let f = c.dir.path().join("one");
    std::fs::write(&f, &data).unwrap();
    assert!(c
        .cli(&["put", "--replication", "1", f.to_str().unwrap(), "/one"])
        .status
        .success());
    let holder = (0..2).find(|&i| !c.chunk_files(i).is_empty()).unwrap();
    c.kill_node(holder);
    let start = Instant::now();
    let out = c.cli(&["get", "/one", "-"]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(
        e.contains("cannot reach datanode at http://127.0.0.1:"),
        "{e}"
    );
    assert!(e.contains("no replica returned intact data"), "{e}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn namespace_operations_behave_like_a_file_system() {
    let c = TestCluster::start(1);
    let f = c.dir.path().join("f");
    std::fs::write(&f, b"x").unwrap();
    let f = f.to_str().unwrap();
    for p in ["/t/a/1", "/t/a/2", "/t/a/deep/3", "/t/b"] {
        assert!(c.cli(&["put", f, p]).status.success());
    }
    assert!(
        c.cli(&["mkdir", "-p", "/t/a/deep"]).status.success(),
        "mkdir -p of an existing dir is fine"
    );
    let ls = |p: &str| String::from_utf8(c.cli(&["ls", p]).stdout).unwrap();
    assert_eq!(ls("/t"), "a/\nb\n", "only immediate children");
    assert_eq!(ls("/t/a"), "1\n2\ndeep/\n");
    assert!(c.cli(&["mv", "/t/a", "/t/moved"]).status.success());
    assert_eq!(
        ls("/t/moved/deep"),
        "3\n",
        "a directory move carries its tree"
    );
    assert_eq!(c.cli(&["get", "/t/moved/deep/3", "-"]).stdout, b"x");
    let long = String::from_utf8(c.cli(&["ls", "-l", "/t"]).stdout).unwrap();
    assert!(
        long.lines()
            .any(|l| l.starts_with("d ") && l.ends_with(" moved/")),
        "{long}"
    );
    assert!(
        long.lines()
            .any(|l| l.starts_with("- ") && l.contains(" 1 ") && l.ends_with(" b")),
        "{long}"
    );
    assert!(c.cli(&["rm", "-r", "/t/moved"]).status.success());
    assert_eq!(ls("/t"), "b\n");
    assert!(c.cli(&["rm", "/t/b"]).status.success());
    assert!(
        c.cli(&["rm", "/t"]).status.success(),
        "an empty directory needs no -r"
    );
    assert_eq!(ls("/"), "");
}

#[tokio::test(flavor = "multi_thread")]
async fn listing_pages_through_large_directories() {
    let c = TestCluster::start(1);
    let client = c.client();
    for i in 0..2500 {
        client.mkdir(&format!("/many/d{i:04}"), true).await.unwrap();
    }
    let names: Vec<String> = client
        .list("/many")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.name().to_string())
        .collect();
    assert_eq!(names.len(), 2500);
    assert!(
        names.windows(2).all(|w| w[0] < w[1]),
        "sorted, no duplicates"
    );
}

#[test]
fn config_precedence_flags_over_env_over_file_over_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.toml");
    std::fs::write(
        &file,
        "[client]\nchunk_size = \"4MiB\"\nparallelism = 7\n[coordinator]\nreplication = 2\n",
    )
    .unwrap();
    let run = |extra_env: &[(&str, &str)], args: &[&str]| {
        let mut cmd = std::process::Command::new(testkit::bin());
        cmd.env_remove("DFSD_COORDINATOR").env_remove("DFSD_CONFIG");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        let out = cmd.args(args).output().unwrap();
        assert!(out.status.success(), "{}", stderr(&out));
        dfsd::config::Config::from_toml_str(&String::from_utf8(out.stdout).unwrap()).unwrap()
    };
    let d = run(&[], &["config"]);
    assert_eq!(d, dfsd::config::Config::default());
    let f = run(&[], &["--config", file.to_str().unwrap(), "config"]);
    assert_eq!(
        (
            f.client.chunk_size,
            f.client.parallelism,
            f.coordinator.replication
        ),
        (4 << 20, 7, 2)
    );
    let e = run(
        &[
            ("DFSD_CLIENT__PARALLELISM", "3"),
            ("DFSD_COORDINATOR", "10.9.8.7:7070"),
        ],
        &["--config", file.to_str().unwrap(), "config"],
    );
    assert_eq!((e.client.chunk_size, e.client.parallelism), (4 << 20, 3));
    assert_eq!(e.client.coordinator, "10.9.8.7:7070");
    let fl = run(
        &[("DFSD_COORDINATOR", "10.9.8.7:7070")],
        &["--coordinator", "1.2.3.4:1", "config"],
    );
    assert_eq!(fl.client.coordinator, "1.2.3.4:1");
    // DFSD_* variables that are not configuration keys (compose settings, test switches)
    // are left alone; a misspelt key inside a section is still refused.
    let o = run(
        &[("DFSD_DOCKER_TESTS", "1"), ("DFSD_PORT", "7070")],
        &["config"],
    );
    assert_eq!(o, dfsd::config::Config::default());
    let out = std::process::Command::new(testkit::bin())
        .env("DFSD_CLIENT__CHUNKSIZE", "1")
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("chunksize"), "{}", stderr(&out));
    // A bad value names its key; a missing file is named.
    let out = std::process::Command::new(testkit::bin())
        .env("DFSD_COORDINATOR__REPLICATION", "0")
        .arg("config")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("coordinator.replication"),
        "{}",
        stderr(&out)
    );
    let out = std::process::Command::new(testkit::bin())
        .args(["--config", "/nope.toml", "config"])
        .output()
        .unwrap();
    assert!(
        stderr(&out).contains("/nope.toml: not found"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn a_reader_that_goes_away_ends_get_quietly() {
    // `dfsd get /f - | head -c 1`: the pipe closes after one byte; dfsd exits as a process
    // killed by SIGPIPE would (141), printing nothing.
    use std::io::Read;
    use std::process::Stdio;
    let c = TestCluster::start(1);
    let data = random_bytes(4 << 20, 77);
    let out = c.cli_stdin(&["put", "-q", "-", "/pipe/f"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let mut cmd = c.cli_command();
    cmd.args(["get", "/pipe/f", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .stdin(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut first = [0u8; 1];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The read end is closed now (dropped above).
    let out = child.wait_with_output().unwrap();
    assert_eq!(first[0], data[0]);
    assert_eq!(out.status.code(), Some(141), "{}", stderr(&out));
    assert_eq!(stderr(&out), "", "nothing on stderr");
}
