//! Issue 12, finding 10: certificate revocation (refused by the coordinator and by
//! datanodes, whatever the role) and `dfsd cert issue`'s fingerprints and validity.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::Duration;

use dfsd::client::{Client, ClientError};
use dfsd::config::ClientConfig;
use dfsd::proto::pb;
use dfsd::security::{certs, Role};
use testkit::procs::{eventually, run, start};
use testkit::{random_bytes, stderr, wait_until, TestCluster};
use tonic::Code;

fn secure(name: &str) -> bool {
    if testkit::secure_mode() {
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
    let n2 = start(c.dir.path(), "node2", &env, mk);
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
    assert!(matches!(e, ClientError::PermissionDenied(_)), "{e}");
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
                .filter(|n| n.state == Some(dfsd::model::NodeState::Alive))
                .count()
                == 1
    });
    drop(n2);
    let n2 = start(c.dir.path(), "node2-again", &env, mk);
    wait_until(
        "node2's registration to be refused",
        Duration::from_secs(20),
        || n2.log().contains("has been revoked"),
    );
    assert_eq!(
        c.node_infos()
            .iter()
            .filter(|n| n.state == Some(dfsd::model::NodeState::Alive))
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

#[test]
fn cert_issue_prints_the_fingerprint_and_gives_edge_certificates_90_days() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("certs");
    let cert = |args: &[&str]| {
        let mut cmd = Command::new(testkit::bin());
        cmd.env_remove("DFSD_CONFIG")
            .arg("cert")
            .args(args)
            .arg("--dir")
            .arg(&dir);
        let out = run(cmd, None);
        assert!(out.status.success(), "{}", stderr(&out));
        String::from_utf8(out.stdout).unwrap()
    };
    cert(&["init"]);
    let days_left = |text: &str| {
        let until = text
            .split("valid until:")
            .nth(1)
            .unwrap()
            .trim()
            .lines()
            .next()
            .unwrap();
        let now = dfsd::model::now_ms();
        (dfsd::units::parse_time(until, now).unwrap() - now) / 86_400_000
    };
    let fingerprint = |text: &str| {
        text.split("fingerprint:")
            .nth(1)
            .unwrap()
            .trim()
            .to_string()
    };
    for (args, name, days) in [
        (vec!["issue", "--gateway", "gw"], "gw", 89..=90),
        (vec!["issue", "--client", "laptop"], "laptop", 89..=90),
        (vec!["issue", "--node", "n1"], "n1", 1820..=1825),
        (
            vec!["issue", "--client", "short", "--days", "7"],
            "short",
            6..=7,
        ),
        (
            vec!["issue", "--gateway", "long", "--years", "2"],
            "long",
            365..=731,
        ),
    ] {
        let out = cert(&args);
        assert!(
            days.contains(&days_left(&out)),
            "{name}: {} days\n{out}",
            days_left(&out)
        );
        let pem = std::fs::read(dir.join(format!("{name}.pem"))).unwrap();
        let der = <rustls_pki_types::CertificateDer<'static> as rustls_pki_types::pem::PemObject>::from_pem_slice(&pem).unwrap();
        assert_eq!(
            fingerprint(&out),
            hex::encode(dfsd::security::revoke::fingerprint(&der))
        );
    }
    // Keys and certificates private, the CA certificate for everyone (clients need it).
    let mode = |f: &str| std::fs::metadata(dir.join(f)).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode("."), 0o700);
    assert_eq!(mode("ca.pem"), 0o644);
    for f in ["ca.key", "gw.pem", "gw.key", "n1.pem", "n1.key"] {
        assert_eq!(mode(f), 0o600, "{f}");
    }
}
