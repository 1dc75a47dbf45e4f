//! Server processes: started on port 0, their bound address read from their "listening"
//! log line, so no test races another for a port. [`start`] is for tests that set up
//! clusters of their own (a plaintext cluster with keys, extra datanodes with their own
//! certificates) rather than through [`TestCluster`](crate::TestCluster), which starts its
//! servers with [`spawn_server`] too.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::bin;

/// How long a server has to bind and log its address.
const START_TIMEOUT: Duration = Duration::from_secs(20);

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

/// The address a server logged it is serving on, from one log line: the coordinator's
/// "coordinator listening addr=...", the datanode's "datanode listening ... listen=...",
/// the gateway's "S3 gateway serving listen=...".
fn logged_addr(line: &str) -> Option<String> {
    let field = if line.contains("coordinator listening") {
        "addr="
    } else if line.contains("datanode listening") || line.contains("S3 gateway serving") {
        "listen="
    } else {
        return None;
    };
    let v = line.split(field).nth(1)?.split_whitespace().next()?;
    Some(v.trim_matches('"').to_string())
}

/// Spawns `cmd`, a server told to listen on `listen` (port 0, or a fixed address it had
/// before a restart), with its output appended to `log`, and waits until it logs the
/// address it is serving on: `(child, host:port)`, or `None` if it exited first.
fn spawn_once(mut cmd: Command, log: &Path, what: &str) -> Option<(Child, String)> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    let from = f.metadata().unwrap().len() as usize;
    cmd.stdin(Stdio::null())
        .stdout(f.try_clone().unwrap())
        .stderr(f);
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read(log).unwrap_or_default();
        let new = String::from_utf8_lossy(text.get(from..).unwrap_or_default());
        if let Some(addr) = new.lines().find_map(logged_addr) {
            return Some((child, addr));
        }
        if let Ok(Some(_)) = child.try_wait() {
            return None;
        }
        assert!(
            Instant::now() < deadline,
            "{what} did not log its address within {START_TIMEOUT:?}; log:\n{new}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Spawns a server with `mk_cmd()` and returns it with the address it logged. A server
/// on port 0 gets a fresh port and starts first time; one restarted on its old fixed
/// port is retried (within the start deadline) if that port is briefly taken.
pub fn spawn_server(mk_cmd: impl Fn() -> Command, log: &Path, what: &str) -> (Child, String) {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(started) = spawn_once(mk_cmd(), log, what) {
            return started;
        }
        assert!(
            Instant::now() < deadline,
            "{what} failed to start; log:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// A `dfsd` command with none of the caller's dfsd settings.
pub fn clean_command() -> Command {
    let mut cmd = Command::new(bin());
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
    cmd
}

/// Starts `dfsd` with the arguments `mk(listen address)` and `env`, told to listen on
/// port 0, its output appended to `<dir>/<name>.log`.
pub fn start(
    dir: &Path,
    name: &str,
    env: &[(&str, String)],
    mk: impl Fn(&str) -> Vec<String>,
) -> Server {
    let log = dir.join(format!("{name}.log"));
    let mk_cmd = || {
        let mut cmd = clean_command();
        cmd.env("DFSD_LOG_LEVEL", "info")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .args(mk("127.0.0.1:0"));
        cmd
    };
    let (child, addr) = spawn_server(mk_cmd, &log, name);
    Server {
        child,
        addr: format!("http://{addr}"),
        log,
    }
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

pub use crate::wait::eventually;

#[cfg(test)]
mod tests {
    use super::logged_addr;

    #[test]
    fn addresses_are_read_from_each_roles_listening_line() {
        let c = "2026-12-01T08:00:00Z  INFO dfsd::coordinator: coordinator listening addr=127.0.0.1:4100 data_dir=/tmp/x";
        let d = "INFO dfsd::datanode: datanode listening node=dn-1 listen=127.0.0.1:4101 advertise=http://127.0.0.1:4101 chunks=0";
        let g = "INFO dfsd::gateway: S3 gateway serving listen=127.0.0.1:4102 https=false";
        let a = "INFO dfsd::admin_http: admin endpoint listening addr=127.0.0.1:4103";
        assert_eq!(logged_addr(c).as_deref(), Some("127.0.0.1:4100"));
        assert_eq!(logged_addr(d).as_deref(), Some("127.0.0.1:4101"));
        assert_eq!(logged_addr(g).as_deref(), Some("127.0.0.1:4102"));
        assert_eq!(logged_addr(a), None);
    }
}
