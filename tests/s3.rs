//! The S3 gateway (issue 7) against a real cluster: a `dfsd gateway` process in front of a
//! TestCluster. It serves HTTPS with the cluster's gateway certificate (plain HTTP when
//! the cluster is plaintext), and S3 callers sign with dfsd access keys made by `dfsd key
//! create`. Driven by boto3 (tests/s3/*.py); the tests that need it are skipped, saying
//! so, when python3 cannot import boto3 (`.ci/run` installs it).

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{random_bytes, start_gateway, Gateway, TestCluster};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{rustls, TlsConnector};

fn boto3_available(test: &str) -> bool {
    let ok = common::python_has_boto3();
    if !ok {
        println!(
            "SKIPPED: {test} needs python3 with boto3 (python3 -m pip install boto3); \
             `.ci/run` installs it"
        );
    }
    ok
}

/// Runs a script of tests/s3 against `gw`, with the cluster CA to verify HTTPS and no
/// AWS settings of the machine running the tests.
fn python(cluster: &TestCluster, gw: &Gateway, script: &str, env: &[(&str, &str)]) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/s3")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .env("S3_ENDPOINT", &gw.endpoint)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_CA_BUNDLE")
        .env_remove("S3_CA_BUNDLE");
    if let Some(s) = &cluster.secure {
        cmd.env("S3_CA_BUNDLE", s.ca());
    }
    cmd.envs(env.iter().copied());
    cmd.output().expect("run python3")
}

fn sha256(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

#[test]
fn boto3_suite_against_a_gateway() {
    if !boto3_available("boto3_suite_against_a_gateway") {
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster, "");
    let rw = cluster.create_key("s3-writer", "readwrite", "/");
    let ro = cluster.create_key("s3-reader", "readonly", "/");
    let keep = random_bytes(3 * 1024 * 1024 + 11, 42);
    let keep_file = cluster.dir.path().join("keep.bin");
    std::fs::write(&keep_file, &keep).unwrap();

    let keep_path = keep_file.display().to_string();
    let out = python(
        &cluster,
        &gw,
        "boto_suite.py",
        &[
            ("S3_KEY", &rw.0),
            ("S3_SECRET", &rw.1),
            ("S3_RO_KEY", &ro.0),
            ("S3_RO_SECRET", &ro.1),
            ("KEEP_FILE", &keep_path),
        ],
    );
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
    // The gateway logged no error (every refusal above was the caller's fault), and no
    // secret.
    let log = gw.log();
    assert!(!log.contains(" ERROR "), "gateway logged errors:\n{log}");
    assert!(
        !log.contains(&rw.1) && !log.contains(&ro.1),
        "a secret in the log"
    );
    assert!(
        !cluster.log("coordinator").contains(&rw.1),
        "a secret in the log"
    );
}

#[test]
fn revoked_keys_lose_s3_access_within_the_cache_ttl() {
    if !boto3_available("revoked_keys_lose_s3_access_within_the_cache_ttl") {
        return;
    }
    let ttl = Duration::from_secs(2);
    let cluster = TestCluster::start(1);
    let gw = start_gateway(&cluster, &format!("key_cache_ttl = \"{}s\"", ttl.as_secs()));
    let key = cluster.create_key("soon-revoked", "readwrite", "/");
    let probe = |mode: &str| {
        let out = python(
            &cluster,
            &gw,
            "revocation_probe.py",
            &[("S3_KEY", &key.0), ("S3_SECRET", &key.1), ("MODE", mode)],
        );
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "probe failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
            String::from_utf8_lossy(&out.stderr),
            gw.log()
        );
        stdout
    };
    // Valid: the gateway now holds the secret.
    assert!(probe("once").starts_with("ok"));
    cluster.revoke_key(&key.0);
    let revoked = Instant::now();
    // The probe signs a request every 100 ms until one is refused (for 30 s at most).
    let refused = probe("until-refused");
    let took = revoked.elapsed();
    // While the gateway still caches the secret, the signature passes but the calls it
    // makes for the key are refused by the coordinator (AccessDenied); once the cache
    // entry expires the key is unknown to S3 (InvalidAccessKeyId). Either way: revoked.
    assert!(
        (refused.starts_with("refused AccessDenied 403")
            || refused.starts_with("refused InvalidAccessKeyId 403"))
            && refused.contains("revoked"),
        "{refused}"
    );
    // The TTL, plus the probe's own start-up (python and boto3) and a margin.
    assert!(
        took < ttl + Duration::from_secs(8),
        "refused only after {took:?}"
    );
}

/// `GET /` over TLS to `addr`, verified against the PEM CA `ca` for the name `name`:
/// the start of the response, or the TLS error.
fn https_get(ca: &str, addr: &str, name: &str) -> Result<String, String> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(ca).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = ServerName::try_from(name.to_string()).unwrap();
        let mut tls = TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .map_err(|e| e.to_string())?;
        tls.write_all(b"GET / HTTP/1.1\r\nHost: s3\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = vec![0u8; 64];
        let n = tls.read(&mut out).await.map_err(|e| e.to_string())?;
        Ok(String::from_utf8_lossy(&out[..n]).into_owned())
    })
}

#[test]
fn the_s3_port_speaks_https_only_when_tls_is_on() {
    if !common::secure_mode() {
        println!("the_s3_port_speaks_https_only_when_tls_is_on: skipped in plaintext mode");
        return;
    }
    let cluster = TestCluster::start(1);
    let mut gw = start_gateway(&cluster, "");
    let ca = cluster.secure.as_ref().unwrap().ca();

    // Plain HTTP gets no HTTP answer: the handshake fails and the connection is closed.
    for _ in 0..3 {
        let mut tcp = std::net::TcpStream::connect(&gw.addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: s3\r\n\r\n")
            .unwrap();
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        assert!(
            !answer.starts_with(b"HTTP/"),
            "plain HTTP answered: {}",
            String::from_utf8_lossy(&answer)
        );
    }
    // The gateway is still serving, over TLS with a certificate the cluster CA vouches
    // for under the names S3 clients dial (an unsigned request: 403 by S3's rules).
    for name in ["localhost", "127.0.0.1"] {
        let answer = https_get(&ca, &gw.addr, name).unwrap();
        assert!(answer.starts_with("HTTP/1.1 403"), "{name}: {answer}");
    }
    let e = https_get(&ca, &gw.addr, "elsewhere.example").unwrap_err();
    assert!(e.contains("certificate"), "{e}");
    assert!(gw.child.try_wait().unwrap().is_none(), "the gateway died");
    assert!(gw.log().contains("https=true"), "{}", gw.log());
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
    if !boto3_available("object_features_multipart_and_aws_cli_sync") {
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster, "");
    let rw = cluster.create_key("s3-objects", "readwrite", "/");
    // Confined to one directory of bucket gamma (with authentication on).
    let team = cluster.create_key("s3-team", "readwrite", "/gamma/team");
    let work = tempfile::tempdir().unwrap();
    let work_dir = work.path().display().to_string();
    let mut env = vec![
        ("S3_KEY", rw.0.as_str()),
        ("S3_SECRET", rw.1.as_str()),
        ("WORK_DIR", work_dir.as_str()),
    ];
    if common::secure_mode() {
        env.extend([
            ("S3_TEAM_KEY", team.0.as_str()),
            ("S3_TEAM_SECRET", team.1.as_str()),
        ]);
    }
    let out = python(&cluster, &gw, "objects_suite.py", &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL PASSED"),
        "objects suite failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    print!("{stdout}");

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
