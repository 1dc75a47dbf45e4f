//! Issue 12, findings 2, 9 and 10: the join secret of plaintext clusters with access
//! keys (a stranger cannot join, cannot get the token key, cannot replay a proof, not
//! even across a coordinator restart, and a sniffer sees neither secret), `dfsd config`
//! redaction, and `dfsd dev --listen` and its admin port. Real processes throughout.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dfsd::client::Client;
use dfsd::config::ClientConfig;
use dfsd::proto::pb;
use dfsd::security::join::{JoinSecret, JOIN_HEADER};
use testkit::procs::{eventually, run, start, Server};
use testkit::{random_bytes, stderr, wait_until};
use tonic::Code;

/// What a sniffer kept: one buffer per connection and direction.
type Sniffed = Arc<Mutex<Vec<Arc<Mutex<Vec<u8>>>>>>;

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
        let mut cmd = Command::new(testkit::bin());
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

/// A TCP relay in front of `target` that keeps a copy of every byte in each direction
/// of each connection: what a passive sniffer of a plaintext network sees.
fn tap(target: &str) -> (String, Sniffed) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = format!("http://{}", l.local_addr().unwrap());
    let target = target.trim_start_matches("http://").to_string();
    let seen: Sniffed = Arc::default();
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

fn contains(streams: &Sniffed, needle: &[u8]) -> bool {
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
        public_addr: String::new(),
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
    // Proofs are taken from the second after the coordinator started.
    eventually("a proof accepted", Duration::from_secs(5), || async {
        let fresh = right.proof_at(now_secs());
        let mut raw = raw.clone();
        raw.heartbeat(with_proof(hb(), &fresh)).await.is_ok()
    })
    .await;
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
                .filter(|n| n.state == Some(dfsd::model::NodeState::Alive))
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
        .map(|n| n.node_id.to_string())
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

    // A proof a sniffer copies just before the coordinator restarts.
    let sniffed = right.proof_at(now_secs());
    raw.heartbeat(with_proof(hb(), &sniffed)).await.unwrap();

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

    // The restarted process has no memory of the proofs the old one accepted (review
    // finding 10): one sniffed before the restart, still within the clock window, is
    // refused, and the refusal says from when proofs are taken. A fresh one is fine.
    let ch = dfsd::net::channel(&again.addr, Duration::from_secs(3), None).unwrap();
    let mut raw = pb::cluster_client::ClusterClient::new(ch);
    let e = raw
        .register(with_proof(register(), &sniffed))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    assert!(
        e.message().contains("before this coordinator started"),
        "{}",
        e.message()
    );
    assert!(e
        .metadata()
        .get(dfsd::security::join::NOT_BEFORE_HEADER)
        .is_some());
    eventually("a fresh proof accepted", Duration::from_secs(5), || async {
        let fresh = right.proof_at(now_secs());
        let mut raw = raw.clone();
        raw.register(with_proof(register(), &fresh)).await.is_ok()
    })
    .await;
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
    let mut cmd = Command::new(testkit::bin());
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
    dev_admin(dir, args, key, None)
}

/// `dfsd dev`, with `coordinator.admin_listen` set to `admin` if given.
fn dev_admin(dir: &Path, args: &[&str], key: Option<(&str, &str)>, admin: Option<&str>) -> Output {
    let mut cmd = Command::new(testkit::bin());
    cmd.env_remove("DFSD_COORDINATOR__ADMIN_LISTEN");
    if let Some(a) = admin {
        cmd.env("DFSD_COORDINATOR__ADMIN_LISTEN", a);
    }
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
    // Nor an admin port beyond loopback (review finding 13c), where everyone would be
    // admin: a wildcard, or a name that resolves to one.
    for admin in ["0.0.0.0:0", "[::]:0"] {
        let out = dev_admin(&open, &["--listen", "127.0.0.1:0"], None, Some(admin));
        let e = stderr(&out);
        assert!(!out.status.success(), "admin port on {admin} without keys");
        assert!(
            e.contains("admin_listen") && e.contains("loopback") && e.contains("--auth"),
            "{e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(!open.join("coordinator").exists());
    }
    let out = dev_admin(
        &open,
        &["--listen", "127.0.0.1:0"],
        None,
        Some("localhost:0"),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // With --auth: keys on, the admin key printed once, the self-check passes.
    let keyed = tmp.path().join("keyed");
    let out = dev_admin(
        &keyed,
        &["--auth", "--listen", "0.0.0.0:0"],
        None,
        Some("0.0.0.0:0"),
    );
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
