//! Observability against a live cluster of real processes: metrics scraped from every
//! role's admin endpoint, the event stream, JSON output, and the status page.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use common::{random_bytes, stderr, wait_until, Opts, TestCluster};

/// A cluster whose every role opens its admin endpoint on a free loopback port.
fn cluster(nodes: usize, extra: &[(&str, &str)]) -> TestCluster {
    let mut env = vec![
        (
            "DFSD_COORDINATOR__ADMIN_LISTEN".into(),
            "127.0.0.1:0".into(),
        ),
        ("DFSD_DATANODE__ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestCluster::start_with(Opts {
        nodes,
        replication: 3.min(nodes as u32),
        env,
    })
}

/// The admin address a process logged last ("admin endpoint listening addr=...").
fn admin_addr(c: &TestCluster, log: &str) -> String {
    let mut found = None;
    wait_until(
        &format!("{log} to log its admin address"),
        Duration::from_secs(10),
        || {
            found = c
                .log(log)
                .lines()
                .rev()
                .find(|l| l.contains("admin endpoint listening"))
                .and_then(|l| l.split("addr=").nth(1))
                .map(|a| a.split_whitespace().next().unwrap_or("").to_string());
            found.is_some()
        },
    );
    found.unwrap()
}

/// One HTTP/1.1 GET on loopback: (status code, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, body.to_string())
}

