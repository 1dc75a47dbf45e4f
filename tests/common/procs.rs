//! Server processes and commands for tests that set up clusters of their own (a
//! plaintext cluster with keys, extra datanodes with their own certificates) rather than
//! through [`TestCluster`](super::TestCluster).

#![allow(dead_code)]

use std::io::Write;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::{free_port, BIN};

/// A dfsd server process, killed on drop.
pub struct Server {
    pub child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `dfsd` with the arguments `mk(listen address)` and `env` on a free port, its
/// output appended to `<dir>/<name>.log`.
pub fn start(
    dir: &Path,
    name: &str,
    env: &[(&str, String)],
    mk: impl Fn(&str) -> Vec<String>,
) -> Server {
    let log = dir.join(format!("{name}.log"));
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", free_port());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(BIN);
        for k in [
            "CONFIG",
            "ROLE",
            "COORDINATOR",
            "ACCESS_KEY",
            "SECRET_KEY",
            "TLS__CA",
        ] {
            cmd.env_remove(format!("DFSD_{k}"));
        }
        cmd.env("DFSD_LOG_LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(mk(&addr))
            .stdin(Stdio::null())
            .stdout(f.try_clone().unwrap())
            .stderr(f);
        let mut child = cmd.spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let sock = addr.parse().unwrap();
            if TcpStream::connect_timeout(&sock, Duration::from_millis(200)).is_ok() {
                return Server {
                    child,
                    addr: format!("http://{addr}"),
                    log,
                };
            }
            if let Ok(Some(_)) = child.try_wait() {
                break; // the port was taken meanwhile, or a real failure: retry, then report
            }
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(25));
        }
    }
    panic!(
        "{name} failed to start:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

pub fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(d) = stdin {
        child.stdin.take().unwrap().write_all(d).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// Polls an async condition until it holds or `timeout` passes.
pub async fn eventually<F: std::future::Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
