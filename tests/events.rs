//! The cluster event stream (`dfsd events`) against a live cluster: a follower started
//! before a failure sees it in order, and a late reader sees the stored history.

use std::time::Duration;

use admin::cluster;
use testkit::admin;
use testkit::{random_bytes, stderr, wait_until, TestCluster};

struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Follower {
    fn start(c: &TestCluster) -> Follower {
        let mut child = c
            .cli_command()
            .args(["events", "--follow", "--json"])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(out).lines() {
                let Ok(line) = line else { return };
                let v: serde_json::Value = serde_json::from_str(&line)
                    .unwrap_or_else(|e| panic!("not JSON: {line:?}: {e}"));
                if tx.send(v).is_err() {
                    return;
                }
            }
        });
        Follower {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits until an event of `kind` (for `node`, when given) has arrived.
    fn wait_for(&mut self, kind: &str, node: Option<&str>, timeout: Duration) {
        let deadline = std::time::Instant::now() + timeout;
        let matches =
            |e: &serde_json::Value| e["kind"] == kind && node.is_none_or(|n| e["node_id"] == n);
        while !self.seen.iter().any(matches) {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(e) => self.seen.push(e),
                Err(_) => panic!("no {kind} event within {timeout:?}; got {:#?}", self.seen),
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn events_follower_sees_suspect_dead_then_repair_in_order() {
    let mut c = cluster(4, &[]);
    let mut follower = Follower::start(&c);

    let data = random_bytes(2 * 1024 * 1024 + 77, 3);
    let out = c.cli_stdin(
        &["put", "-q", "--chunk-size", "1MiB", "-", "/ev/file"],
        Some(&data),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    follower.wait_for("file_committed", None, Duration::from_secs(10));
    let committed = follower
        .seen
        .iter()
        .find(|e| e["kind"] == "file_committed")
        .unwrap();
    assert_eq!(committed["path"], "/ev/file");
    assert_eq!(committed["bytes"], data.len() as u64);

    // Kill a node that holds chunks of the file: its replicas must be copied elsewhere.
    let i = (0..4).max_by_key(|&i| c.chunk_files(i).len()).unwrap();
    assert!(!c.chunk_files(i).is_empty());
    let victim = std::fs::read_to_string(c.node_dir(i).join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    c.kill_node(i);
    follower.wait_for("repair_finished", None, Duration::from_secs(60));

    // (Another node may look suspect for a moment on a loaded machine: only the
    // victim's node events are checked.)
    let order: Vec<String> = follower
        .seen
        .iter()
        .filter(|e| match e["kind"].as_str().unwrap() {
            "node_suspect" | "node_dead" => e["node_id"] == victim.as_str(),
            k => k.starts_with("repair_"),
        })
        .map(|e| e["kind"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(
        order,
        [
            "node_suspect",
            "node_dead",
            "repair_started",
            "repair_finished"
        ]
    );
    let finished = follower
        .seen
        .iter()
        .find(|e| e["kind"] == "repair_finished")
        .unwrap();
    assert!(finished["count"].as_u64().unwrap() >= 1, "{finished}");
    // Ids increase and every documented field is there.
    let ids: Vec<u64> = follower
        .seen
        .iter()
        .map(|e| e["id"].as_u64().unwrap())
        .collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    for e in &follower.seen {
        for field in [
            "id", "time", "time_ms", "kind", "node_id", "path", "chunk_id", "bytes", "count",
            "detail",
        ] {
            assert!(e.get(field).is_some(), "{field} missing in {e}");
        }
    }

    // A late reader gets the same history from SQLite; --since filters it.
    let out = c.cli(&["events", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let history: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kinds: Vec<&str> = history
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    let pos = |k: &str| {
        kinds
            .iter()
            .position(|x| *x == k)
            .unwrap_or_else(|| panic!("{k} not in {kinds:?}"))
    };
    assert!(pos("file_committed") < pos("node_suspect"));
    assert!(pos("node_suspect") < pos("node_dead"));
    assert!(pos("node_dead") < pos("repair_started"));
    assert!(pos("repair_started") < pos("repair_finished"));
    let out = c.cli(&["events", "--since", "2999-01-01T00:00:00Z"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    // Human output: one line per event, kinds readable.
    let out = c.cli(&["events"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("node_dead") && text.contains(&format!("node={victim}")),
        "{text}"
    );
}

#[test]
fn events_tell_deletes_gc_drains_and_returns() {
    let mut c = cluster(4, &[("DFSD_COORDINATOR__GC_GRACE", "1s")]);
    let mut follower = Follower::start(&c);
    let data = random_bytes(700_000, 5);
    let out = c.cli_stdin(&["put", "-q", "-", "/gc/file"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.cli(&["mv", "/gc/file", "/gc/moved"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.cli(&["rm", "/gc/moved"]);
    assert!(out.status.success(), "{}", stderr(&out));
    follower.wait_for("file_deleted", None, Duration::from_secs(10));
    let moved = follower
        .seen
        .iter()
        .find(|e| e["kind"] == "file_moved")
        .unwrap();
    assert_eq!(
        (&moved["path"], &moved["detail"]),
        (&"/gc/file".into(), &"/gc/moved".into())
    );
    let deleted = follower
        .seen
        .iter()
        .find(|e| e["kind"] == "file_deleted")
        .unwrap();
    assert_eq!(
        (&deleted["path"], &deleted["count"]),
        (&"/gc/moved".into(), &1.into())
    );

    // Garbage collection frees the chunk on each of its 3 holders: 3 x the file's bytes.
    let mut freed = 0;
    wait_until("GC to free every replica", Duration::from_secs(30), || {
        while let Ok(e) = follower.lines.try_recv() {
            follower.seen.push(e);
        }
        freed = follower
            .seen
            .iter()
            .filter(|e| e["kind"] == "gc_freed")
            .map(|e| e["bytes"].as_u64().unwrap())
            .sum::<u64>();
        freed >= 3 * data.len() as u64
    });
    assert_eq!(freed, 3 * data.len() as u64);

    // A drained node with nothing left on it is reported drained.
    let id = |i: usize| {
        std::fs::read_to_string(c.node_dir(i).join("node_id"))
            .unwrap()
            .trim()
            .to_string()
    };
    let out = c.cli(&["node", "drain", &id(3)]);
    assert!(out.status.success(), "{}", stderr(&out));
    follower.wait_for("node_drained", Some(&id(3)), Duration::from_secs(20));

    // A killed node that comes back before it is dead is suspect, then back.
    let victim = id(1);
    c.kill_node(1);
    follower.wait_for("node_suspect", Some(&victim), Duration::from_secs(20));
    c.start_node(1);
    follower.wait_for("node_back", Some(&victim), Duration::from_secs(20));
}

#[test]
fn a_corrupt_chunk_found_by_scrubbing_is_an_event_and_a_scrub_error() {
    let c = cluster(
        3,
        &[
            ("DFSD_DATANODE__SCRUB_START_DELAY", "500ms"),
            ("DFSD_DATANODE__SCRUB_PERIOD", "1s"),
            ("DFSD_DATANODE__SCRUB_RATE", "1GiB"),
        ],
    );
    let mut follower = Follower::start(&c);
    let out = c.cli_stdin(
        &["put", "-q", "-", "/bad/f"],
        Some(&random_bytes(100_000, 8)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let files = c.chunk_files(0);
    assert_eq!(files.len(), 1);
    let chunk = files[0].file_name().unwrap().to_str().unwrap().to_string();
    let mut bytes = std::fs::read(&files[0]).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&files[0], &bytes).unwrap();

    let node = std::fs::read_to_string(c.node_dir(0).join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    follower.wait_for("chunk_corrupt", Some(&node), Duration::from_secs(30));
    let ev = follower
        .seen
        .iter()
        .find(|e| e["kind"] == "chunk_corrupt")
        .unwrap();
    assert_eq!(ev["chunk_id"], chunk.as_str(), "{ev}");
    // The node's scrub gauges count it; the other nodes found nothing.
    let errors = |i: usize| {
        admin::val(
            &admin::scrape(&admin::admin_addr(&c, &format!("node-{i}"))),
            "dfsd_scrub_errors",
        )
    };
    assert_eq!(errors(0), 1.0);
    assert_eq!((errors(1), errors(2)), (0.0, 0.0));
    // Re-replicated from an intact copy: repair started and finished.
    follower.wait_for("repair_finished", None, Duration::from_secs(30));
}
