//! The Docker suite: a real cluster (1 coordinator, 6 datanodes) from docker/compose.yml
//! plus docker/compose.test.yml, driven through the dfsd CLI run in containers on the
//! cluster's network, and through Docker itself (kill, network disconnect, restart, down/up).
//!
//! Runs only when asked: `DFSD_DOCKER_TESTS=1`, normally through docker/integration.sh,
//! which builds the image, brings the cluster up, runs this target with one test thread and
//! tears everything down. Plain `cargo test` prints "skipped" lines and returns at once.
//!
//! Every wait is a condition polled against a deadline. Measured figures are printed as
//! `FIGURE name = value` lines.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const CHUNK: u64 = 8 * MIB;
const DATANODES: usize = 6;
const REPLICATION: usize = 3;

/// The cluster under test, as docker/integration.sh describes it in the environment.
struct Cluster {
    compose: Vec<String>,
    project: String,
    network: String,
    image: String,
    /// Host directory mounted at /work in client containers (certs/ holds the TLS files).
    work: PathBuf,
    /// The admin access key the coordinator was started with.
    key_id: String,
    secret: String,
}

fn enabled(name: &str) -> Option<Cluster> {
    if std::env::var("DFSD_DOCKER_TESTS").as_deref() != Ok("1") {
        println!("{name}: skipped (set DFSD_DOCKER_TESTS=1, or run docker/integration.sh)");
        return None;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let project = std::env::var("DFSD_COMPOSE_PROJECT").unwrap_or_else(|_| "dfsdit".into());
    let mut compose: Vec<String> = std::env::var("DFSD_COMPOSE")
        .unwrap_or_else(|_| "docker-compose".into())
        .split_whitespace()
        .map(String::from)
        .collect();
    for f in ["docker/compose.yml", "docker/compose.test.yml"] {
        compose.push("-f".into());
        compose.push(root.join(f).display().to_string());
    }
    compose.push("-p".into());
    compose.push(project.clone());
    let work = std::env::var("DFSD_DOCKER_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::env::temp_dir().join(format!("{project}-work")));
    std::fs::create_dir_all(&work).unwrap();
    chmod_777(&work);
    Some(Cluster {
        network: format!("{project}_dfsd"),
        image: std::env::var("DFSD_IMAGE").unwrap_or_else(|_| "dfsd:latest".into()),
        compose,
        project,
        work,
        key_id: std::env::var("DFSD_ADMIN_KEY_ID")
            .expect("DFSD_ADMIN_KEY_ID (docker/integration.sh)"),
        secret: std::env::var("DFSD_ADMIN_SECRET")
            .expect("DFSD_ADMIN_SECRET (docker/integration.sh)"),
    })
}

fn chmod_777(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o777)).unwrap();
}

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    out
}