/// Every sample of a scrape, keyed by `name{labels}` exactly as exposed.
fn scrape(addr: &str) -> HashMap<String, f64> {
    let (code, body) = http_get(addr, "/metrics");
    assert_eq!(code, 200, "{body}");
    assert!(body.ends_with("# EOF\n"), "not OpenMetrics text: {body}");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

fn val(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

fn grpc(service: &str, method: &str, code: &str) -> String {
    format!("dfsd_grpc_requests_total{{service=\"{service}\",method=\"{method}\",code=\"{code}\"}}")
}

fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    val(after, key) - val(before, key)
}

#[test]
fn metrics_count_a_put_and_a_get_and_follow_node_states() {
    let mut c = cluster(3, &[]);
    let coord = admin_addr(&c, "coordinator");
    let nodes: Vec<String> = (0..3)
        .map(|i| admin_addr(&c, &format!("node-{i}")))
        .collect();

    let (code, body) = http_get(&coord, "/healthz");
    assert_eq!((code, body.as_str()), (200, "ok\n"));

    // 4 chunks of at most 1 MiB; every node holds every chunk (replication 3 on 3 nodes).
    let size = 3 * 1024 * 1024 + 5;
    let data = random_bytes(size, 7);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in");
    std::fs::write(&local, &data).unwrap();

    let c0 = scrape(&coord);
    let n0: Vec<_> = nodes.iter().map(|a| scrape(a)).collect();
    assert_eq!(val(&c0, "dfsd_nodes{state=\"alive\"}"), 3.0);
    assert_eq!(val(&c0, "dfsd_nodes{state=\"dead\"}"), 0.0);

    let out = c.cli(&[
        "put",
        "-q",
        "--chunk-size",
        "1MiB",
        local.to_str().unwrap(),
        "/m/file",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));

    let c1 = scrape(&coord);
    let n1: Vec<_> = nodes.iter().map(|a| scrape(a)).collect();
    assert_eq!(
        delta(&c0, &c1, &grpc("Coordinator", "BeginUpload", "OK")),
        1.0
    );
    assert_eq!(
        delta(&c0, &c1, &grpc("Coordinator", "CommitUpload", "OK")),
        1.0
    );
    assert_eq!(val(&c1, "dfsd_files"), 1.0);
    assert_eq!(val(&c1, "dfsd_chunks"), 4.0);
    assert_eq!(val(&c1, "dfsd_logical_bytes"), size as f64);
    assert!(
        val(
            &c1,
            "dfsd_sqlite_transaction_duration_seconds_count{kind=\"write\"}"
        ) > 0.0,
        "SQLite transactions are timed"
    );
    let (mut writes, mut forwarded) = (0.0, 0.0);
    for i in 0..3 {
        assert_eq!(
            delta(
                &n0[i],
                &n1[i],
                "dfsd_datanode_received_bytes_total{kind=\"write\"}"
            ),
            size as f64,
            "node {i} received every chunk once"
        );
        assert_eq!(val(&n1[i], "dfsd_datanode_chunks"), 4.0);
        assert!(val(&n1[i], "dfsd_datanode_used_bytes") >= size as f64);
        assert!(val(&n1[i], "dfsd_datanode_free_bytes") > 0.0);
        writes += delta(&n0[i], &n1[i], &grpc("Datanode", "WriteChunk", "OK"));
        forwarded += delta(
            &n0[i],
            &n1[i],
            "dfsd_datanode_sent_bytes_total{kind=\"forward\"}",
        );
    }
    assert_eq!(writes, 12.0, "4 chunks x 3 nodes, one WriteChunk call each");
    assert_eq!(forwarded, 2.0 * size as f64, "two hops down each pipeline");

    let out = c.cli(&["get", "/m/file", dir.path().join("out").to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read(dir.path().join("out")).unwrap(), data);

    let c2 = scrape(&coord);
    let n2: Vec<_> = nodes.iter().map(|a| scrape(a)).collect();
    assert_eq!(delta(&c1, &c2, &grpc("Coordinator", "GetFile", "OK")), 1.0);
    let (mut read_bytes, mut reads) = (0.0, 0.0);
    for i in 0..3 {
        read_bytes += delta(
            &n1[i],
            &n2[i],
            "dfsd_datanode_sent_bytes_total{kind=\"read\"}",
        );
        reads += delta(&n1[i], &n2[i], &grpc("Datanode", "ReadChunk", "OK"));
    }
    assert_eq!(read_bytes, size as f64, "each chunk read once");
    assert_eq!(reads, 4.0);
    assert!(
        val(
            &c2,
            "dfsd_grpc_request_duration_seconds_count{service=\"Coordinator\",method=\"GetFile\"}"
        ) >= 1.0
    );

    // Heartbeats are counted on both sides.
    wait_until("heartbeats to be counted", Duration::from_secs(10), || {
        val(&scrape(&coord), "dfsd_heartbeats_received_total") > 0.0
            && nodes
                .iter()
                .all(|a| val(&scrape(a), "dfsd_datanode_heartbeats_total{result=\"ok\"}") > 0.0)
    });

    // A failed call is counted under its code.
    let out = c.cli(&["stat", "/no/such"]);
    assert!(!out.status.success());
    let c3 = scrape(&coord);
    assert_eq!(
        delta(&c2, &c3, &grpc("Coordinator", "Stat", "NotFound")),
        1.0
    );

    // Every series the Grafana dashboard queries exists (docker/grafana-dashboard.json).
    let exposed: std::collections::HashSet<String> = n2
        .iter()
        .chain([&c3])
        .flat_map(|m| m.keys())
        .map(|k| k.split('{').next().unwrap().to_string())
        .collect();
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/docker/grafana-dashboard.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut queried = 0;
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for name in expr
                .split(|ch: char| !(ch.is_ascii_alphanumeric() || ch == '_'))
                .filter(|w| w.starts_with("dfsd_"))
            {
                queried += 1;
                assert!(
                    exposed.contains(name),
                    "dashboard queries {name}, which no role exports"
                );
            }
        }
    }
    assert!(queried > 20, "{queried}");

    // A killed node turns suspect, then dead, in the node-state gauges.
    c.kill_node(2);
    wait_until(
        "the killed node to be counted dead",
        Duration::from_secs(20),
        || {
            let m = scrape(&coord);
            val(&m, "dfsd_nodes{state=\"dead\"}") == 1.0
                && val(&m, "dfsd_nodes{state=\"alive\"}") == 2.0
        },
    );
}

/// `dfsd events --follow --json` as a child process; its lines arrive on a channel.
struct Follower {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<serde_json::Value>,
    seen: Vec<serde_json::Value>,
}

