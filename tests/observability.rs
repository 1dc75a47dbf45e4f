//! Observability against a live cluster of real processes: metrics scraped from every
//! role's admin endpoint, request ids across roles, JSON output. (Events: tests/events.rs;
//! the status page: tests/status_page.rs.)

use std::time::Duration;

use admin::{admin_addr, cluster, delta, grpc, http_get, scrape, val};
use testkit::admin;
use testkit::{random_bytes, stderr, wait_until, TestCluster};

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
    // Counted gauges come from the background refresh (every second in these tests).
    wait_until(
        "the counted gauges to follow",
        Duration::from_secs(10),
        || {
            let m = scrape(&coord);
            val(&m, "dfsd_files") == 1.0
                && val(&m, "dfsd_chunks") == 4.0
                && val(&m, "dfsd_logical_bytes") == size as f64
        },
    );
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
#[test]
fn one_request_id_follows_a_put_through_every_role() {
    let c = cluster(3, &[("DFSD_LOG_LEVEL", "info,dfsd::grpc_layer=debug")]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("f");
    std::fs::write(&local, random_bytes(300_000, 9)).unwrap();
    let out = c
        .cli_command()
        .env("DFSD_REQUEST_ID", "obs-put-4711")
        .args(["put", "-q"])
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
    // Spans name the path and the chunk a call is about.
    let has = |log: &str, parts: &[&str]| {
        c.log(log)
            .lines()
            .any(|l| parts.iter().all(|p| l.contains(p)))
    };
    assert!(has("coordinator", &["method=BeginUpload", "path=/rid/f"]));
    let chunk_line = c
        .log("node-0")
        .lines()
        .find(|l| l.contains("method=WriteChunk") && l.contains("request_id=obs-put-4711"))
        .map(str::to_string)
        .unwrap();
    let chunk = chunk_line.split("chunk=").nth(1).map(|r| &r[..64]);
    assert!(
        chunk.is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())),
        "{chunk_line}"
    );
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
fn progress_bars_only_on_a_terminal_and_never_with_quiet() {
    // `script` (util-linux) runs the CLI on a pseudo-terminal.
    if std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: no `script` command to provide a terminal");
        return;
    }
    let c = cluster(1, &[]);
    let dir = tempfile::tempdir().unwrap();
    let local = dir.path().join("in");
    std::fs::write(&local, random_bytes(3 << 20, 4)).unwrap();
    let on_tty = |args: &str| {
        let cmd = format!(
            "{} --coordinator {} {args}",
            testkit::bin(),
            c.coordinator_addr
        );
        let mut script = std::process::Command::new("script");
        // The cluster's TLS settings and key, passed through `script` to the CLI.
        c.client_env(&mut script);
        let out = script
            .args(["-qec", &cmd, "/dev/null"])
            .stdin(std::process::Stdio::null())
            .output()
            .unwrap();
        assert!(out.status.success(), "{args}: {}", stderr(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let put = on_tty(&format!("put --chunk-size 1MiB {} /p/f", local.display()));
    // (A fast transfer may be drawn only once, at its start.)
    assert!(put.contains("/3.00 MiB") && put.contains("ETA"), "{put:?}");
    let get = on_tty(&format!("get /p/f {}", dir.path().join("out").display()));
    assert!(get.contains("/3.00 MiB") && get.contains("ETA"), "{get:?}");
    let quiet = on_tty(&format!("put -q {} /p/g", local.display()));
    assert_eq!(quiet, "", "-q prints nothing");
    // Not a terminal: no bar, only the one-line report.
    let out = c.cli(&["put", local.to_str().unwrap(), "/p/h"]);
    assert!(out.status.success());
    assert!(stderr(&out).starts_with("stored /p/h"), "{}", stderr(&out));
    assert!(!stderr(&out).contains("ETA"));
}