fn ok(cmd: &mut Command) -> String {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Polls `f` until it returns `Some`, or panics after `limit` naming `what`.
fn wait_for<T>(what: &str, limit: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Cluster {
    fn compose(&self, args: &[&str]) -> String {
        ok(Command::new(&self.compose[0])
            .args(&self.compose[1..])
            .args(args))
    }

    fn container(&self, service: &str) -> String {
        self.compose(&["ps", "-q", service]).trim().to_string()
    }

    /// A `dfsd` client command in a throw-away container on the cluster network.
    fn dfsd_cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("docker");
        c.args(["run", "--rm", "--network", &self.network, "-v"])
            .arg(format!("{}:/work", self.work.display()))
            .arg("-v")
            .arg(format!("{}:/certs:ro", self.work.join("certs").display()))
            .args([
                "-e",
                "DFSD_TLS__CA=/certs/ca.pem",
                "-e",
                "DFSD_ACCESS_KEY",
                "-e",
                "DFSD_SECRET_KEY",
            ])
            .env("DFSD_ACCESS_KEY", &self.key_id)
            .env("DFSD_SECRET_KEY", &self.secret)
            .args([&self.image, "--coordinator", "coordinator:7070"])
            .args(args);
        c
    }

    fn dfsd(&self, args: &[&str]) -> Output {
        run(&mut self.dfsd_cmd(args))
    }

    fn dfsd_ok(&self, args: &[&str]) -> String {
        ok(&mut self.dfsd_cmd(args))
    }

    fn json(&self, args: &[&str]) -> Option<Value> {
        let out = self.dfsd(args);
        if !out.status.success() {
            return None;
        }
        serde_json::from_slice(&out.stdout).ok()
    }

    fn status(&self) -> Option<Value> {
        self.json(&["status", "--json"])
    }

    fn nodes(&self) -> Option<Vec<Value>> {
        self.json(&["nodes", "--json"])
            .and_then(|v| v.as_array().cloned())
    }

    /// The state the coordinator gives the datanode advertised as `service:7071`.
    fn node_state(&self, service: &str) -> Option<String> {
        let addr = format!("{service}:7071");
        self.nodes()?
            .into_iter()
            .find(|n| n["addr"].as_str().is_some_and(|a| a.ends_with(&addr)))
            .and_then(|n| n["state"].as_str().map(String::from))
    }

    /// Starts whatever an earlier (failed) test left stopped, and waits for six live nodes.
    fn ready(&self) {
        self.compose(&["start"]);
        self.wait_all_alive(Duration::from_secs(60));
    }

    fn wait_all_alive(&self, limit: Duration) {
        wait_for("all datanodes alive", limit, || {
            let n = self.nodes()?;
            let alive = n.iter().filter(|n| n["state"] == "alive").count();
            (alive == DATANODES).then_some(())
        });
    }

    /// Waits until nothing is under- or over-replicated and safe mode is over.
    fn wait_redundant(&self, limit: Duration) {
        wait_for("full redundancy, no surplus", limit, || {
            let s = self.status()?;
            (s["under_replicated"] == 0
                && s["over_replicated"] == 0
                && s["unrecoverable"] == 0
                && s["safe_mode"] == false)
                .then_some(())
        });
    }

    /// Host path of a datanode's /data (its named volume).
    fn volume_dir(&self, service: &str) -> PathBuf {
        let vol = format!("{}_{service}", self.project);
        let out =
            ok(Command::new("docker").args(["volume", "inspect", "-f", "{{.Mountpoint}}", &vol]));
        PathBuf::from(out.trim())
    }

    /// Datanodes whose volume holds chunk `id`.
    fn holders(&self, id: &str) -> Vec<String> {
        (1..=DATANODES)
            .map(|i| format!("dn{i}"))
            .filter(|s| {
                self.volume_dir(s)
                    .join("chunks")
                    .join(&id[0..2])
                    .join(&id[2..4])
                    .join(id)
                    .is_file()
            })
            .collect()
    }

    fn local(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    /// Stores host file `work/<name>` at `remote`.
    fn put(&self, name: &str, remote: &str) {
        self.dfsd_ok(&["put", "-q", &format!("/work/{name}"), remote]);
    }

    /// Reads `remote` back into the work dir and returns its SHA-256.
    fn get_sha(&self, remote: &str) -> Result<String, String> {
        // Unique per call: concurrent clients may read the same file.
        static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!(
            "got-{n}-{}",
            remote.trim_start_matches('/').replace('/', "_")
        );
        let _ = std::fs::remove_file(self.local(&name));
        let out = self.dfsd(&["get", remote, &format!("/work/{name}")]);
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).into_owned());
        }
        let sha = sha_file(&self.local(&name));
        let _ = std::fs::remove_file(self.local(&name));
        Ok(sha)
    }
}