impl Follower {
    fn start(c: &TestCluster) -> Follower {
        let mut child = std::process::Command::new(common::BIN)
            .env_remove("DFSD_COORDINATOR")
            .env_remove("DFSD_CONFIG")
            .env_remove("DFSD_LOG_LEVEL")
            .args([
                "--coordinator",
                &c.coordinator_addr,
                "events",
                "--follow",
                "--json",
            ])
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

/// The headless browser, if one is installed (Debian's `chromium`; `.ci/run` installs it).
fn chromium() -> Option<&'static str> {
    ["chromium", "chromium-browser", "google-chrome"]
        .into_iter()
        .find(|b| {
            std::process::Command::new(b)
                .arg("--version")
                .output()
                .is_ok_and(|o| o.status.success())
        })
}

/// Runs headless Chromium on `url` with `args` (--dump-dom, --screenshot=...); stdout.
fn browse(browser: &str, profile: &std::path::Path, args: &[&str], url: &str) -> String {
    let out = std::process::Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--window-size=1280,900",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run chromium");
    assert!(out.status.success(), "chromium failed: {}", stderr(&out));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn status_page_in_headless_chromium_shows_a_killed_node_turn_dead() {
    let Some(browser) = chromium() else {
        eprintln!(
            "SKIPPED: no headless chromium installed (apt-get install chromium; .ci/run does this)"
        );
        return;
    };
    let mut c = cluster(3, &[]);
    let url = format!("http://{}/", admin_addr(&c, "coordinator"));
    let profile = tempfile::tempdir().unwrap();
    let ids: Vec<String> = (0..3)
        .map(|i| {
            std::fs::read_to_string(c.node_dir(i).join("node_id"))
                .unwrap()
                .trim()
                .to_string()
        })
        .collect();
    let out = c.cli_stdin(&["put", "-q", "-", "/page/file"], Some(b"hello page"));
    assert!(out.status.success(), "{}", stderr(&out));

    let dom = browse(browser, profile.path(), &["--dump-dom"], &url);
    assert!(dom.contains("dfsd cluster status"), "{dom}");
    assert!(!dom.contains("<script"), "the page needs no JavaScript");
    assert!(
        dom.contains("http-equiv=\"refresh\""),
        "the page reloads itself"
    );
    for id in &ids {
        assert!(
            dom.contains(&format!("<tr id=\"node-{id}\" data-state=\"alive\">")),
            "node {id} listed alive: {dom}"
        );
    }
    assert!(dom.contains("1 files"), "{dom}");
    assert!(
        dom.contains("file_committed"),
        "recent events listed: {dom}"
    );

    c.kill_node(1);
    let dead = format!("<tr id=\"node-{}\" data-state=\"dead\">", ids[1]);
    let mut dom = String::new();
    wait_until(
        "the page to show the killed node dead",
        Duration::from_secs(60),
        || {
            dom = browse(browser, profile.path(), &["--dump-dom"], &url);
            dom.contains(&dead)
        },
    );
    assert!(dom.contains("2 alive, 0 suspect, 1 dead"), "{dom}");
    assert!(dom.contains("node_dead"), "{dom}");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    let _ = std::fs::remove_file(&shot);
    browse(
        browser,
        profile.path(),
        &[&format!("--screenshot={}", shot.display())],
        &url,
    );
    let png = std::fs::read(&shot).expect("screenshot written");
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 1000,
        "not a PNG"
    );
    eprintln!("status page screenshot: {}", shot.display());
}

#[test]
fn one_request_id_follows_a_put_through_every_role() {
    let c = cluster(3, &[("DFSD_LOG_LEVEL", "info,dfsd::grpc_layer=debug")]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, random_bytes(300_000, 9)).unwrap();
    let out = std::process::Command::new(common::BIN)
        .env_remove("DFSD_COORDINATOR")
        .env_remove("DFSD_CONFIG")
        .env("DFSD_REQUEST_ID", "obs-put-4711")
        .args(["--coordinator", &c.coordinator_addr, "put", "-q"])
        .arg(&local)
        .arg("/rid/f")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let tagged = |log: &str, method: &str| {
        c.log(log).lines().any(|l| {
            l.contains("request_id=obs-put-4711") && l.contains(&format!("method={method}"))
        })
    };
    wait_until(
        "the coordinator to log the commit under the request id",
        Duration::from_secs(10),
        || tagged("coordinator", "CommitUpload") && tagged("coordinator", "BeginUpload"),
    );
    // The client wrote to the first node of the pipeline; that node forwarded to the next
    // ones under the same id, so every node logged its WriteChunk with it.
    for i in 0..3 {
        let log = format!("node-{i}");
        wait_until(
            &format!("{log} to log its write under the request id"),
            Duration::from_secs(10),
            || tagged(&log, "WriteChunk"),
        );
    }
    // Datanode spans carry the node id.
    let id = std::fs::read_to_string(c.node_dir(0).join("node_id")).unwrap();
    assert!(c.log("node-0").contains(&format!("node={}", id.trim())));
}

