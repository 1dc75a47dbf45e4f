//! Issue 12, finding 4: the coordinator's admin port against a namespace of 100k files.
//! A loop of scrapes and status page views runs no scan of the metadata tables (the
//! gauges come from a cache a background worker refreshes), the status page shows paths
//! only to an admin key, and Stat latency is measured with and without the loop.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use admin::{basic_auth, cluster, http_get, http_get_with, scrape, val};
use testkit::{admin, fill};
use testkit::{secure_mode, stderr, wait_until};

const FILES: usize = 100_000;
const SECRET_PATH: &str = "/tenant-secret/payroll-2026.txt";

fn scans(m: &std::collections::HashMap<String, f64>, kind: &str) -> f64 {
    val(m, &format!("dfsd_metadata_scans_total{{kind=\"{kind}\"}}"))
}

/// Stat latencies (ms) of `n` calls on filled paths, in order of the calls.
fn stat_latencies(
    rt: &tokio::runtime::Runtime,
    client: &dfsd::client::Client,
    n: usize,
) -> Vec<f64> {
    rt.block_on(async {
        let mut out = Vec::with_capacity(n);
        for i in 0..n {
            let path = format!("/fill/d{:04}/f{:05}", (i * 37) % 100, (i * 7919) % 1000);
            let started = Instant::now();
            let e = client.stat(&path).await.unwrap();
            out.push(started.elapsed().as_secs_f64() * 1000.0);
            assert_eq!(e.path.as_str(), path);
        }
        out
    })
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

#[test]
fn scrapes_and_page_views_over_100k_files_scan_nothing_and_hide_paths() {
    // One refresh at start, none during the test: any scan it sees comes from a request.
    let mut c = cluster(1, &[("DFSD_COORDINATOR__GAUGE_REFRESH_INTERVAL", "1h")]);
    let out = c.cli_stdin(&["put", "-q", "-", SECRET_PATH], Some(b"salaries"));
    assert!(out.status.success(), "{}", stderr(&out));
    let reader = c
        .secure
        .is_some()
        .then(|| c.create_key("reader", "readonly", "/"));

    c.kill_coordinator();
    let t = Instant::now();
    let n = fill::fill_files(&c.coordinator_dir().join("meta.db"), 100, FILES / 100);
    eprintln!("filled {n} files in {:?}", t.elapsed());
    c.start_coordinator();
    // The restarted coordinator's admin endpoint, on a port of its own (port 0 again).
    let addr = admin::admin_addr(&c, "coordinator");
    let addr = addr.as_str();
    let total = (n + 1) as f64;
    wait_until("the first gauge refresh", Duration::from_secs(60), || {
        std::net::TcpStream::connect(addr).is_ok() && val(&scrape(addr), "dfsd_files") == total
    });

    // The scrape loop: /metrics and the status page, anonymous and as admin.
    let admin_auth = c.secure.as_ref().map(|s| basic_auth(&s.key_id, &s.secret));
    let before = scrape(addr);
    let t = Instant::now();
    for i in 0..200u32 {
        let m = scrape(addr);
        assert_eq!(val(&m, "dfsd_files"), total);
        if i.is_multiple_of(4) {
            let (code, page) = http_get(addr, "/");
            assert_eq!(code, 200, "{page}");
            assert!(
                page.contains(&format!("{n_files} files", n_files = n + 1)),
                "{page}"
            );
            if let Some(h) = &admin_auth {
                let (code, _, page) = http_get_with(addr, "/", std::slice::from_ref(h));
                assert_eq!(code, 200, "{page}");
            }
        }
    }
    let after = scrape(addr);
    eprintln!("250+ admin requests in {:?}", t.elapsed());
    // (Not replica_counts: safe mode, which lasts as the made-up nodes never report,
    // counts replicas per node on every maintenance tick.)
    for kind in ["namespace_counts", "gc_backlog", "list_nodes"] {
        assert_eq!(
            scans(&after, kind),
            scans(&before, kind),
            "{kind}: a scrape or page view scanned the metadata"
        );
    }
    assert!(
        scans(&after, "namespace_counts") >= 1.0,
        "the refresh is counted"
    );
    assert_eq!(
        val(&after, "dfsd_gauge_refreshes_total"),
        val(&before, "dfsd_gauge_refreshes_total"),
        "no refresh between the scrapes (interval 1h)"
    );

    // Paths: only for an admin key (with authentication off, everyone is admin).
    let (code, page) = http_get(addr, "/");
    assert_eq!(code, 200);
    assert!(page.contains("file_committed"), "events are listed: {page}");
    let metrics = http_get(addr, "/metrics").1;
    assert!(!metrics.contains("tenant-secret"), "{metrics}");
    match (&admin_auth, &reader) {
        (Some(admin_h), Some((rid, rsecret))) => {
            assert!(
                !page.contains("tenant-secret"),
                "anonymous view shows a path: {page}"
            );
            assert!(page.contains("paths-hidden"), "{page}");
            let (code, _, full) = http_get_with(addr, "/", std::slice::from_ref(admin_h));
            assert_eq!(code, 200);
            assert!(full.contains(SECRET_PATH), "admin sees paths: {full}");
            assert!(!full.contains("paths-hidden"));
            // A key that is not admin, a wrong secret, a sign-in without credentials.
            let (code, _, body) = http_get_with(addr, "/", &[basic_auth(rid, rsecret)]);
            assert_eq!(code, 403, "{body}");
            assert!(!body.contains("tenant-secret"));
            let s = c.secure.as_ref().unwrap();
            let (code, head, body) = http_get_with(
                addr,
                "/",
                &[basic_auth(&s.key_id, "wrong-secret-0123456789")],
            );
            assert_eq!(code, 401, "{body}");
            assert!(
                head.to_ascii_lowercase()
                    .contains("www-authenticate: basic"),
                "{head}"
            );
            let (code, head, _) = http_get_with(addr, "/?login", &[]);
            assert_eq!(code, 401);
            assert!(
                head.to_ascii_lowercase().contains("www-authenticate"),
                "{head}"
            );
            assert!(!metrics.contains(rid.as_str()) && !metrics.contains(&s.key_id));
        }
        _ => {
            assert!(!secure_mode());
            assert!(
                page.contains(SECRET_PATH),
                "auth off: every viewer is admin: {page}"
            );
        }
    }

    // Stat latency with and without a scrape loop (figures, not assertions).
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = rt.block_on(async { c.client() });
    stat_latencies(&rt, &client, 50);
    let quiet = stat_latencies(&rt, &client, 500);
    let stop = Arc::new(AtomicBool::new(false));
    let scraper = {
        let stop = stop.clone();
        let addr = addr.to_string();
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let _ = scrape(&addr);
                let _ = http_get(&addr, "/");
                n += 2;
            }
            n
        })
    };
    let busy = stat_latencies(&rt, &client, 500);
    stop.store(true, Ordering::Relaxed);
    let scraped = scraper.join().unwrap();
    let last = scrape(addr);
    assert_eq!(
        scans(&last, "namespace_counts"),
        scans(&after, "namespace_counts"),
        "the scrape loop during the Stat run scanned nothing"
    );
    eprintln!(
        "Stat latency over {total} files, 500 calls each: without scrapes p50 {:.2} ms p99 {:.2} ms; \
         with a scrape loop ({scraped} admin requests) p50 {:.2} ms p99 {:.2} ms",
        percentile(&quiet, 0.5),
        percentile(&quiet, 0.99),
        percentile(&busy, 0.5),
        percentile(&busy, 0.99),
    );
}