/// Writes `size` pseudo-random bytes (seeded) to `path`; returns their SHA-256 and the
/// ids of their 8 MiB chunks.
fn write_random(path: &Path, size: u64, seed: u64) -> (String, Vec<String>) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    let mut whole = Sha256::new();
    let mut chunk = Sha256::new();
    let mut in_chunk = 0u64;
    let mut ids = Vec::new();
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut buf = vec![0u8; 1 << 20];
    let mut left = size;
    while left > 0 {
        let n = left.min(buf.len() as u64).min(CHUNK - in_chunk) as usize;
        for w in buf[..n].chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let b = x.to_le_bytes();
            w.copy_from_slice(&b[..w.len()]);
        }
        f.write_all(&buf[..n]).unwrap();
        whole.update(&buf[..n]);
        chunk.update(&buf[..n]);
        in_chunk += n as u64;
        left -= n as u64;
        if in_chunk == CHUNK || left == 0 {
            ids.push(hex::encode(std::mem::take(&mut chunk).finalize()));
            in_chunk = 0;
        }
    }
    f.flush().unwrap();
    drop(f);
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    (hex::encode(whole.finalize()), ids)
}

fn sha_file(path: &Path) -> String {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    hex::encode(h.finalize())
}

/// A file stored by a test: remote path, content hash, chunk ids.
struct Stored {
    remote: String,
    sha: String,
    chunks: Vec<String>,
}

fn store(c: &Cluster, tag: &str, size: u64, seed: u64) -> Stored {
    let name = format!("{tag}-{size}.bin");
    let (sha, chunks) = write_random(&c.local(&name), size, seed);
    let remote = format!("/{tag}/{size}.bin");
    c.put(&name, &remote);
    let _ = std::fs::remove_file(c.local(&name));
    Stored {
        remote,
        sha,
        chunks,
    }
}

fn check_all(c: &Cluster, files: &[Stored]) {
    for f in files {
        let got = c
            .get_sha(&f.remote)
            .unwrap_or_else(|e| panic!("get {}: {e}", f.remote));
        assert_eq!(got, f.sha, "{} reads back different bytes", f.remote);
    }
}

