//! The S3 gateway (issue 7) against a real cluster: a `dfsd gateway` process in front of a
//! TestCluster. It serves HTTPS with the cluster's gateway certificate (plain HTTP when
//! the cluster is plaintext), and S3 callers sign with dfsd access keys made by `dfsd key
//! create`. Driven by boto3 (tests/s3/*.py); the tests that need it are skipped, saying
//! so, when python3 cannot import boto3 (`.ci/run` installs it).

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use sha2::{Digest, Sha256};
use testkit::{random_bytes, start_gateway, Gateway, TestCluster};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{rustls, TlsConnector};

/// Whether a missing tool must fail the test (CI sets DFSD_REQUIRE_TOOLS=1) rather than
/// skip it with a message.
fn tools_required() -> bool {
    std::env::var("DFSD_REQUIRE_TOOLS").is_ok_and(|v| v == "1")
}

fn boto3_available(test: &str) -> bool {
    let ok = testkit::python_has_boto3();
    if !ok {
        assert!(
            !tools_required(),
            "{test} needs python3 with boto3 and DFSD_REQUIRE_TOOLS=1 is set"
        );
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
    python_args(cluster, gw, script, &[], env)
}

fn python_args(
    cluster: &TestCluster,
    gw: &Gateway,
    script: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let script = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/s3")
        .join(script);
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .args(args)
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
    assert!(got.status.success(), "{}", testkit::stderr(&got));
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
    if !testkit::secure_mode() {
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
    if testkit::secure_mode() {
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

/// `curl` without credentials: (HTTP status, body). `extra` goes before the URL.
fn curl(cluster: &TestCluster, method: &str, url: &str, extra: &[&str]) -> (u16, Vec<u8>) {
    let out_file = cluster.dir.path().join("curl.out");
    let mut cmd = Command::new("curl");
    if method == "HEAD" {
        cmd.args(["-s", "-I", "-o"]);
    } else {
        cmd.args(["-s", "-X", method, "-o"]);
    }
    cmd.arg(&out_file).args(["-w", "%{http_code}"]);
    if let Some(s) = &cluster.secure {
        cmd.arg("--cacert").arg(s.ca());
    }
    let out = cmd.args(extra).arg(url).output().expect("run curl");
    let code = String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(0);
    if code == 0 {
        eprintln!("curl {method} {url}: {out:?}");
    }
    let body = std::fs::read(&out_file).unwrap_or_default();
    let _ = std::fs::remove_file(&out_file);
    (code, body)
}

/// Issue 13: every bullet of its "Why", run by boto3 (tests/s3/edges_suite.py), then what
/// an anonymous stranger can do with curl against a public-read and a private bucket, the
/// CLI switch and its event, and the request id followed into the coordinator's log.
#[test]
fn s3_edge_cases_acls_and_anonymous_reads() {
    if !boto3_available("s3_edge_cases_acls_and_anonymous_reads") {
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster, "");
    let rw = cluster.create_key("s3-edges", "readwrite", "/");
    let other = cluster.create_key("s3-other", "readwrite", "/");
    let team = cluster.create_key("s3-team", "readwrite", "/edges/team");
    let mut env = vec![
        ("S3_KEY", rw.0.as_str()),
        ("S3_SECRET", rw.1.as_str()),
        ("S3_OTHER_KEY", other.0.as_str()),
        ("S3_OTHER_SECRET", other.1.as_str()),
    ];
    if testkit::secure_mode() {
        env.extend([
            ("S3_TEAM_KEY", team.0.as_str()),
            ("S3_TEAM_SECRET", team.1.as_str()),
        ]);
    }
    let out = python(&cluster, &gw, "edges_suite.py", &env);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ALL PASSED"),
        "edges suite failed\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway log\n{}",
        String::from_utf8_lossy(&out.stderr),
        gw.log()
    );
    print!("{stdout}");

    // The request id a caller sees is the one the coordinator logged for the calls the
    // gateway made on that request's behalf.
    let rid = stdout
        .lines()
        .find_map(|l| l.strip_prefix("REQUEST_ID "))
        .expect("the suite printed a request id")
        .trim()
        .to_string();
    let coord_log = cluster.log("coordinator");
    assert!(
        coord_log
            .lines()
            .any(|l| l.contains(&rid) && l.contains("/edges/rid-obj")),
        "request id {rid} not in the coordinator's log"
    );

    // Anonymous curl: reads of the public-read bucket only.
    let ep = &gw.endpoint;
    let (code, body) = curl(&cluster, "GET", &format!("{ep}/pubdl/hello.txt"), &[]);
    assert_eq!((code, body.as_slice()), (200, &b"hello, anyone"[..]));
    assert_eq!(
        curl(&cluster, "HEAD", &format!("{ep}/pubdl/hello.txt"), &[]).0,
        200
    );
    let (code, body) = curl(&cluster, "GET", &format!("{ep}/pubdl?list-type=2"), &[]);
    let listing = String::from_utf8_lossy(&body);
    assert!(
        code == 200 && listing.contains("<Key>hello.txt</Key>"),
        "{code} {listing}"
    );
    let (code, body) = curl(&cluster, "GET", &format!("{ep}/pubdl"), &[]);
    let listing = String::from_utf8_lossy(&body);
    // Strangers do not learn the owner's access key id.
    assert!(code == 200 && !listing.contains(&rw.0), "{code} {listing}");
    let (code, body) = curl(
        &cluster,
        "GET",
        &format!("{ep}/pubdl?list-type=2&fetch-owner=true"),
        &[],
    );
    assert!(code == 200 && !String::from_utf8_lossy(&body).contains(&rw.0));
    let url = format!("{ep}/pubdl/hello.txt?response-content-type=text/html");
    assert_eq!(curl(&cluster, "GET", &url, &[]).0, 400);
    let refused: &[(&str, &str)] = &[
        ("GET", "/privdl/secret.txt"),
        ("HEAD", "/privdl/secret.txt"),
        ("GET", "/privdl?list-type=2"),
        ("GET", "/"),
        ("PUT", "/pubdl/new.txt"),
        ("DELETE", "/pubdl/hello.txt"),
        ("POST", "/pubdl?delete"),
        ("PUT", "/pubdl?acl"),
        ("GET", "/pubdl?acl"),
        ("GET", "/pubdl/hello.txt?acl"),
        ("GET", "/pubdl?cors"),
        ("PUT", "/pubdl?cors"),
        ("GET", "/pubdl?location"),
        ("GET", "/pubdl?uploads"),
        ("POST", "/pubdl/big?uploads"),
        ("HEAD", "/pubdl"),
        ("DELETE", "/pubdl"),
        ("PUT", "/anon-bucket"),
        ("GET", "/pubdl/hello.txt?attributes"),
    ];
    for (method, path) in refused {
        let data: &[&str] = if matches!(*method, "PUT" | "POST") {
            &["-d", "x"]
        } else {
            &[]
        };
        let (code, body) = curl(&cluster, method, &format!("{ep}{path}"), data);
        assert_eq!(
            code,
            403,
            "anonymous {method} {path}: {}",
            String::from_utf8_lossy(&body)
        );
    }
    // A path that tries to climb out of the public bucket reads nothing.
    let (code, body) = curl(
        &cluster,
        "GET",
        &format!("{ep}/pubdl/../privdl/secret.txt"),
        &["--path-as-is"],
    );
    assert!(
        code != 200 && !String::from_utf8_lossy(&body).contains("not for you"),
        "{code}"
    );
    let still = cluster.cli(&["get", "/pubdl/hello.txt", "-"]);
    assert_eq!(
        still.stdout, b"hello, anyone",
        "an anonymous write went through"
    );
    assert!(!cluster.cli(&["stat", "/pubdl/new.txt"]).status.success());
    assert!(!cluster.cli(&["stat", "/anon-bucket"]).status.success());

    // The CLI switch, recorded as events; the coordinator refuses at once.
    let off = cluster.cli(&["bucket", "public", "/pubdl", "off"]);
    assert!(off.status.success(), "{}", testkit::stderr(&off));
    assert_eq!(
        curl(&cluster, "GET", &format!("{ep}/pubdl/hello.txt"), &[]).0,
        403
    );
    let on = cluster.cli(&["bucket", "public", "/pubdl", "on"]);
    assert!(on.status.success(), "{}", testkit::stderr(&on));
    assert_eq!(
        curl(&cluster, "GET", &format!("{ep}/pubdl/hello.txt"), &[]).0,
        200
    );
    let show = cluster.cli(&["bucket", "show", "/pubdl", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    assert_eq!(v["public_read"], true);
    assert_eq!(v["owner"], rw.0.as_str());
    let events = cluster.cli(&["events", "--json"]);
    let text = String::from_utf8_lossy(&events.stdout);
    let acl_events: Vec<&str> = text.lines().filter(|l| l.contains("bucket_acl")).collect();
    assert!(
        acl_events.len() >= 3
            && acl_events.iter().any(|l| l.contains("private"))
            && acl_events
                .iter()
                .all(|l| l.contains("/pubdl") || l.contains("/edges")),
        "{text}"
    );
    let bad = cluster.cli(&["bucket", "public", "/pubdl/sub", "on"]);
    assert!(!bad.status.success() && testkit::stderr(&bad).contains("top-level"));
    let log = gw.log();
    assert!(!log.contains(" ERROR "), "gateway logged errors:\n{log}");
}

/// rclone (the Debian package) in front of the gateway, or None (skipped, loudly, unless
/// DFSD_REQUIRE_TOOLS=1, when it fails).
fn rclone_available(test: &str) -> Option<String> {
    match Command::new("rclone").arg("version").output() {
        Ok(o) if o.status.success() => {
            let v = String::from_utf8_lossy(&o.stdout);
            Some(v.lines().next().unwrap_or("rclone").to_string())
        }
        _ => {
            assert!(
                !tools_required(),
                "{test} needs rclone (apt-get install rclone) and DFSD_REQUIRE_TOOLS=1 is set"
            );
            println!("SKIPPED: {test} needs rclone (apt-get install -y rclone)");
            None
        }
    }
}

/// An rclone command for remote `dfs:` (the gateway, with `key`), with no user config.
fn rclone(cluster: &TestCluster, gw: &Gateway, key: &(String, String), args: &[&str]) -> Output {
    let mut cmd = Command::new("rclone");
    cmd.args([
        "--config",
        "/dev/null",
        "--retries",
        "1",
        "--low-level-retries",
        "1",
    ])
    .env("RCLONE_CONFIG_DFS_TYPE", "s3")
    .env("RCLONE_CONFIG_DFS_PROVIDER", "Other")
    .env("RCLONE_CONFIG_DFS_ACCESS_KEY_ID", &key.0)
    .env("RCLONE_CONFIG_DFS_SECRET_ACCESS_KEY", &key.1)
    .env("RCLONE_CONFIG_DFS_ENDPOINT", &gw.endpoint)
    .env("RCLONE_CONFIG_DFS_REGION", "us-east-1")
    .env("RCLONE_CONFIG_DFS_FORCE_PATH_STYLE", "true")
    // The machine's AWS settings stay out: rclone's AWS SDK reads AWS_CA_BUNDLE, which
    // rclone 1.60's S3 backend cannot load ("HTTPClient's transport unsupported type").
    .env("AWS_CONFIG_FILE", "/dev/null")
    .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
    .env_remove("AWS_CA_BUNDLE")
    .env_remove("AWS_PROFILE");
    if let Some(s) = &cluster.secure {
        // Go reads the trusted roots from SSL_CERT_FILE (--ca-cert fails the same way).
        cmd.env("SSL_CERT_FILE", s.ca()).env_remove("SSL_CERT_DIR");
    }
    cmd.args(args).output().expect("run rclone")
}

fn ok(what: &str, o: &Output) -> String {
    assert!(
        o.status.success(),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Files (path -> bytes) and directories under `root`, relative.
fn tree_of(root: &Path) -> (std::collections::BTreeMap<String, Vec<u8>>, Vec<String>) {
    let (mut files, mut dirs) = (std::collections::BTreeMap::new(), Vec::new());
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().display().to_string();
            if p.is_dir() {
                dirs.push(rel);
                stack.push(p);
            } else {
                files.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    dirs.sort();
    (files, dirs)
}

/// Issue 13: rclone syncs a tree holding empty directories up and down through the
/// gateway, directory markers carry the empty directories, and `rclone check` is clean
/// both ways.
#[test]
fn rclone_round_trips_a_tree_with_empty_directories() {
    let Some(version) = rclone_available("rclone_round_trips_a_tree_with_empty_directories") else {
        return;
    };
    if !boto3_available("rclone_round_trips_a_tree_with_empty_directories") {
        return;
    }
    let cluster = TestCluster::start(3);
    let gw = start_gateway(&cluster, "");
    let key = cluster.create_key("rclone", "readwrite", "/");
    let src = cluster.dir.path().join("rclone-src");
    for d in ["empty1", "sub/empty2", "sub/deep"] {
        std::fs::create_dir_all(src.join(d)).unwrap();
    }
    std::fs::write(src.join("a.txt"), b"alpha\n").unwrap();
    std::fs::write(src.join("sub/b.bin"), random_bytes(3 * 1024 * 1024 + 7, 5)).unwrap();
    std::fs::write(src.join("sub/deep/c.txt"), b"").unwrap();
    let remote = "dfs:rcl/tree";
    ok(
        "rclone mkdir",
        &rclone(&cluster, &gw, &key, &["mkdir", "dfs:rcl"]),
    );

    // Newer rclone writes markers itself (--s3-directory-markers, 1.63+); Debian's 1.60
    // does not, so there the markers for the empty directories are PUT with boto3.
    let help = ok(
        "rclone help",
        &rclone(&cluster, &gw, &key, &["help", "flags"]),
    );
    let writes_markers = help.contains("--s3-directory-markers");
    let mut up = vec!["sync", "--create-empty-src-dirs"];
    if writes_markers {
        up.push("--s3-directory-markers");
    }
    let src_s = src.display().to_string();
    up.extend([src_s.as_str(), remote]);
    ok("rclone sync up", &rclone(&cluster, &gw, &key, &up));
    if !writes_markers {
        println!("NOTE: {version} writes no directory markers; boto3 PUTs them");
        let env = [("S3_KEY", key.0.as_str()), ("S3_SECRET", key.1.as_str())];
        let o = python_args(
            &cluster,
            &gw,
            "markers.py",
            &["rcl", "tree/empty1/", "tree/sub/empty2/"],
            &env,
        );
        ok("markers.py", &o);
    }
    // The markers are directories in dfsd, and keys ending in '/' over S3.
    for d in ["/rcl/tree/empty1", "/rcl/tree/sub/empty2"] {
        let st = cluster.cli(&["stat", d]);
        assert!(st.status.success(), "{d}: {}", testkit::stderr(&st));
    }
    let got = cluster.cli(&["get", "/rcl/tree/sub/b.bin", "-"]);
    assert_eq!(
        sha256(&got.stdout),
        sha256(&std::fs::read(src.join("sub/b.bin")).unwrap())
    );
    ok(
        "rclone check up",
        &rclone(&cluster, &gw, &key, &["check", &src_s, remote]),
    );

    let dst = cluster.dir.path().join("rclone-dst");
    let dst_s = dst.display().to_string();
    let down = ["sync", "--create-empty-src-dirs", remote, dst_s.as_str()];
    ok("rclone sync down", &rclone(&cluster, &gw, &key, &down));
    ok(
        "rclone check down",
        &rclone(&cluster, &gw, &key, &["check", remote, &dst_s]),
    );
    let (want_files, want_dirs) = tree_of(&src);
    let (got_files, got_dirs) = tree_of(&dst);
    assert_eq!(
        got_files.keys().collect::<Vec<_>>(),
        want_files.keys().collect::<Vec<_>>()
    );
    assert!(
        got_files == want_files,
        "file contents differ after the round trip"
    );
    assert_eq!(
        got_dirs, want_dirs,
        "directories (empty ones included) differ"
    );
    let log = gw.log();
    assert!(!log.contains(" ERROR "), "gateway logged errors:\n{log}");
}
