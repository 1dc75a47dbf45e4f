//! The S3 gateway (issue 7) against a real cluster: a `dfsd gateway` process in front of a
//! TestCluster, with the cluster's gateway certificate; S3 callers sign with dfsd access
//! keys made by `dfsd key create`. Driven by boto3 (tests/s3/*.py); the tests that need it are skipped, saying
//! so, when python3 cannot import boto3 (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, random_bytes, TestCluster};
use sha2::{Digest, Sha256};

fn boto3_available(test: &str) -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!(
            "SKIPPED: {test} needs python3 with boto3 (python3 -m pip install boto3); \
             `.ci/run` installs it"
        );
    }
    ok
}

/// A `dfsd gateway` process; killed on drop.
struct Gateway {
    child: Child,
    endpoint: String,
    log: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts a gateway for `cluster` with 1 MiB chunks (so test objects span several chunks)
/// and `settings` in its `[gateway]` section, and waits until it accepts connections. In
/// secure mode it has the cluster's gateway certificate and the admin key for its own
/// calls.
fn start_gateway(cluster: &TestCluster, settings: &str) -> Gateway {
    let dir = cluster.dir.path();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("[gateway]\n{settings}\n")).unwrap();
    let log = dir.join("gateway.log");
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        // The cluster's CA and admin key, as for any client of it.
        let mut cmd = cluster.cli_command();
        if let Some(s) = &cluster.secure {
            let (cert, key) = s.pem("gateway");
            cmd.env("DFSD_TLS__CERT", cert).env("DFSD_TLS__KEY", key);
        }
        cmd.env("DFSD_LOG_LEVEL", "info")
            .env("DFSD_CLIENT__CHUNK_SIZE", "1MiB")
            .arg("--config")
            .arg(&config)
            .args(["gateway", "--listen", &addr])
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let mut child = cmd.spawn().expect("spawn dfsd gateway");
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sock = addr.parse().unwrap();
            if std::net::TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return Gateway {
                    child,
                    endpoint: format!("http://{addr}"),
                    log,
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile, or a real failure: retry, then report
            }
            assert!(
                Instant::now() < deadline,
                "gateway did not start; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!(
        "gateway failed to start; log:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

/// Runs a script of tests/s3 against `gw`, with no AWS settings of the machine running
/// the tests.
fn python(gw: &Gateway, script: &str, env: &[(&str, &str)]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/s3")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .env("S3_ENDPOINT", &gw.endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    cmd.envs(env.iter().copied());
    cmd.output().expect("run python3")
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn boto3_suite_against_a_gateway() {
    if !boto3_available("boto3_suite_against_a_gateway") {
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster, "");
    let rw = cluster.create_key("s3-writer", "readwrite", "/");
    let ro = cluster.create_key("s3-reader", "readonly", "/");
    let keep = random_bytes(3 * 1024 * 1024 + 11, 42);
    let keep_file = cluster.dir.path().join("keep.bin");
    std::fs::write(&keep_file, &keep).unwrap();

    let keep_path = keep_file.display().to_string();
    let out = python(
        &gw,
        "boto_suite.py",
        &[
            ("S3_KEY", &rw.0),
            ("S3_SECRET", &rw.1),
            ("S3_RO_KEY", &ro.0),
            ("S3_RO_SECRET", &ro.1),
            ("KEEP_FILE", &keep_path),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL PASSED"),
        "boto3 suite failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    print!("{stdout}");

    // What S3 stored is an ordinary dfsd file at /bucket/key, byte for byte.
    let got = cluster.cli(&["get", "/survivor/keep/data.bin", "-"]);
    assert!(got.status.success(), "{}", common::stderr(&got));
    assert_eq!(sha256(&got.stdout), sha256(&keep));
    // Buckets are top-level directories; the escaped key never landed anywhere.
    let ls = cluster.cli(&["ls", "/"]);
    let names = String::from_utf8_lossy(&ls.stdout);
    assert!(
        names.contains("beta") && names.contains("survivor"),
        "{names}"
    );
    assert!(!names.contains("alpha"), "{names}");
    let escaped = cluster.cli(&["stat", "/beta/escaped"]);
    assert!(!escaped.status.success(), "a '..' key escaped its bucket");
    // The gateway logged no error (every refusal above was the caller's fault).
    let log = gw.log();
    assert!(!log.contains(" ERROR "), "gateway logged errors:\n{log}");
}

#[test]
fn revoked_keys_lose_s3_access_within_the_cache_ttl() {
    if !boto3_available("revoked_keys_lose_s3_access_within_the_cache_ttl") {
        return;
    }
    let ttl = Duration::from_secs(2);
    let cluster = TestCluster::start(1);
    let gw = start_gateway(&cluster, &format!("key_cache_ttl = \"{}s\"", ttl.as_secs()));
    let key = cluster.create_key("soon-revoked", "readwrite", "/");
    let probe = |mode: &str| {
        let out = python(
            &gw,
            "revocation_probe.py",
            &[("S3_KEY", &key.0), ("S3_SECRET", &key.1), ("MODE", mode)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "probe failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        stdout
    };
    // Valid: the gateway now holds the secret.
    assert!(probe("once").starts_with("ok"));
    cluster.revoke_key(&key.0);
    let revoked = Instant::now();
    // The probe signs a request every 100 ms until one is refused (for 30 s at most).
    let refused = probe("until-refused");
    let took = revoked.elapsed();
    assert!(
        refused.starts_with("refused InvalidAccessKeyId 403") && refused.contains("revoked"),
        "{refused}"
    );
    // The TTL, plus the probe's own start-up (python and boto3) and a margin.
    assert!(
        took < ttl + Duration::from_secs(8),
        "refused only after {took:?}"
    );
}