/// Every chunk is on exactly `REPLICATION` distinct datanode volumes.
fn check_placement(c: &Cluster, files: &[Stored]) {
    for f in files {
        for id in &f.chunks {
            let h = c.holders(id);
            assert_eq!(
                h.len(),
                REPLICATION,
                "{}: chunk {id} is on {h:?}, wanted {REPLICATION} distinct nodes",
                f.remote
            );
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1} s", d.as_secs_f64())
}

#[test]
fn t1_round_trips_from_0_bytes_to_200_mib() {
    let Some(c) = enabled("t1_round_trips_from_0_bytes_to_200_mib") else {
        return;
    };
    c.ready();
    let t = Instant::now();
    let sizes = [
        0,
        1,
        4095,
        CHUNK - 1,
        CHUNK,
        CHUNK + 1,
        50 * MIB + 12345,
        200 * MIB,
    ];
    let files: Vec<Stored> = sizes
        .iter()
        .enumerate()
        .map(|(i, &s)| store(&c, "t1", s, 100 + i as u64))
        .collect();
    let puts = t.elapsed();
    check_all(&c, &files);
    println!(
        "FIGURE t1 put of {} files ({} MiB) = {}, get = {}",
        files.len(),
        sizes.iter().sum::<u64>() / MIB,
        secs(puts),
        secs(t.elapsed() - puts)
    );
    c.wait_redundant(Duration::from_secs(60));
    check_placement(&c, &files);
    // The 0-byte file has no chunks and still reads back empty.
    assert!(files[0].chunks.is_empty());
}

#[test]
fn t2_datanode_killed_during_a_500_mib_upload() {
    let Some(c) = enabled("t2_datanode_killed_during_a_500_mib_upload") else {
        return;
    };
    c.ready();
    let size = 500 * MIB;
    let (sha, chunks) = write_random(&c.local("t2.bin"), size, 2);
    let before: u64 = c
        .nodes()
        .unwrap()
        .iter()
        .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
        .sum();
    let mut put: Child = c
        .dfsd_cmd(&["put", "-q", "/work/t2.bin", "/t2/big.bin"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill a datanode once the upload is well under way (some 10 chunks stored).
    wait_for(
        "the upload to store chunks",
        Duration::from_secs(120),
        || {
            let now: u64 = c
                .nodes()?
                .iter()
                .map(|n| n["chunk_count"].as_u64().unwrap_or(0))
                .sum();
            (now >= before + 30).then_some(())
        },
    );
    let victim = "dn3";
    ok(Command::new("docker").args(["kill", &c.container(victim)]));
    let killed = Instant::now();
    // Detection is timed while the upload goes on.
    let dead = wait_for(
        "the killed node to be dead",
        Duration::from_secs(60),
        || (c.node_state(victim)? == "dead").then(|| killed.elapsed()),
    );
    let status = put.wait().unwrap();
    let mut err = String::new();
    put.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    assert!(
        status.success(),
        "put failed after a datanode was killed: {err}"
    );
    println!(
        "FIGURE t2 put finished {} after the kill",
        secs(killed.elapsed())
    );
    let stored = Stored {
        remote: "/t2/big.bin".into(),
        sha,
        chunks,
    };
    let _ = std::fs::remove_file(c.local("t2.bin"));
    check_all(&c, std::slice::from_ref(&stored));
    let full = wait_for("full redundancy", Duration::from_secs(180), || {
        let s = c.status()?;
        (s["under_replicated"] == 0 && s["unrecoverable"] == 0).then(|| killed.elapsed())
    });
    println!("FIGURE t2 killed datanode marked dead after {}", secs(dead));
    println!("FIGURE t2 full redundancy {} after the kill", secs(full));
    let fsck = c.json(&["fsck", "--json"]).expect("fsck");
    assert_eq!(fsck["under_replicated_chunks"], 0, "{fsck}");
    assert_eq!(fsck["missing_chunks"], 0, "{fsck}");
    // The node comes back: surplus copies are trimmed back to the target.
    c.compose(&["start", victim]);
    c.wait_all_alive(Duration::from_secs(60));
    c.wait_redundant(Duration::from_secs(120));
    check_placement(&c, std::slice::from_ref(&stored));
    check_all(&c, std::slice::from_ref(&stored));
}

#[test]
fn t3_coordinator_killed_and_restarted() {
    let Some(c) = enabled("t3_coordinator_killed_and_restarted") else {
        return;
    };
    c.ready();
    let files: Vec<Stored> = (0..4)
        .map(|i| store(&c, "t3", 3 * MIB + i * 5 * MIB, 300 + i))
        .collect();
    ok(Command::new("docker").args(["kill", &c.container("coordinator")]));
    let t = Instant::now();
    c.compose(&["start", "coordinator"]);
    c.wait_all_alive(Duration::from_secs(60));
    println!(
        "FIGURE t3 coordinator serving again {} after the kill",
        secs(t.elapsed())
    );
    check_all(&c, &files);
    let more = store(&c, "t3", 9 * MIB, 399);
    check_all(&c, std::slice::from_ref(&more));
    c.wait_redundant(Duration::from_secs(60));
    let s = c.status().unwrap();
    assert_eq!(s["repair"]["done"], 0, "repair storm after restart: {s}");
    check_placement(&c, &files);
}

#[test]
fn t4_down_and_up_keeping_the_volumes() {
    let Some(c) = enabled("t4_down_and_up_keeping_the_volumes") else {
        return;
    };
    c.ready();
    let files: Vec<Stored> = (0..3)
        .map(|i| store(&c, "t4", 1 + i * 11 * MIB, 400 + i))
        .collect();
    c.compose(&["down"]);
    let t = Instant::now();
    c.compose(&["up", "-d"]);
    c.wait_all_alive(Duration::from_secs(90));
    println!("FIGURE t4 cluster back {} after up", secs(t.elapsed()));
    check_all(&c, &files);
    c.wait_redundant(Duration::from_secs(60));
    check_placement(&c, &files);
}

#[test]
fn t5_datanode_disconnected_past_dead_timeout_then_reconnected() {
    let Some(c) = enabled("t5_datanode_disconnected_past_dead_timeout_then_reconnected") else {
        return;
    };
    c.ready();
    let files: Vec<Stored> = (0..3)
        .map(|i| store(&c, "t5", 4 * MIB + i * 13 * MIB, 500 + i))
        .collect();
    c.wait_redundant(Duration::from_secs(60));
    let victim = "dn2";
    let id = c.container(victim);
    ok(Command::new("docker").args(["network", "disconnect", &c.network, &id]));
    let cut = Instant::now();
    // The network is restored whatever happens below.
    struct Reconnect<'a>(&'a Cluster, String, bool);
    impl Drop for Reconnect<'_> {
        fn drop(&mut self) {
            if !self.2 {
                let _ = Command::new("docker")
                    .args([
                        "network",
                        "connect",
                        "--alias",
                        "dn2",
                        &self.0.network,
                        &self.1,
                    ])
                    .output();
            }
        }
    }
    let mut guard = Reconnect(&c, id.clone(), false);
    let dead = wait_for(
        "the cut-off node to be dead",
        Duration::from_secs(60),
        || (c.node_state(victim)? == "dead").then(|| cut.elapsed()),
    );
    let repaired = wait_for(
        "repair while the node is away",
        Duration::from_secs(180),
        || {
            let s = c.status()?;
            (s["under_replicated"] == 0 && s["unrecoverable"] == 0).then(|| cut.elapsed())
        },
    );
    println!(
        "FIGURE t5 cut-off node dead after {}, full redundancy after {}",
        secs(dead),
        secs(repaired)
    );
    check_all(&c, &files);
    ok(Command::new("docker").args(["network", "connect", "--alias", victim, &c.network, &id]));
    guard.2 = true;
    c.wait_all_alive(Duration::from_secs(60));
    c.wait_redundant(Duration::from_secs(120));
    check_placement(&c, &files);
    check_all(&c, &files);
}

#[test]
fn t6_rolling_restart_under_load_from_two_clients() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};
    let Some(c) = enabled("t6_rolling_restart_under_load_from_two_clients") else {
        return;
    };
    let c = Arc::new(c);
    c.ready();
    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<Stored>>> = Arc::default();
    let failed_reads: Arc<Mutex<Vec<String>>> = Arc::default();
    let failed_writes: Arc<Mutex<Vec<String>>> = Arc::default();
    let clients: Vec<_> = (0..2u64)
        .map(|k| {
            let (c, stop, acked) = (c.clone(), stop.clone(), acked.clone());
            let (failed_reads, failed_writes) = (failed_reads.clone(), failed_writes.clone());
            std::thread::spawn(move || {
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let size = 1 + (i * 7919 + k * 104_729) % (12 * MIB);
                    let name = format!("t6-{k}-{i}.bin");
                    let (sha, chunks) = write_random(&c.local(&name), size, 6000 + k * 1000 + i);
                    let remote = format!("/t6/c{k}/{i}.bin");
                    let out = c.dfsd(&["put", "-q", &format!("/work/{name}"), &remote]);
                    let _ = std::fs::remove_file(c.local(&name));
                    if out.status.success() {
                        acked.lock().unwrap().push(Stored {
                            remote,
                            sha,
                            chunks,
                        });
                    } else {
                        failed_writes.lock().unwrap().push(format!(
                            "{remote}: {}",
                            String::from_utf8_lossy(&out.stderr)
                        ));
                    }
                    // Read back one acknowledged file (this client's latest or an older one).
                    let pick = {
                        let a = acked.lock().unwrap();
                        (!a.is_empty()).then(|| {
                            let f = &a[(i as usize * 31 + k as usize) % a.len()];
                            (f.remote.clone(), f.sha.clone())
                        })
                    };
                    if let Some((remote, sha)) = pick {
                        match c.get_sha(&remote) {
                            Ok(got) if got == sha => {}
                            Ok(_) => failed_reads
                                .lock()
                                .unwrap()
                                .push(format!("{remote}: wrong bytes")),
                            Err(e) => failed_reads.lock().unwrap().push(format!("{remote}: {e}")),
                        }
                    }
                    i += 1;
                }
            })
        })
        .collect();
    let t = Instant::now();
    for i in 1..=DATANODES {
        let dn = format!("dn{i}");
        c.compose(&["restart", "-t", "10", &dn]);
        c.wait_all_alive(Duration::from_secs(60));
    }
    let rolled = t.elapsed();
    stop.store(true, Ordering::Relaxed);
    for h in clients {
        h.join().unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let failed_reads = failed_reads.lock().unwrap().clone();
    let failed_writes = failed_writes.lock().unwrap().clone();
    println!(
        "FIGURE t6 rolling restart of {DATANODES} datanodes took {}; {} writes acknowledged, {} refused, {} reads failed",
        secs(rolled),
        acked.len(),
        failed_writes.len(),
        failed_reads.len()
    );
    for w in &failed_writes {
        println!("t6: refused write (not acknowledged, so allowed): {w}");
    }
    assert!(failed_reads.is_empty(), "reads failed: {failed_reads:#?}");
    assert!(!acked.is_empty(), "no write was acknowledged");
    check_all(&c, &acked);
    c.wait_redundant(Duration::from_secs(120));
    check_placement(&c, &acked);
}

