//! Issue 12, the trust edges: the join secret of plaintext clusters with access keys,
//! private files and secrets kept out of the database, `dfsd config` redaction,
//! `dfsd dev --listen`, and certificate revocation. Real processes throughout.

mod common;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{random_bytes, stderr, wait_until, TestCluster};
use dfsd::client::Client;
use dfsd::config::ClientConfig;
use dfsd::proto::pb;
use dfsd::security::join::{JoinSecret, JOIN_HEADER};
use dfsd::security::seal::SealKey;
use dfsd::security::{certs, Role};
use tonic::Code;

/// A dfsd server process, killed on drop.
struct Server {
    child: Child,
    addr: String,
    log: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts `dfsd` with the arguments `mk(listen address)` and `env` on a free port, its
/// output appended to `<dir>/<name>.log`.
fn start(
    dir: &Path,
    name: &str,
    env: &[(&str, String)],
    mk: impl Fn(&str) -> Vec<String>,
) -> Server {
    let log = dir.join(format!("{name}.log"));
    for _ in 0..5 {
        let addr = format!("127.0.0.1:{}", common::free_port());
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        let mut cmd = Command::new(common::BIN);
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

/// A plaintext cluster with access keys on (the setting of finding 2).
struct Plain {
    dir: tempfile::TempDir,
    coord: Server,
    admin: (String, String),
}

impl Plain {
    fn new() -> Plain {
        let dir = tempfile::tempdir().unwrap();
        let admin = (
            "DKPLAINADMIN00000000".to_string(),
            format!("plain-admin-secret-{}", rand::random::<u64>()),
        );
        let coord = Self::coordinator(dir.path(), &admin);
        Plain { dir, coord, admin }
    }

    fn coordinator(dir: &Path, admin: &(String, String)) -> Server {
        let data = dir.join("coordinator");
        let env = [
            ("DFSD_TLS__PLAINTEXT", "true".to_string()),
            ("DFSD_COORDINATOR__ADMIN_KEY_ID", admin.0.clone()),
            ("DFSD_COORDINATOR__ADMIN_SECRET", admin.1.clone()),
            ("DFSD_COORDINATOR__HEARTBEAT_INTERVAL", "500ms".into()),
            ("DFSD_COORDINATOR__SUSPECT_AFTER", "2s".into()),
            ("DFSD_COORDINATOR__DEAD_AFTER", "5s".into()),
            ("DFSD_COORDINATOR__REPLICATION", "2".into()),
        ];
        start(dir, "coordinator", &env, |addr| {
            vec![
                "coordinator".into(),
                "--listen".into(),
                addr.into(),
                "--data-dir".into(),
                data.display().to_string(),
            ]
        })
    }

    /// A datanode joining `join` (the coordinator, or a tap in front of it).
    fn node(&self, name: &str, join: &str, secret: Option<&str>) -> Server {
        let data = self.dir.path().join(name);
        let mut env = vec![
            ("DFSD_TLS__PLAINTEXT", "true".to_string()),
            ("DFSD_DATANODE__RESERVE", "0".into()),
        ];
        if let Some(s) = secret {
            env.push(("DFSD_DATANODE__JOIN_SECRET", s.to_string()));
        }
        start(self.dir.path(), name, &env, |addr| {
            vec![
                "datanode".into(),
                "--join".into(),
                join.into(),
                "--listen".into(),
                addr.into(),
                "--data-dir".into(),
                data.display().to_string(),
            ]
        })
    }

    fn client(&self) -> Client {
        Client::new(&ClientConfig {
            coordinator: self.coord.addr.clone(),
            access_key: self.admin.0.clone(),
            secret_key: self.admin.1.clone(),
            ..ClientConfig::default()
        })
        .unwrap()
    }

    fn cli(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = Command::new(common::BIN);
        cmd.env_remove("DFSD_CONFIG")
            .env_remove("DFSD_TLS__CA")
            .env("DFSD_ACCESS_KEY", &self.admin.0)
            .env("DFSD_SECRET_KEY", &self.admin.1)
            .args(["--coordinator", &self.coord.addr])
            .args(args);
        run(cmd, stdin)
    }

    fn secrets(&self) -> dfsd::coordinator::secrets::SecretsFile {
        let p = self.dir.path().join("coordinator").join("secrets.toml");
        dfsd::coordinator::secrets::SecretsFile::read(&p)
            .unwrap()
            .unwrap()
    }

    fn raw_cluster(&self) -> pb::cluster_client::ClusterClient<tonic::transport::Channel> {
        let ch = dfsd::net::channel(&self.coord.addr, Duration::from_secs(3), None).unwrap();
        pb::cluster_client::ClusterClient::new(ch)
    }
}

fn run(mut cmd: Command, stdin: Option<&[u8]>) -> Output {
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
async fn eventually<F: std::future::Future<Output = bool>>(
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

/// A TCP relay in front of `target` that keeps a copy of every byte in each direction
/// of each connection: what a passive sniffer of a plaintext network sees.
fn tap(target: &str) -> (String, Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_string();
    let seen: Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>> = Arc::default();
    let all = seen.clone();
    std::thread::spawn(move || {
        for conn in l.incoming().flatten() {
            let up = TcpStream::connect(&target).unwrap();
            for (mut from, mut to) in [
                (conn.try_clone().unwrap(), up.try_clone().unwrap()),
                (up, conn),
            ] {
                let buf = Arc::new(Mutex::new(Vec::new()));
                all.lock().unwrap().push(buf.clone());
                std::thread::spawn(move || {
                    let mut chunk = [0u8; 16384];
                    while let Ok(n) = from.read(&mut chunk) {
                        if n == 0 || to.write_all(&chunk[..n]).is_err() {
                            break;
                        }
                        buf.lock().unwrap().extend_from_slice(&chunk[..n]);
                    }
                    let _ = to.shutdown(std::net::Shutdown::Write);
                });
            }
        }
    });
    (addr, seen)
}

fn contains(streams: &Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>, needle: &[u8]) -> bool {
    streams
        .lock()
        .unwrap()
        .iter()
        .any(|s| s.lock().unwrap().windows(needle.len()).any(|w| w == needle))
}

fn with_proof<T>(msg: T, proof: &str) -> tonic::Request<T> {
    let mut r = tonic::Request::new(msg);
    r.metadata_mut().insert(JOIN_HEADER, proof.parse().unwrap());
    r
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_cluster_with_keys_admits_only_holders_of_the_join_secret() {
    let p = Plain::new();
    // Generated at the first start, printed once, kept in the secrets file.
    wait_until(
        "the join secret to be printed",
        Duration::from_secs(20),
        || p.coord.log().contains("DFSD_DATANODE__JOIN_SECRET="),
    );
    let log = p.coord.log();
    let printed = log
        .split("DFSD_DATANODE__JOIN_SECRET=")
        .nth(1)
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .trim()
        .to_string();
    let secrets = p.secrets();
    assert_eq!(secrets.join_secret, printed);
    let token_key = secrets.token_key().unwrap();

    // A stranger gets Unauthenticated on every Cluster call, and no key material.
    let mut raw = p.raw_cluster();
    let register = || pb::RegisterRequest {
        node_id: "dn-probe".into(),
        addr: "127.0.0.1:1".into(),
        stats: None,
    };
    let e = raw.register(register()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("DFSD_DATANODE__JOIN_SECRET"),
        "{}",
        e.message()
    );
    let hb = || pb::HeartbeatRequest {
        node_id: "dn-probe".into(),
        ..Default::default()
    };
    let codes = [
        raw.heartbeat(hb()).await.unwrap_err().code(),
        raw.report_replicas(pb::ReportReplicasRequest::default())
            .await
            .unwrap_err()
            .code(),
        raw.report_corruption(pb::ReportCorruptionRequest::default())
            .await
            .unwrap_err()
            .code(),
        raw.report_inventory(tokio_stream::iter(vec![pb::InventoryBatch::default()]))
            .await
            .unwrap_err()
            .code(),
    ];
    assert_eq!(codes, [Code::Unauthenticated; 4]);
    // Another secret, a replayed proof, a stale one: refused.
    let wrong = JoinSecret::new("not-the-cluster-join-secret").proof_at(now_secs());
    let e = raw
        .register(with_proof(register(), &wrong))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("wrong join secret"), "{}", e.message());
    let right = JoinSecret::new(&printed);
    let proof = right.proof_at(now_secs());
    let r = raw
        .register(with_proof(register(), &proof))
        .await
        .unwrap()
        .into_inner();
    // The token key comes sealed for that node only, never in clear.
    assert!(r.token_key.is_empty());
    assert!(!r
        .token_key_sealed
        .windows(32)
        .any(|w| w == token_key.as_bytes()));
    let opened = right
        .open_token_key("dn-probe", &r.token_key_sealed)
        .unwrap();
    assert_eq!(opened, token_key.as_bytes());
    assert!(right
        .open_token_key("dn-other", &r.token_key_sealed)
        .is_err());
    let e = raw.heartbeat(with_proof(hb(), &proof)).await.unwrap_err();
    assert!(
        e.code() == Code::Unauthenticated && e.message().contains("replayed"),
        "{e:?}"
    );
    let stale = right.proof_at(now_secs() - 3600);
    let e = raw.heartbeat(with_proof(hb(), &stale)).await.unwrap_err();
    assert!(
        e.code() == Code::Unauthenticated && e.message().contains("clocks"),
        "{e:?}"
    );

    // Datanodes with the secret join (one through a sniffer), and a put/get round trips.
    let (tap_addr, sniffed) = tap(&p.coord.addr);
    let _n0 = p.node("node-0", &tap_addr, Some(&printed));
    let _n1 = p.node("node-1", &p.coord.addr, Some(&printed));
    // Without the secret, or with another one: never admitted, told why.
    let lost = p.node("node-nosecret", &p.coord.addr, None);
    let liar = p.node(
        "node-wrong",
        &p.coord.addr,
        Some("a-join-secret-of-another-cluster"),
    );
    let client = p.client();
    eventually("2 alive datanodes", Duration::from_secs(30), || async {
        client.nodes().await.is_ok_and(|n| {
            n.iter()
                .filter(|n| n.state == pb::NodeState::Alive as i32)
                .count()
                == 2
        })
    })
    .await;
    let data = random_bytes(3 << 20, 12);
    let out = p.cli(
        &["put", "--chunk-size", "1MiB", "-", "/plain/file"],
        Some(&data),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let out = p.cli(&["get", "/plain/file", "-"], None);
    assert!(
        out.status.success() && out.stdout == data,
        "{}",
        stderr(&out)
    );
    wait_until("the refusals in the logs", Duration::from_secs(20), || {
        lost.log().contains("DFSD_DATANODE__JOIN_SECRET")
            && liar.log().contains("wrong join secret")
    });
    let listed: Vec<String> = client
        .nodes()
        .await
        .unwrap()
        .into_iter()
        .map(|n| n.node_id)
        .collect();
    for n in ["node-nosecret", "node-wrong"] {
        let id = std::fs::read_to_string(p.dir.path().join(n).join("node_id")).unwrap();
        assert!(!listed.contains(&id.trim().to_string()), "{n} joined");
    }

    // The sniffer saw the node register (its id went by) but neither secret.
    let node_id = std::fs::read_to_string(p.dir.path().join("node-0").join("node_id")).unwrap();
    assert!(
        contains(&sniffed, node_id.trim().as_bytes()),
        "the tap saw nothing"
    );
    assert!(
        !contains(&sniffed, token_key.as_bytes()),
        "the token key crossed the wire"
    );
    assert!(!contains(
        &sniffed,
        hex::encode(token_key.as_bytes()).as_bytes()
    ));
    assert!(
        !contains(&sniffed, printed.as_bytes()),
        "the join secret crossed the wire"
    );

    // Printed once: a restart finds it in the secrets file.
    let admin = p.admin.clone();
    drop(p.coord);
    let again = Plain::coordinator(p.dir.path(), &admin);
    wait_until("the restarted coordinator", Duration::from_secs(20), || {
        again.log().matches("coordinator listening").count() == 2
    });
    assert_eq!(
        again.log().matches("DFSD_DATANODE__JOIN_SECRET=").count(),
        1
    );
}

/// Every directory under `root` (itself included) is 0700 and every file 0600.
fn assert_private(root: &Path) -> usize {
    let mut stack = vec![root.to_path_buf()];
    let mut n = 0;
    while let Some(p) = stack.pop() {
        let meta = std::fs::metadata(&p).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} is {mode:o}", p.display());
        n += 1;
        if meta.is_dir() {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
    n
}

/// Makes every directory under `root` 0755 and every file 0644 (what older versions did).
fn make_open(root: &Path) {
    let mut stack = vec![root.to_path_buf()];
    while let Some(p) = stack.pop() {
        let dir = p.is_dir();
        let mode = if dir { 0o755 } else { 0o644 };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        if dir {
            stack.extend(std::fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
        }
    }
}

/// The bytes of the database and its WAL, as a copy of them would hold.
fn db_bytes(c: &TestCluster) -> Vec<u8> {
    let dir = c.coordinator_dir();
    let mut b = std::fs::read(dir.join("meta.db")).unwrap();
    b.extend(std::fs::read(dir.join("meta.db-wal")).unwrap_or_default());
    b
}

fn holds(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// The S3 credential of `key` as a gateway gets it (an admin key stands in without TLS).
async fn s3_secret(c: &TestCluster, key: &str) -> String {
    let client = match &c.secure {
        Some(s) => Client::connect(
            &ClientConfig {
                access_key: String::new(),
                secret_key: String::new(),
                ..c.client_config()
            },
            Some(&s.tls_as("gateway")),
        )
        .unwrap(),
        None => c.client(),
    };
    client.s3_credential(key).await.unwrap().secret
}

#[tokio::test(flavor = "multi_thread")]
async fn files_are_private_and_a_copy_of_the_database_reveals_no_secret() {
    let c = TestCluster::start(2);
    let data = random_bytes(3 << 20, 7);
    let out = c.cli_stdin(
        &["put", "--chunk-size", "1MiB", "-", "/private"],
        Some(&data),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let key = c.create_key("s3", "readwrite", "/");
    let n = assert_private(&c.coordinator_dir());
    assert!(n >= 3, "meta.db and secrets.toml at least");
    for i in 0..2 {
        assert!(assert_private(&c.node_dir(i)) > 5);
    }

    // Another local user cannot copy the database or read a chunk, though it can read a
    // file that is readable (the check can fail).
    if unsafe { libc::geteuid() } != 0 {
        println!("not root: skipping the copy as user nobody");
    } else {
        std::fs::set_permissions(c.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        let probe = c.dir.path().join("probe");
        std::fs::write(&probe, b"readable").unwrap();
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o644)).unwrap();
        let dest = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dest.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let cp = |src: &Path| {
            let mut cmd = Command::new("cp");
            cmd.arg(src).arg(dest.path()).uid(65534).gid(65534);
            run(cmd, None)
        };
        assert!(
            cp(&probe).status.success(),
            "nobody cannot read a world-readable file?"
        );
        let chunk = c.chunk_files(0).into_iter().next().unwrap();
        for f in [
            c.coordinator_dir().join("meta.db"),
            c.coordinator_dir().join("secrets.toml"),
            chunk,
            c.node_dir(0).join("node_id"),
        ] {
            let out = cp(&f);
            assert!(!out.status.success(), "nobody copied {}", f.display());
            assert!(
                stderr(&out).contains("Permission denied"),
                "{}",
                stderr(&out)
            );
        }
    }

    // A root-made copy of the database holds none of the keys; the sealed S3 secrets in it
    // open with the key from the secrets file, and with no 32 bytes of the copy itself.
    let secrets = c.secrets();
    let token = secrets.token_key().unwrap();
    let seal = secrets.s3_seal_key().unwrap();
    let bytes = db_bytes(&c);
    for k in [token.as_bytes(), &seal[..]] {
        assert!(!holds(&bytes, k) && !holds(&bytes, hex::encode(k).as_bytes()));
    }
    let copy = tempfile::tempdir().unwrap();
    std::fs::write(
        copy.path().join("meta.db"),
        std::fs::read(c.coordinator_dir().join("meta.db")).unwrap(),
    )
    .unwrap();
    if let Ok(wal) = std::fs::read(c.coordinator_dir().join("meta.db-wal")) {
        std::fs::write(copy.path().join("meta.db-wal"), wal).unwrap();
    }
    let db = rusqlite::Connection::open(copy.path().join("meta.db")).unwrap();
    let sealed: Vec<u8> = db
        .query_row(
            "SELECT s3_secret_sealed FROM access_keys WHERE id = ?1",
            [&key.0],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        SealKey::from_bytes(&seal)
            .unwrap()
            .open(&key.0, &sealed)
            .unwrap(),
        key.1
    );
    let tried = bytes
        .windows(32)
        .filter(|w| {
            SealKey::from_bytes(w)
                .unwrap()
                .open(&key.0, &sealed)
                .is_ok()
        })
        .count();
    assert_eq!(
        tried, 0,
        "a key in the database copy opens the sealed secret"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_open_layout_is_made_private_and_old_secrets_leave_the_database() {
    let mut c = TestCluster::start(1);
    let data = random_bytes(2 << 20, 9);
    let out = c.cli_stdin(&["put", "--chunk-size", "1MiB", "-", "/kept"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let key = c.create_key("s3", "readwrite", "/");
    let before = c.secrets();
    c.kill_node(0);
    c.kill_coordinator();

    // What an older version left: everything world-readable, the keys in the database.
    make_open(&c.coordinator_dir());
    make_open(&c.node_dir(0));
    {
        let db = rusqlite::Connection::open(c.coordinator_dir().join("meta.db")).unwrap();
        for (name, v) in [
            ("token_key", before.token_key().unwrap().as_bytes().to_vec()),
            ("s3_seal_key", before.s3_seal_key().unwrap()),
        ] {
            db.execute(
                "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2)",
                rusqlite::params![name, v],
            )
            .unwrap();
        }
    }
    std::fs::remove_file(c.coordinator_dir().join("secrets.toml")).unwrap();
    assert!(
        holds(&db_bytes(&c), before.token_key().unwrap().as_bytes()),
        "the setup did not store the key"
    );

    c.start_coordinator();
    c.start_node(0);
    c.wait_alive(1);
    c.wait_serving();
    // Corrected, with one warning per process naming what it fixed.
    assert_private(&c.coordinator_dir());
    assert_private(&c.node_dir(0));
    let (coord_log, node_log) = (c.log("coordinator"), c.log("node-0"));
    let warning = |log: &str| {
        log.lines()
            .filter(|l| l.contains("made files private"))
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let w = warning(&coord_log);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("meta.db (was 644)") && w[0].contains("coordinator (was 755)"),
        "{}",
        w[0]
    );
    let w = warning(&node_log);
    assert_eq!(w.len(), 1, "{w:?}");
    assert!(
        w[0].contains("node_id (was 644)") && w[0].contains("chunk files"),
        "{}",
        w[0]
    );

    // The same keys, now in the file and nowhere in the database.
    let after = c.secrets();
    assert_eq!(
        (&after.token_key, &after.s3_seal_key),
        (&before.token_key, &before.s3_seal_key)
    );
    assert!(coord_log.contains("moved the cluster secrets out of the database"));
    let bytes = db_bytes(&c);
    assert!(!holds(&bytes, before.token_key().unwrap().as_bytes()));
    assert!(!holds(&bytes, &before.s3_seal_key().unwrap()));
    // And they still work: old chunk tokens' key, old sealed S3 secrets.
    assert_eq!(c.cli(&["get", "/kept", "-"]).stdout, data);
    assert_eq!(s3_secret(&c, &key.0).await, key.1);
}

#[test]
fn dfsd_config_redacts_every_secret() {
    let secrets = [
        ("DFSD_SECRET_KEY", "client-secret-value-0123456789"),
        (
            "DFSD_COORDINATOR__ADMIN_SECRET",
            "admin-secret-value-0123456789",
        ),
        (
            "DFSD_COORDINATOR__JOIN_SECRET",
            "coordinator-join-secret-0123456789",
        ),
        (
            "DFSD_DATANODE__JOIN_SECRET",
            "datanode-join-secret-0123456789",
        ),
        (
            "DFSD_GATEWAY__SECRET_KEY",
            "gateway-secret-value-0123456789",
        ),
    ];
    let mut cmd = Command::new(common::BIN);
    cmd.env_remove("DFSD_CONFIG")
        .env("DFSD_ACCESS_KEY", "DKCLIENTKEY000000000")
        .env("DFSD_COORDINATOR__ADMIN_KEY_ID", "DKADMINKEY0000000000")
        .env("DFSD_GATEWAY__ACCESS_KEY", "DKGATEWAYKEY00000000")
        .envs(secrets)
        .arg("config");
    let out = run(cmd, None);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8(out.stdout).unwrap();
    for (var, value) in secrets {
        assert!(!text.contains(value), "{var} printed:\n{text}");
    }
    assert_eq!(
        text.matches("\"<redacted>\"").count(),
        secrets.len(),
        "{text}"
    );
    for id in [
        "DKCLIENTKEY000000000",
        "DKADMINKEY0000000000",
        "DKGATEWAYKEY00000000",
    ] {
        assert!(text.contains(id), "{id} missing:\n{text}");
    }
}

fn dev(dir: &Path, args: &[&str], key: Option<(&str, &str)>) -> Output {
    let mut cmd = Command::new(common::BIN);
    for k in [
        "DFSD_CONFIG",
        "DFSD_ACCESS_KEY",
        "DFSD_SECRET_KEY",
        "DFSD_COORDINATOR",
    ] {
        cmd.env_remove(k);
    }
    if let Some((id, secret)) = key {
        cmd.env("DFSD_ACCESS_KEY", id)
            .env("DFSD_SECRET_KEY", secret);
    }
    cmd.args(["dev", "--nodes", "1", "--demo-only", "--data-dir"])
        .arg(dir)
        .args(args);
    run(cmd, None)
}

#[test]
fn dfsd_dev_serves_beyond_loopback_only_with_authentication() {
    let tmp = tempfile::tempdir().unwrap();
    let open = tmp.path().join("open");
    let out = dev(&open, &["--listen", "0.0.0.0:0"], None);
    let e = stderr(&out);
    assert!(
        !out.status.success(),
        "a public dev cluster without keys started"
    );
    assert!(e.contains("loopback") && e.contains("--auth"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    assert!(!open.join("coordinator").exists());
    let out = dev(&open, &["--listen", "127.0.0.1:0"], None);
    assert!(out.status.success(), "{}", stderr(&out));

    // With --auth: keys on, the admin key printed once, the self-check passes.
    let keyed = tmp.path().join("keyed");
    let out = dev(&keyed, &["--auth", "--listen", "0.0.0.0:0"], None);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{}{}", text, stderr(&out));
    assert!(text.contains("self-check: stored /hello.txt"), "{text}");
    let field = |k: &str| {
        text.split(k)
            .nth(1)
            .unwrap()
            .lines()
            .next()
            .unwrap()
            .trim()
            .to_string()
    };
    let (id, secret) = (field("DFSD_ACCESS_KEY="), field("DFSD_SECRET_KEY="));
    // A second start must be given the key; with it, it works.
    let out = dev(&keyed, &["--auth", "--listen", "0.0.0.0:0"], None);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("DFSD_ACCESS_KEY"), "{}", stderr(&out));
    let out = dev(
        &keyed,
        &["--auth", "--listen", "0.0.0.0:0"],
        Some((&id, &secret)),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!String::from_utf8_lossy(&out.stdout).contains("DFSD_SECRET_KEY="));
}

fn secure(name: &str) -> bool {
    if common::secure_mode() {
        true
    } else {
        println!("{name}: skipped in plaintext mode (no certificates to revoke)");
        false
    }
}

/// ReadChunk of an absent chunk with a valid token, presenting the certificate `cert`.
async fn read_as(c: &TestCluster, cert: &str) -> Code {
    let addr = c.nodes[0].as_ref().unwrap().addr.clone();
    let id = dfsd::chunk::ChunkId::of(b"absent");
    let token = c.token_key().sign(
        dfsd::security::token::Op::Read,
        &[id],
        Duration::from_secs(60),
    );
    let mut dn =
        pb::datanode_client::DatanodeClient::new(c.raw_channel(&addr, Role::Node, Some(cert)));
    match dn
        .read_chunk(pb::ReadChunkRequest {
            chunk_id: id.to_hex(),
            token,
        })
        .await
    {
        Ok(r) => match r.into_inner().message().await {
            Ok(_) => Code::Ok,
            Err(e) => e.code(),
        },
        Err(e) => e.code(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn revoked_certificates_are_refused_by_the_coordinator_and_the_datanodes() {
    if !secure("revocation") {
        return;
    }
    let c = TestCluster::start(1);
    let s = c.secure.clone().unwrap();
    let sans = ["localhost".to_string()];
    let gw2 = certs::issue(&s.certs, Role::Gateway, "gw2", &sans, 1).unwrap();
    certs::issue(&s.certs, Role::Client, "cl2", &[], 1).unwrap();
    let node2 = certs::issue(&s.certs, Role::Node, "node2", &[], 1).unwrap();
    let gateway = |cert: &str| {
        Client::connect(
            &ClientConfig {
                access_key: String::new(),
                secret_key: String::new(),
                ..c.client_config()
            },
            Some(&s.tls_as(cert)),
        )
        .unwrap()
    };
    gateway("gw2").s3_credential(&s.key_id).await.unwrap();

    // A second node with its own certificate joins.
    let data = c.dir.path().join("node2");
    let env = [
        ("DFSD_TLS__CA", s.ca()),
        ("DFSD_TLS__CERT", node2.cert.display().to_string()),
        ("DFSD_TLS__KEY", node2.key.display().to_string()),
        ("DFSD_DATANODE__RESERVE", "0".into()),
    ];
    let join = c.coordinator_addr.clone();
    let mk = |addr: &str| {
        vec![
            "datanode".into(),
            "--join".into(),
            join.clone(),
            "--listen".into(),
            addr.into(),
            "--data-dir".into(),
            data.display().to_string(),
        ]
    };
    let n2 = start(c.dir.path(), "node2", &env, &mk);
    c.wait_alive(2);

    // Only an admin may revoke or list.
    let rw = c.create_key("rw", "readwrite", "/");
    let as_rw = |args: &[&str]| {
        let mut cmd = c.cli_command();
        cmd.env("DFSD_ACCESS_KEY", &rw.0)
            .env("DFSD_SECRET_KEY", &rw.1)
            .args(args);
        run(cmd, None)
    };
    let gw2_pem = gw2.cert.display().to_string();
    for args in [
        vec!["cert", "revoke", gw2_pem.as_str()],
        vec!["cert", "revoked"],
    ] {
        let out = as_rw(&args);
        assert!(
            !out.status.success() && stderr(&out).contains("permission denied"),
            "{}",
            stderr(&out)
        );
    }
    assert_eq!(c.cli(&["cert", "revoked", "--json"]).stdout, b"[]\n");

    let out = c.cli(&["cert", "revoke", &gw2_pem]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), gw2.fingerprint);
    let e = gateway("gw2").s3_credential(&s.key_id).await.unwrap_err();
    assert_eq!(e.code(), Some(Code::PermissionDenied), "{e}");
    assert!(e.to_string().contains("revoked"), "{e}");
    assert_eq!(
        gateway("gateway")
            .s3_credential(&s.key_id)
            .await
            .unwrap()
            .secret,
        s.secret
    );
    let out = c.cli(&["cert", "revoke", &gw2_pem]);
    assert!(
        out.status.success() && stderr(&out).contains("already revoked"),
        "{}",
        stderr(&out)
    );

    // By fingerprint, as some tools print it; datanodes learn it within a heartbeat.
    let cl2 = std::fs::read(s.certs.join("cl2.pem")).unwrap();
    let der = <rustls_pki_types::CertificateDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(&cl2).unwrap().to_vec();
    let colons: Vec<String> = dfsd::security::revoke::fingerprint(&der)
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect();
    let out = c.cli(&[
        "cert",
        "revoke",
        "--fingerprint",
        &colons.join(":"),
        "--note",
        "laptop lost",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(read_as(&c, "client").await, Code::NotFound);
    eventually(
        "the datanode to refuse cl2",
        Duration::from_secs(20),
        || async { read_as(&c, "cl2").await == Code::PermissionDenied },
    )
    .await;
    assert_eq!(read_as(&c, "client").await, Code::NotFound);

    // A revoked node certificate can no longer heartbeat, nor register again.
    let out = c.cli(&["cert", "revoke", "--fingerprint", &node2.fingerprint]);
    assert!(out.status.success(), "{}", stderr(&out));
    wait_until("node2 to be refused", Duration::from_secs(20), || {
        n2.log().contains("has been revoked")
            && c.node_infos()
                .iter()
                .filter(|n| n.state == pb::NodeState::Alive as i32)
                .count()
                == 1
    });
    drop(n2);
    let n2 = start(c.dir.path(), "node2-again", &env, &mk);
    wait_until(
        "node2's registration to be refused",
        Duration::from_secs(20),
        || n2.log().contains("has been revoked"),
    );
    assert_eq!(
        c.node_infos()
            .iter()
            .filter(|n| n.state == pb::NodeState::Alive as i32)
            .count(),
        1
    );
    // The unrevoked node still serves: a put and a get.
    let bytes = random_bytes(1 << 20, 4);
    let out = c.cli_stdin(&["put", "--replication", "1", "-", "/after"], Some(&bytes));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.cli(&["get", "/after", "-"]).stdout, bytes);

    // Listed, recorded as events; the coordinator's own certificate cannot be revoked.
    let list: serde_json::Value =
        serde_json::from_slice(&c.cli(&["cert", "revoked", "--json"]).stdout).unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(
        (
            list[0]["fingerprint"].as_str(),
            list[0]["role"].as_str(),
            list[0]["note"].as_str()
        ),
        (
            Some(gw2.fingerprint.as_str()),
            Some("gateway"),
            Some("gw2.pem")
        )
    );
    assert_eq!(
        (list[1]["role"].as_str(), list[1]["note"].as_str()),
        (Some(""), Some("laptop lost"))
    );
    wait_until("three cert_revoked events", Duration::from_secs(20), || {
        let events = String::from_utf8(c.cli(&["events", "--json"]).stdout).unwrap();
        events.matches("cert_revoked").count() == 3 && events.contains(&gw2.fingerprint)
    });
    let own = s.certs.join("coordinator.pem").display().to_string();
    let out = c.cli(&["cert", "revoke", &own]);
    assert!(
        !out.status.success() && stderr(&out).contains("own"),
        "{}",
        stderr(&out)
    );
    assert_eq!(stderr(&out).trim_end().lines().count(), 1);
}