/// Runs a CLI command that prints JSON and parses it.
fn json_of(c: &TestCluster, args: &[&str]) -> serde_json::Value {
    let out = c.cli(args);
    assert!(out.status.success(), "{args:?}: {}", stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?} printed no JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

#[test]
fn json_output_parses_and_carries_the_documented_fields() {
    let c = cluster(2, &[]);
    let data = random_bytes(5000, 1);
    let out = c.cli_stdin(&["put", "-q", "-", "/j/a"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));

    let ls = json_of(&c, &["ls", "--json", "/j"]);
    let entries = ls.as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(
        (
            &e["path"],
            &e["name"],
            &e["kind"],
            &e["size"],
            &e["version"],
            &e["replication"],
            &e["chunks"]
        ),
        (
            &"/j/a".into(),
            &"a".into(),
            &"file".into(),
            &5000.into(),
            &1.into(),
            &2.into(),
            &1.into()
        )
    );
    assert!(e["mtime_ms"].as_i64().unwrap() > 0);
    assert!(e["mtime"].as_str().unwrap().ends_with('Z'));

    let st = json_of(&c, &["stat", "--json", "/j"]);
    assert_eq!(
        (&st["kind"], &st["path"]),
        (&"directory".into(), &"/j".into())
    );
    assert_eq!(json_of(&c, &["stat", "--json", "/j/a"])["size"], 5000);

    let status = json_of(&c, &["status", "--json"]);
    assert_eq!(status["nodes"]["alive"], 2);
    assert_eq!(status["files"], 1);
    assert_eq!(status["logical_bytes"], 5000);
    for k in [
        "capacity_bytes",
        "used_bytes",
        "free_bytes",
        "chunks",
        "under_replicated",
        "unrecoverable",
        "repair",
        "gc",
        "scrub",
        "safe_mode",
    ] {
        assert!(status.get(k).is_some(), "status --json lacks {k}: {status}");
    }

    let nodes = json_of(&c, &["nodes", "--json"]);
    let nodes = nodes.as_array().unwrap();
    assert_eq!(nodes.len(), 2);
    for n in nodes {
        assert_eq!(n["state"], "alive");
        assert_eq!(n["replicas"], 1, "{n}");
        for k in [
            "node_id",
            "addr",
            "capacity_bytes",
            "used_bytes",
            "free_bytes",
            "replicas",
            "last_seen_ms",
            "safe_to_remove",
            "scrub",
        ] {
            assert!(n.get(k).is_some(), "nodes --json lacks {k}: {n}");
        }
    }

    // Events as JSON lines: one object per line.
    let out = c.cli(&["events", "--json"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(events
        .iter()
        .any(|e| e["kind"] == "file_committed" && e["path"] == "/j/a" && e["bytes"] == 5000));
    assert_eq!(
        events.iter().filter(|e| e["kind"] == "node_joined").count(),
        2
    );

    // Human sizes in ls -l; completions and --version.
    let long = String::from_utf8(c.cli(&["ls", "-l", "/j"]).stdout).unwrap();
    assert!(long.contains(" 4.9 KiB "), "{long}");
    let v = c.cli(&["--version"]);
    let v = String::from_utf8_lossy(&v.stdout);
    assert!(v.starts_with("dfsd ") && v.contains("(git "), "{v}");
    for shell in ["bash", "zsh", "fish"] {
        let out = c.cli(&["completions", shell]);
        assert!(out.status.success() && out.stdout.len() > 1000, "{shell}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("events"));
    }
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