/// A `dfsd` on the host, outside the Docker network, through the published ports only:
/// the coordinator at 127.0.0.1:DFSD_PORT and each datanode at the public address it
/// registered (127.0.0.1:DFSD_DNn_PORT). The host cannot resolve `dn1`..`dn6`, so a put
/// and a get that succeed went through the public addresses.
#[test]
fn t7_a_client_on_the_host_puts_and_gets_through_published_ports() {
    let Some(c) = enabled("t7_a_client_on_the_host_puts_and_gets_through_published_ports") else {
        return;
    };
    c.ready();
    let nodes = c.nodes().expect("dfsd nodes --json");
    let public: Vec<&str> = nodes
        .iter()
        .map(|n| n["public_addr"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(public.len(), DATANODES);
    assert!(
        public.iter().all(|p| p.starts_with("http://127.0.0.1:")),
        "every datanode registers its published loopback port: {public:?}"
    );

    let port = std::env::var("DFSD_PORT").expect("DFSD_PORT (docker/integration.sh)");
    let host = |args: &[&str]| -> Output {
        // Only what a user on the host would set: the suite's own DFSD_* variables
        // (ports, compose project) are not client settings.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_dfsd"));
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("DFSD_")) {
            cmd.env_remove(k);
        }
        cmd.env("DFSD_COORDINATOR", format!("127.0.0.1:{port}"))
            .env("DFSD_TLS__CA", c.work.join("certs/ca.pem"))
            .env("DFSD_ACCESS_KEY", &c.key_id)
            .env("DFSD_SECRET_KEY", &c.secret)
            .args(args);
        run(&mut cmd)
    };
    let src = c.local("t7-src");
    let (sha, chunks) = write_random(&src, 2 * CHUNK + 4321, 800);
    let put = host(&["put", "-q", &src.display().to_string(), "/t7/from-host"]);
    assert!(
        put.status.success(),
        "put from the host: {}",
        String::from_utf8_lossy(&put.stderr)
    );
    let dst = c.local("t7-dst");
    let get = host(&["get", "/t7/from-host", &dst.display().to_string()]);
    assert!(
        get.status.success(),
        "get from the host: {}",
        String::from_utf8_lossy(&get.stderr)
    );
    assert_eq!(
        sha_file(&dst),
        sha,
        "the host reads back the bytes it wrote"
    );
    // Clients inside the network read the same file by the datanodes' names.
    assert_eq!(c.get_sha("/t7/from-host").unwrap(), sha);
    c.wait_redundant(Duration::from_secs(60));
    for id in &chunks {
        assert_eq!(c.holders(id).len(), REPLICATION, "chunk {id}");
    }
    let _ = std::fs::remove_file(&src);
    let _ = std::fs::remove_file(&dst);
}
