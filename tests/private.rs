//! Issue 12, finding 3: private files (data directories 0700, files 0600, corrected at
//! start-up with one warning) and secrets kept out of the database (a copy of it, or an
//! unprivileged user, gets no secret). Real processes.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use common::procs::run;
use common::{random_bytes, stderr, TestCluster};
use dfsd::client::Client;
use dfsd::config::ClientConfig;
use dfsd::security::seal::SealKey;

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
        common::procs::start(tmp.path(), name, &env, |addr| {
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
    common::wait_until("the warning", std::time::Duration::from_secs(20), || {
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
    common::wait_until(
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
