//! Helpers for tests of the admin endpoints: a cluster whose every role serves metrics
//! on a free port, the address each logged, plain HTTP GETs and Prometheus scrapes.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::time::Duration;

use crate::{wait_until, Opts, TestCluster};

/// A cluster whose every role opens its admin endpoint on a free loopback port, with the
/// coordinator's counted gauges refreshed every second.
pub fn cluster(nodes: usize, extra: &[(&str, &str)]) -> TestCluster {
    let mut env = vec![
        (
            "DFSD_COORDINATOR__ADMIN_LISTEN".into(),
            "127.0.0.1:0".into(),
        ),
        ("DFSD_DATANODE__ADMIN_LISTEN".into(), "127.0.0.1:0".into()),
        // Counted gauges (files, chunks) follow within a second.
        (
            "DFSD_COORDINATOR__GAUGE_REFRESH_INTERVAL".into(),
            "1s".into(),
        ),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    TestCluster::start_with(Opts {
        nodes,
        replication: 3.min(nodes as u32),
        env,
    })
}

/// The admin address a process logged last ("admin endpoint listening addr=...").
pub fn admin_addr(c: &TestCluster, log: &str) -> String {
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
pub fn scrape(addr: &str) -> HashMap<String, f64> {
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

pub fn val(m: &HashMap<String, f64>, key: &str) -> f64 {
    m.get(key).copied().unwrap_or(0.0)
}

pub fn grpc(service: &str, method: &str, code: &str) -> String {
    format!("dfsd_grpc_requests_total{{service=\"{service}\",method=\"{method}\",code=\"{code}\"}}")
}

pub fn delta(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    val(after, key) - val(before, key)
}

/// One HTTP/1.1 GET on loopback with extra header lines ("Name: value"): (status code,
/// response head, body).
pub fn http_get_with(addr: &str, path: &str, headers: &[String]) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let extra: String = headers.iter().map(|h| format!("{h}\r\n")).collect();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = String::new();
    s.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let code = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (code, head.to_string(), body.to_string())
}

/// An HTTP Basic `Authorization` header line for an access key.
pub fn basic_auth(key_id: &str, secret: &str) -> String {
    use base64::Engine;
    let b = base64::engine::general_purpose::STANDARD.encode(format!("{key_id}:{secret}"));
    format!("Authorization: Basic {b}")
}
