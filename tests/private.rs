//! Issue 12, finding 3: private files (data directories 0700, files 0600, corrected at
//! start-up with one warning) and secrets kept out of the database (a copy of it, or an
//! unprivileged user, gets no secret); review findings 4 and 5: keys from an older
//! database are rotated, and a coordinator without its secrets file does not start.
//! Real processes.

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use dfsd::client::Client;
use dfsd::config::ClientConfig;
use dfsd::security::seal::SealKey;
use testkit::procs::run;
use testkit::{random_bytes, stderr, TestCluster};

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
async fn an_open_layout_is_made_private() {
    let mut c = TestCluster::start(1);
    let data = random_bytes(2 << 20, 9);
    let out = c.cli_stdin(&["put", "--chunk-size", "1MiB", "-", "/kept"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    c.kill_node(0);
    c.kill_coordinator();

    // What an older version left: everything world-readable.
    make_open(&c.coordinator_dir());
    make_open(&c.node_dir(0));
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
        w[0].contains("meta.db (was 644)")
            && w[0].contains("secrets.toml (was 644)")
            && w[0].contains("coordinator (was 755)"),
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
    assert_eq!(c.cli(&["get", "/kept", "-"]).stdout, data);
}

/// ReadChunk of `id` from `addr` with a read token signed by `key`.
async fn read_with(
    c: &TestCluster,
    addr: &str,
    key: &dfsd::security::token::TokenKey,
    id: dfsd::chunk::ChunkId,
) -> Result<Vec<u8>, tonic::Code> {
    let token = key.sign(
        dfsd::security::token::Op::Read,
        &[id],
        std::time::Duration::from_secs(60),
    );
    let ch = c.raw_channel(addr, dfsd::security::Role::Node, None);
    let mut stream = dfsd::proto::pb::datanode_client::DatanodeClient::new(ch)
        .read_chunk(dfsd::proto::pb::ReadChunkRequest {
            chunk_id: id.to_hex(),
            token,
        })
        .await
        .map_err(|e| e.code())?
        .into_inner();
    let mut out = Vec::new();
    while let Some(m) = stream.message().await.map_err(|e| e.code())? {
        out.extend_from_slice(&m.data);
    }
    Ok(out)
}

/// Review finding 4: the keys an older version kept in its world-readable database are
/// replaced, not moved, and datanodes that keep running take the new token key.
#[tokio::test(flavor = "multi_thread")]
async fn keys_from_an_old_database_are_replaced_and_running_datanodes_take_the_new_one() {
    let mut c = TestCluster::start(2);
    let data = random_bytes(2 << 20, 11);
    let out = c.cli_stdin(&["put", "--chunk-size", "1MiB", "-", "/kept"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let key = c.create_key("s3", "readwrite", "/");
    let old = c.secrets();
    let (old_token, old_seal) = (old.token_key().unwrap(), old.s3_seal_key().unwrap());
    let sealed_before = sealed_secret(&c, &key.0);
    c.kill_coordinator();

    // The layout of a version before issue 12: the keys in the database, no secrets
    // file, no fingerprints. Someone may have copied that database.
    {
        let db = rusqlite::Connection::open(c.coordinator_dir().join("meta.db")).unwrap();
        for (name, v) in [
            ("token_key", old_token.as_bytes().to_vec()),
            ("s3_seal_key", old_seal.clone()),
        ] {
            db.execute(
                "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2)",
                rusqlite::params![name, v],
            )
            .unwrap();
        }
        db.execute("DELETE FROM secret_fingerprints", []).unwrap();
    }
    std::fs::remove_file(c.coordinator_dir().join("secrets.toml")).unwrap();

    // Only the coordinator restarts; the datanodes keep running with the old key.
    c.start_coordinator();
    c.wait_alive(2);
    let new = c.secrets();
    let new_token = new.token_key().unwrap();
    assert_ne!(new_token.as_bytes(), old_token.as_bytes());
    assert_ne!(new.s3_seal_key().unwrap(), old_seal);
    assert_eq!(new.previous_s3_seal_key, None);
    let coord_log = c.log("coordinator");
    assert!(
        coord_log.contains("replaced the chunk-token and S3 seal keys"),
        "{coord_log}"
    );
    // Every datanode takes the new key (its heartbeat showed the old one): tokens signed
    // with it are served, and reads and writes work.
    c.wait_serving();
    for i in 0..2 {
        assert!(
            c.log(&format!("node-{i}"))
                .contains("coordinator asks this node to register again"),
            "node-{i} was not told"
        );
    }
    assert_eq!(c.cli(&["get", "/kept", "-"]).stdout, data);
    let fresh = random_bytes(1 << 20, 12);
    let out = c.cli_stdin(&["put", "-", "/fresh"], Some(&fresh));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(c.cli(&["get", "/fresh", "-"]).stdout, fresh);

    // A token signed with the old key is refused by every datanode.
    let chunk = c.chunk_files(0)[0].clone();
    let id: dfsd::chunk::ChunkId = chunk
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let stored = std::fs::read(&chunk).unwrap();
    for i in c.holders(&id.to_hex()) {
        let addr = c.nodes[i].as_ref().unwrap().addr.clone();
        assert_eq!(
            read_with(&c, &addr, &old_token, id).await,
            Err(tonic::Code::PermissionDenied),
            "node-{i} took the old key"
        );
        assert_eq!(
            read_with(&c, &addr, &new_token, id).await,
            Ok(stored.clone())
        );
    }

    // The S3 secret is the same, sealed anew: the old seal key does not open what the
    // database now holds, and no byte of the old keys or the old blob is left in it.
    assert_eq!(s3_secret(&c, &key.0).await, key.1);
    let sealed = sealed_secret(&c, &key.0);
    assert_ne!(sealed, sealed_before);
    assert!(SealKey::from_bytes(&old_seal)
        .unwrap()
        .open(&key.0, &sealed)
        .is_err());
    let bytes = db_bytes(&c);
    for gone in [old_token.as_bytes(), &old_seal[..], &sealed_before[..]] {
        assert!(!holds(&bytes, gone), "old bytes left in the database");
    }
}

/// The S3 secret of `key` as sealed in the coordinator's database.
fn sealed_secret(c: &TestCluster, key: &str) -> Vec<u8> {
    let db = rusqlite::Connection::open(c.coordinator_dir().join("meta.db")).unwrap();
    db.query_row(
        "SELECT s3_secret_sealed FROM access_keys WHERE id = ?1",
        [key],
        |r| r.get(0),
    )
    .unwrap()
}

/// Runs `cmd` expecting it to exit within `timeout`; a process still running then is
/// killed and the test fails with `what`.
fn run_to_exit(mut cmd: Command, timeout: std::time::Duration, what: &str) -> std::process::Output {
    use std::process::Stdio;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + timeout;
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!("{what}; log:\n{}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// Review finding 5: a coordinator whose secrets file is lost (a restore of `meta.db`
/// alone, a changed `coordinator.secrets_file`) does not make new keys, which would leave
/// every S3 secret unreadable: it refuses to start until the file is back.
#[tokio::test(flavor = "multi_thread")]
async fn a_lost_secrets_file_stops_the_coordinator_until_it_is_restored() {
    let mut c = TestCluster::start(1);
    let data = random_bytes(1 << 20, 13);
    let out = c.cli_stdin(&["put", "-", "/kept"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let key = c.create_key("s3", "readwrite", "/");
    c.kill_coordinator();
    let file = c.coordinator_dir().join("secrets.toml");
    let saved = c.dir.path().join("secrets.backup");
    std::fs::rename(&file, &saved).unwrap();

    let coordinator = |c: &TestCluster| {
        let args = [
            "coordinator",
            "--listen",
            "127.0.0.1:0",
            "--data-dir",
            &c.coordinator_dir().display().to_string(),
        ]
        .map(String::from);
        run_to_exit(
            c.server_command(&args),
            std::time::Duration::from_secs(30),
            "the coordinator started without its secrets file",
        )
    };
    let out = coordinator(&c);
    let e = stderr(&out);
    assert!(!out.status.success());
    let last = e.trim_end().lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("dfsd: ")
            && last.contains(&*file.to_string_lossy())
            && last.contains("secrets file is missing")
            && last.contains("restore"),
        "{e}"
    );
    assert!(!file.exists(), "a new secrets file was made");

    // Another cluster's file in its place: refused too, naming the key.
    let other = tempfile::tempdir().unwrap();
    let oc = dfsd::config::CoordinatorConfig {
        data_dir: other.path().to_path_buf(),
        ..Default::default()
    };
    dfsd::coordinator::secrets::prepare_data_dir(&oc).unwrap();
    let store = dfsd::meta::SqliteStore::open(&other.path().join("meta.db"), "normal").unwrap();
    dfsd::coordinator::secrets::load(&store, &oc, false)
        .await
        .unwrap();
    std::fs::copy(other.path().join("secrets.toml"), &file).unwrap();
    let out = coordinator(&c);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("is not the one the database"),
        "{}",
        stderr(&out)
    );

    // The right file back: it starts and serves the old S3 secrets and files.
    std::fs::rename(&saved, &file).unwrap();
    c.start_coordinator();
    c.wait_alive(1);
    c.wait_serving();
    assert_eq!(s3_secret(&c, &key.0).await, key.1);
    assert_eq!(c.cli(&["get", "/kept", "-"]).stdout, data);
}

/// Undoes `chattr +i` on drop, so the temporary directory can be removed.
struct Immutable(std::path::PathBuf);

impl Drop for Immutable {
    fn drop(&mut self) {
        let _ = Command::new("chattr").arg("-i").arg(&self.0).status();
    }
}

#[test]
fn a_readable_private_key_is_corrected_or_warned_about_never_fatal() {
    let tmp = tempfile::tempdir().unwrap();
    let certs = tmp.path().join("certs");
    dfsd::security::certs::init_ca(&certs, 1).unwrap();
    let w = dfsd::security::certs::issue(&certs, dfsd::security::Role::Coordinator, "c", &[], 1)
        .unwrap();
    let coordinator = |name: &str, key: &Path| {
        let env = [
            ("DFSD_TLS__CA", certs.join("ca.pem").display().to_string()),
            ("DFSD_TLS__CERT", w.cert.display().to_string()),
            ("DFSD_TLS__KEY", key.display().to_string()),
        ];
        let data = tmp.path().join(name);
        testkit::procs::start(tmp.path(), name, &env, |addr| {
            let d = data.display().to_string();
            vec![
                "coordinator".into(),
                "--listen".into(),
                addr.into(),
                "--data-dir".into(),
                d,
            ]
        })
    };
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;

    // Readable by others and changeable: made 0600, with the warning naming it.
    let open = certs.join("open.key");
    std::fs::copy(&w.key, &open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o644)).unwrap();
    let s = coordinator("fixed", &open);
    testkit::wait_until("the warning", std::time::Duration::from_secs(20), || {
        s.log().contains("made files private")
    });
    assert!(s.log().contains("open.key (was 644)"), "{}", s.log());
    assert_eq!(mode(&open), 0o600);

    // One that cannot be changed (as on a read-only mount): a warning, and it serves.
    let stuck = certs.join("stuck.key");
    std::fs::copy(&w.key, &stuck).unwrap();
    std::fs::set_permissions(&stuck, std::fs::Permissions::from_mode(0o644)).unwrap();
    let ok = Command::new("chattr").arg("+i").arg(&stuck).status();
    if !ok.is_ok_and(|s| s.success()) {
        println!("chattr +i is not available here: skipping the unchangeable key");
        return;
    }
    let _undo = Immutable(stuck.clone());
    let s = coordinator("stuck", &stuck);
    testkit::wait_until(
        "the warning and the start",
        std::time::Duration::from_secs(20),
        || {
            let log = s.log();
            log.contains("could not make files private") && log.contains("coordinator listening")
        },
    );
    assert!(s.log().contains("stuck.key"), "{}", s.log());
    assert_eq!(mode(&stuck), 0o644);
}
