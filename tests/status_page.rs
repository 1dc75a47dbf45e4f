//! The coordinator's status page in headless Chromium against a live cluster.

use std::time::Duration;

use admin::{admin_addr, cluster};
use testkit::admin;
use testkit::{stderr, wait_until};

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

    // Counts come from the gauge cache, refreshed every second here.
    let mut dom = String::new();
    wait_until(
        "the page to count the file",
        Duration::from_secs(15),
        || {
            dom = browse(browser, profile.path(), &["--dump-dom"], &url);
            dom.contains("1 files")
        },
    );
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
    assert!(
        dom.contains("file_committed"),
        "recent events listed: {dom}"
    );

    // Without an admin key the page names no path; with one (HTTP Basic) it does.
    if let Some(s) = &c.secure {
        assert!(!dom.contains("/page/file"), "{dom}");
        let host = url.trim_start_matches("http://");
        // `?login` answers 401 until credentials come, which makes the browser send the
        // ones in the URL.
        let signed_in = format!("http://{}:{}@{host}?login", s.key_id, s.secret);
        let full = browse(browser, profile.path(), &["--dump-dom"], &signed_in);
        assert!(full.contains("/page/file"), "{full}");
    }

    c.kill_node(1);
    let dead = format!("<tr id=\"node-{}\" data-state=\"dead\">", ids[1]);
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
