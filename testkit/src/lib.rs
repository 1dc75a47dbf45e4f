//! dfsd's test kit, used by every test in tests/ and every benchmark in benches/.
//!
//! | module | what it offers |
//! |---|---|
//! | [`cluster`] | [`TestCluster`]: a cluster of real `dfsd` processes (TLS and keys by default), SIGKILL and restart, the CLI and raw gRPC clients aimed at it, a gateway |
//! | [`inproc`] | [`InProcCluster`]: the coordinator and datanodes as tokio tasks in the test process, each on `127.0.0.1:0`, with fault hooks (kill, pause, cut off, corrupt a replica) |
//! | [`relay`] | the loopback relay in front of each in-process node through which faults are made |
//! | [`procs`] | single server processes for tests that build clusters of their own |
//! | [`admin`] | admin-endpoint helpers: addresses from logs, HTTP GETs, Prometheus scrapes |
//! | [`fill`] | a big namespace written straight into a stopped coordinator's database |
//! | [`wait`] | deadline-bounded waits on a condition, sync and async |
//!
//! Every server binds port 0 and reports the address it got (in-process: the listener;
//! processes: their "listening" log line), so no test races another for a port. Every
//! wait is a condition polled against a deadline.

pub mod admin;
pub mod cluster;
pub mod fill;
pub mod inproc;
pub mod procs;
pub mod relay;
pub mod wait;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

pub use cluster::{
    grpc_code, secure_mode, start_gateway, Creds, Gateway, Opts, RawCoordinator, Secure,
    TestCluster,
};
pub use inproc::{InProcCluster, InProcNode, InProcOpts};
pub use wait::{eventually, wait_until};

/// The `dfsd` binary of this build: beside the test or benchmark executable's `deps/`
/// directory (where cargo builds it for integration tests and benchmarks), or
/// `DFSD_TEST_BIN` if set.
pub fn bin() -> &'static str {
    static BIN: OnceLock<String> = OnceLock::new();
    BIN.get_or_init(|| {
        if let Some(b) = std::env::var_os("DFSD_TEST_BIN") {
            return PathBuf::from(b).display().to_string();
        }
        let exe = std::env::current_exe().expect("the test executable's path");
        let dir = exe.parent().expect("the executable's directory");
        // target/<profile>/deps/<test>-<hash> -> target/<profile>/dfsd
        let profile = if dir.ends_with("deps") {
            dir.parent().expect("target/<profile>")
        } else {
            dir
        };
        let b = profile.join("dfsd");
        assert!(
            b.exists(),
            "no dfsd binary at {} (set DFSD_TEST_BIN)",
            b.display()
        );
        b.display().to_string()
    })
}

/// A loopback port nothing listens on at the moment of the call, for tests of an
/// unreachable address. Servers never use it: they bind port 0 themselves.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Deterministic pseudo-random bytes (fast, so big test files cost little).
pub fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    use rand::{RngCore, SeedableRng};
    let mut v = vec![0u8; len];
    rand::rngs::StdRng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether python3 can import boto3 (the S3 tests and benchmark drive the gateway with it).
pub fn python_has_boto3() -> bool {
    Command::new("python3")
        .args(["-c", "import boto3"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
