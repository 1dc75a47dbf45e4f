//! The S3 gateway (issue 7) against a real cluster: a `dfsd gateway` process in front of a
//! TestCluster, driven by boto3 (tests/s3/boto_suite.py). Skipped, saying so, when python3
//! cannot import boto3 (`.ci/run` installs it).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{free_port, random_bytes, TestCluster};
use sha2::{Digest, Sha256};

const RW: (&str, &str) = ("AKIDGATEWAYTESTRW", "rw-secret-0123456789");
const RO: (&str, &str) = ("AKIDGATEWAYTESTRO", "ro-secret-0123456789");

fn boto3_available() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
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

/// Starts a gateway for `cluster` with the two test S3 keys and 1 MiB chunks (so test
/// objects span several chunks), and waits until it accepts connections.
fn start_gateway(cluster: &TestCluster) -> Gateway {
    let dir = cluster.dir.path();
    let config = dir.join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[gateway]\ns3_keys = [[\"{}\", \"{}\"], [\"{}\", \"{}\", \"readonly\"]]\n",
            RW.0, RW.1, RO.0, RO.1
        ),
    )
    .unwrap();
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

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn boto3_suite_against_a_gateway() {
    if !boto3_available() {
        println!(
            "SKIPPED: boto3_suite_against_a_gateway needs python3 with boto3 \
             (python3 -m pip install boto3); `.ci/run` installs it"
        );
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster);
    let keep = random_bytes(3 * 1024 * 1024 + 11, 42);
    let keep_file = cluster.dir.path().join("keep.bin");
    std::fs::write(&keep_file, &keep).unwrap();

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/s3/boto_suite.py");
    let out = Command::new("python3")
        .arg(&script)
        .env("S3_ENDPOINT", &gw.endpoint)
        .env("S3_KEY", RW.0)
        .env("S3_SECRET", RW.1)
        .env("S3_RO_KEY", RO.0)
        .env("S3_RO_SECRET", RO.1)
        .env("KEEP_FILE", &keep_file)
        // No AWS settings of the machine running the tests.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("run python3");
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

/// Runs a python script of tests/s3 against `gw` with the readwrite key; panics with the
/// script's output and the gateway log when it fails.
fn run_suite(gw: &Gateway, script: &str, extra: &[(&str, &Path)]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/s3")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .env("S3_ENDPOINT", &gw.endpoint)
        .env("S3_KEY", RW.0)
        .env("S3_SECRET", RW.1)
        // No AWS settings of the machine running the tests.
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL");
    for (k, v) in extra {
        cmd.env(k, v);
    }
    let out = cmd.output().expect("run python3");
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success() && stdout.contains("ALL PASSED"),
        "{} failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
        script.display(),
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    print!("{stdout}");
    stdout
}

/// The chunk ids of a file, in order, from the coordinator.
fn chunk_ids(cluster: &TestCluster, path: &str) -> Vec<String> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut coord = cluster.raw_coordinator();
        let f = coord
            .get_file(dfsd::proto::pb::GetFileRequest {
                path: path.into(),
                start_chunk: 0,
                max_chunks: 0,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(!f.truncated);
        f.chunks.into_iter().map(|c| c.chunk_id).collect()
    })
}

#[test]
fn object_features_multipart_and_aws_cli_sync() {
    if !boto3_available() {
        println!(
            "SKIPPED: object_features_multipart_and_aws_cli_sync needs python3 with boto3; \
             `.ci/run` installs it"
        );
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster);
    let work = tempfile::tempdir().unwrap();
    run_suite(&gw, "objects_suite.py", &[("WORK_DIR", work.path())]);

    // CopyObject moved no bytes: the copy is the same chunk list.
    let orig = chunk_ids(&cluster, "/gamma/orig");
    assert_eq!(orig.len(), 4, "3 MiB + 5 bytes in 1 MiB chunks");
    assert_eq!(chunk_ids(&cluster, "/gamma/copy"), orig);
    // The completed multipart object is its parts' chunks, joined (5 + 6 + 1 chunks).
    assert_eq!(chunk_ids(&cluster, "/gamma/mp/big").len(), 12);
    // Completed and aborted uploads left nothing behind.
    let ls = cluster.cli(&["ls", "/gamma/.dfsd-uploads"]);
    let left = String::from_utf8_lossy(&ls.stdout);
    assert!(left.trim().is_empty(), "uploads left behind:\n{left}");
    let log = gw.log();
    assert!(!log.contains(" ERROR "), "gateway logged errors:\n{log}");
}
