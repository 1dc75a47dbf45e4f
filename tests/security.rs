//! Security: nobody gets in where they don't belong, and no input makes a node allocate
//! without bound. Run against secure clusters (TLS, access keys, chunk tokens); in
//! plaintext mode (`DFSD_TEST_SECURITY=plaintext`) there is nothing to enforce and the
//! tests say so and return.

use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use dfsd::chunk::ChunkId;
use dfsd::client::{Client, ClientError, PutOptions};
use dfsd::proto::methods::RPC_METHODS;
use dfsd::proto::pb;
use dfsd::security::token::{Op, TokenKey};
use dfsd::security::{certs, Role};
use prost::Message;
use testkit::{random_bytes, stderr, wait_until, Creds, Opts, TestCluster};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::Channel;
use tonic::{Code, Status};

fn secure(name: &str) -> bool {
    if testkit::secure_mode() {
        true
    } else {
        println!("{name}: skipped in plaintext mode (nothing to enforce)");
        false
    }
}

/// Passes message bytes through untouched, so any method can be called with any payload.
#[derive(Default, Clone)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }
    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// How a sweep call identifies itself.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Tokens {
    None,
    Expired,
    OtherChunk,
    Valid,
}

/// The payload for `method`: a well-formed request naming `chunk` (so only the
/// credentials can be what is refused), with a token of the given kind. Methods of the
/// Coordinator and Cluster services get an empty message: their credentials are checked
/// before the message is looked at.
fn payload(method: &str, chunk: ChunkId, key: &TokenKey, tokens: Tokens) -> Bytes {
    let sign = |op: Op| match tokens {
        Tokens::None => String::new(),
        Tokens::Expired => key.sign_until(op, &[chunk], 1_000_000),
        Tokens::OtherChunk => key.sign(op, &[ChunkId::of(b"other")], Duration::from_secs(600)),
        Tokens::Valid => key.sign(op, &[chunk], Duration::from_secs(600)),
    };
    let id = chunk.to_hex();
    let bytes = match method.rsplit('/').next().unwrap() {
        "WriteChunk" => pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(pb::WriteChunkHeader {
                chunk_id: id,
                size: 5,
                downstream: vec![],
                token: sign(Op::Write),
                ..Default::default()
            })),
        }
        .encode_to_vec(),
        "ReadChunk" => pb::ReadChunkRequest {
            chunk_id: id,
            token: sign(Op::Read),
        }
        .encode_to_vec(),
        "VerifyChunk" => pb::VerifyChunkRequest {
            chunk_id: id,
            token: sign(Op::Verify),
        }
        .encode_to_vec(),
        "ReplicateChunk" => pb::ReplicateChunkRequest {
            chunk_id: id,
            size: 5,
            sources: vec![],
            token: sign(Op::Replicate),
            read_token: sign(Op::Read),
        }
        .encode_to_vec(),
        "DeleteChunks" => pb::DeleteChunksRequest {
            chunk_ids: vec![id],
            protect_secs: 0,
            token: sign(Op::Delete),
        }
        .encode_to_vec(),
        _ => Vec::new(),
    };
    Bytes::from(bytes)
}

/// Calls `method` once with `payload` and `creds` (and `x-dfsd-on-behalf-of` if given);
/// the outcome's code.
async fn call(
    ch: Channel,
    method: &str,
    (client_streaming, server_streaming): (bool, bool),
    payload: Bytes,
    creds: &Creds,
    on_behalf: Option<&str>,
) -> Code {
    let mut grpc = tonic::client::Grpc::new(ch);
    if let Err(e) = grpc.ready().await {
        return Status::from_error(Box::new(e)).code();
    }
    let path: http::uri::PathAndQuery = method.parse().unwrap();
    let add = |md: &mut tonic::metadata::MetadataMap| {
        if let Some((id, secret)) = &creds.0 {
            md.insert("x-dfsd-key-id", id.parse().unwrap());
            md.insert("x-dfsd-secret", secret.parse().unwrap());
        }
        if let Some(id) = on_behalf {
            md.insert("x-dfsd-on-behalf-of", id.parse().unwrap());
        }
    };
    let result: Result<(), Status> = match (client_streaming, server_streaming) {
        (false, false) => {
            let mut req = tonic::Request::new(payload);
            add(req.metadata_mut());
            grpc.unary(req, path, RawCodec).await.map(|_| ())
        }
        (true, false) => {
            let mut req = tonic::Request::new(tokio_stream::iter(vec![payload]));
            add(req.metadata_mut());
            grpc.client_streaming(req, path, RawCodec).await.map(|_| ())
        }
        (false, true) => {
            let mut req = tonic::Request::new(payload);
            add(req.metadata_mut());
            match grpc.server_streaming(req, path, RawCodec).await {
                Ok(r) => r.into_inner().message().await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
        (true, true) => {
            let mut req = tonic::Request::new(tokio_stream::iter(vec![payload]));
            add(req.metadata_mut());
            match grpc.streaming(req, path, RawCodec).await {
                Ok(r) => r.into_inner().message().await.map(|_| ()),
                Err(e) => Err(e),
            }
        }
    };
    match result {
        Ok(()) => Code::Ok,
        Err(s) => s.code(),
    }
}

struct Case {
    name: &'static str,
    /// Certificate presented: `None` = none, `Some("foreign")` = from another CA.
    cert: Option<&'static str>,
    creds: Creds,
    tokens: Tokens,
    /// Key named in `x-dfsd-on-behalf-of`.
    on_behalf: Option<String>,
}

#[tokio::test(flavor = "multi_thread")]
async fn every_rpc_refuses_callers_without_the_right_credentials() {
    if !secure("sweep") {
        return;
    }
    let c = TestCluster::start(1);
    let s = c.secure.clone().unwrap();
    let key = c.token_key();
    let datanode = c.nodes[0].as_ref().unwrap().addr.clone();
    // A chunk that exists, so a call that got through would have something to act on.
    let data = b"hello".to_vec();
    let chunk = ChunkId::of(&data);
    c.cli_stdin(&["put", "-", "/f"], Some(&data));
    assert_eq!(c.holders(&chunk.to_hex()).len(), 1);

    // A second CA, and a key that is revoked.
    let foreign = c.dir.path().join("foreign");
    certs::init_ca(&foreign, 1).unwrap();
    certs::issue(&foreign, Role::Coordinator, "coordinator", &[], 1).unwrap();
    let out = c.cli(&[
        "key", "create", "--name", "gone", "--role", "admin", "--json",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let created: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let revoked = (
        created["key_id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    );
    let out = c.cli(&["key", "revoke", &revoked.0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let admin = Creds(Some((s.key_id.clone(), s.secret.clone())));
    let readwrite = c.create_key("rw", "readwrite", "/");
    // A client certificate of our CA, revoked; the datanode hears of it by heartbeat.
    // The probe is a call a client certificate may make (a read with a valid token), so
    // only the deny-list can refuse it: an order (VerifyChunk) is refused to any client
    // certificate, revoked or not, and would not show that the list has arrived.
    let gone = certs::issue(&s.certs, Role::Client, "revoked", &[], 1).unwrap();
    let out = c.cli(&["cert", "revoke", &gone.cert.display().to_string()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let no_creds = Creds(None);
    let probe = || {
        let ch = c.raw_channel(&datanode, Role::Node, Some("revoked"));
        let payload = payload("/dfs.v1.Datanode/ReadChunk", chunk, &key, Tokens::Valid);
        call(
            ch,
            "/dfs.v1.Datanode/ReadChunk",
            (false, true),
            payload,
            &no_creds,
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while probe().await != Code::PermissionDenied {
        assert!(
            Instant::now() < deadline,
            "the datanode never refused the revoked certificate"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let cases = [
        Case {
            name: "no credentials",
            cert: None,
            creds: Creds(None),
            tokens: Tokens::None,
            on_behalf: None,
        },
        Case {
            name: "certificate from another CA",
            cert: Some("foreign"),
            creds: admin.clone(),
            tokens: Tokens::Valid,
            on_behalf: None,
        },
        Case {
            name: "revoked key",
            cert: None,
            creds: Creds(Some(revoked.clone())),
            tokens: Tokens::None,
            on_behalf: None,
        },
        Case {
            name: "expired token",
            cert: Some("coordinator"),
            creds: Creds(None),
            tokens: Tokens::Expired,
            on_behalf: None,
        },
        Case {
            name: "token for other chunks",
            cert: Some("coordinator"),
            creds: Creds(None),
            tokens: Tokens::OtherChunk,
            on_behalf: None,
        },
        Case {
            name: "client certificate on internal methods",
            cert: Some("client"),
            creds: admin.clone(),
            tokens: Tokens::Valid,
            on_behalf: None,
        },
        Case {
            name: "node certificate giving orders",
            cert: Some("node"),
            creds: Creds(None),
            tokens: Tokens::Valid,
            on_behalf: None,
        },
        Case {
            name: "gateway certificate without a key",
            cert: Some("gateway"),
            creds: Creds(None),
            tokens: Tokens::Valid,
            on_behalf: None,
        },
        Case {
            name: "on-behalf-of from a client certificate",
            cert: Some("client"),
            creds: admin.clone(),
            tokens: Tokens::None,
            on_behalf: Some(readwrite.0.clone()),
        },
        Case {
            name: "gateway acting for a revoked key",
            cert: Some("gateway"),
            creds: Creds(None),
            tokens: Tokens::None,
            on_behalf: Some(revoked.0.clone()),
        },
        Case {
            name: "revoked certificate",
            cert: Some("revoked"),
            creds: admin.clone(),
            tokens: Tokens::Valid,
            on_behalf: None,
        },
        Case {
            name: "readwrite key on admin methods",
            cert: None,
            creds: Creds(Some(readwrite.clone())),
            tokens: Tokens::None,
            on_behalf: None,
        },
    ];
    // What only an admin key may call (GetS3Credential: only a gateway certificate).
    let admin_only = [
        "ListNodes",
        "Status",
        "Fsck",
        "DrainNode",
        "RemoveNode",
        "CreateKey",
        "ListKeys",
        "RevokeKey",
        "Events",
        "GetS3Credential",
        "RevokeCertificate",
        "ListRevokedCertificates",
    ];

    let mut calls = 0;
    let mut failures = Vec::new();
    for case in &cases {
        for &(method, cs, ss) in RPC_METHODS {
            let service = method.split('/').nth(1).unwrap();
            let name = method.rsplit('/').next().unwrap();
            let order = matches!(name, "VerifyChunk" | "ReplicateChunk" | "DeleteChunks");
            let (addr, role) = match service {
                "dfs.v1.Datanode" => (datanode.as_str(), Role::Node),
                _ => (c.coordinator_addr.as_str(), Role::Coordinator),
            };
            // Which calls each case is about, and the code each must get.
            let coordinator = service == "dfs.v1.Coordinator";
            let expected = match (case.name, service) {
                ("certificate from another CA", _) => Code::Unavailable,
                // Before credentials, before tokens, on every service.
                ("revoked certificate", _) => Code::PermissionDenied,
                ("readwrite key on admin methods", "dfs.v1.Coordinator")
                    if admin_only.contains(&name) =>
                {
                    Code::PermissionDenied
                }
                ("no credentials" | "revoked key", _) => Code::Unauthenticated,
                // S3 secrets are for gateway certificates, whatever key comes along.
                ("client certificate on internal methods", _) if name == "GetS3Credential" => {
                    Code::PermissionDenied
                }
                ("node certificate giving orders", _) if coordinator => Code::Unauthenticated,
                // A gateway certificate alone allows GetS3Credential and GetBucket (checked
                // elsewhere).
                ("gateway certificate without a key", _)
                    if coordinator && !matches!(name, "GetS3Credential" | "GetBucket") =>
                {
                    Code::Unauthenticated
                }
                ("gateway certificate without a key", "dfs.v1.Cluster") => Code::PermissionDenied,
                ("gateway certificate without a key", "dfs.v1.Datanode") if order => {
                    Code::PermissionDenied
                }
                ("on-behalf-of from a client certificate", _) if coordinator => {
                    Code::PermissionDenied
                }
                ("gateway acting for a revoked key", _) if coordinator => Code::Unauthenticated,
                ("expired token", "dfs.v1.Datanode") => Code::Unauthenticated,
                ("token for other chunks", "dfs.v1.Datanode") => Code::PermissionDenied,
                ("client certificate on internal methods", "dfs.v1.Cluster") => {
                    Code::PermissionDenied
                }
                (
                    "client certificate on internal methods" | "node certificate giving orders",
                    "dfs.v1.Datanode",
                ) if order => Code::PermissionDenied,
                _ => continue,
            };
            let ch = match case.cert {
                None => c.raw_channel(addr, role, None),
                Some("foreign") => {
                    // What a stranger does: trust our CA, present a certificate of its own.
                    let tls = dfsd::security::Tls::load(&dfsd::config::TlsConfig {
                        ca: s.ca(),
                        cert: foreign.join("coordinator.pem").display().to_string(),
                        key: foreign.join("coordinator.key").display().to_string(),
                        plaintext: false,
                    })
                    .unwrap()
                    .unwrap();
                    dfsd::net::channel(addr, Duration::from_secs(3), Some(tls.client(role)))
                        .unwrap()
                }
                Some(cert) => c.raw_channel(addr, role, Some(cert)),
            };
            let got = call(
                ch,
                method,
                (cs, ss),
                payload(method, chunk, &key, case.tokens),
                &case.creds,
                case.on_behalf.as_deref(),
            )
            .await;
            calls += 1;
            let acceptable = got == expected
                // A refused handshake surfaces as a failed connection, or (TLS 1.3, where
                // the server judges the client's certificate after the client is done)
                // as a connection closed under the call.
                || (expected == Code::Unavailable
                    && matches!(got, Code::Unknown | Code::Cancelled));
            if !acceptable {
                failures.push(format!(
                    "{}: {method}: got {got:?}, want {expected:?}",
                    case.name
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {calls} calls wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // Every method was called in the no-credentials case at least.
    assert!(calls >= RPC_METHODS.len() * 2, "only {calls} calls");
    // Nothing happened: the chunk is still there, the namespace unchanged.
    assert_eq!(c.holders(&chunk.to_hex()).len(), 1);
    let ls = c.cli(&["ls", "/"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "f\n");
}

fn with_key(
    c: &TestCluster,
    key: &(String, String),
    args: &[&str],
    stdin: Option<&[u8]>,
) -> std::process::Output {
    let mut cmd = c.cli_command();
    cmd.env("DFSD_ACCESS_KEY", &key.0)
        .env("DFSD_SECRET_KEY", &key.1)
        .args(args)
        .stdin(if stdin.is_some() {
            std::process::Stdio::piped()
        } else {
            std::process::Stdio::null()
        })
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    if let Some(d) = stdin {
        use std::io::Write;
        child.stdin.take().unwrap().write_all(d).unwrap();
    }
    child.wait_with_output().unwrap()
}

fn create_key(c: &TestCluster, role: &str, prefix: &str) -> (String, String) {
    c.create_key(role, role, prefix)
}

fn refused(out: &std::process::Output, what: &str) {
    let e = stderr(out);
    assert!(!out.status.success(), "{what} succeeded");
    assert!(e.contains("permission denied"), "{what}: {e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{what}: {e}");
}

#[test]
fn readonly_and_prefix_keys_are_confined() {
    if !secure("keys") {
        return;
    }
    let c = TestCluster::start(2);
    for p in ["/team/a/doc", "/team/b/doc", "/other"] {
        let out = c.cli_stdin(&["put", "-", p], Some(p.as_bytes()));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let admin_ls = |p: &str| String::from_utf8(c.cli(&["ls", p]).stdout).unwrap();
    let before = (admin_ls("/"), admin_ls("/team"), admin_ls("/team/a"));

    // Read-only: reads work, nothing that writes does.
    let ro = create_key(&c, "readonly", "/");
    let out = with_key(&c, &ro, &["get", "/other", "-"], None);
    assert_eq!(out.stdout, b"/other", "{}", stderr(&out));
    refused(
        &with_key(&c, &ro, &["put", "-", "/new"], Some(b"x")),
        "readonly put",
    );
    refused(&with_key(&c, &ro, &["rm", "/other"], None), "readonly rm");
    refused(
        &with_key(&c, &ro, &["mv", "/other", "/moved"], None),
        "readonly mv",
    );
    refused(
        &with_key(&c, &ro, &["mkdir", "/dir"], None),
        "readonly mkdir",
    );
    refused(&with_key(&c, &ro, &["nodes"], None), "readonly nodes");
    refused(&with_key(&c, &ro, &["key", "ls"], None), "readonly key ls");

    // Prefix /team/a: its subtree only; the way down is visible, nothing beside it.
    let pk = create_key(&c, "readwrite", "/team/a");
    let out = with_key(&c, &pk, &["put", "-", "/team/a/new"], Some(b"mine"));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_key(&c, &pk, &["get", "/team/a/new", "-"], None);
    assert_eq!(out.stdout, b"mine");
    assert_eq!(
        String::from_utf8(with_key(&c, &pk, &["ls", "/"], None).stdout).unwrap(),
        "team/\n"
    );
    assert_eq!(
        String::from_utf8(with_key(&c, &pk, &["ls", "/team"], None).stdout).unwrap(),
        "a/\n"
    );
    assert_eq!(
        String::from_utf8(with_key(&c, &pk, &["ls", "/team/a"], None).stdout).unwrap(),
        "doc\nnew\n"
    );
    refused(
        &with_key(&c, &pk, &["get", "/team/b/doc", "-"], None),
        "prefix get outside",
    );
    refused(
        &with_key(&c, &pk, &["ls", "/team/b"], None),
        "prefix ls outside",
    );
    refused(
        &with_key(&c, &pk, &["stat", "/other"], None),
        "prefix stat outside",
    );
    refused(
        &with_key(&c, &pk, &["put", "-", "/team/b/x"], Some(b"x")),
        "prefix put outside",
    );
    refused(
        &with_key(&c, &pk, &["rm", "-r", "/team"], None),
        "prefix rm of a parent",
    );
    refused(
        &with_key(&c, &pk, &["mv", "/team/a/new", "/stolen"], None),
        "prefix mv out",
    );
    refused(
        &with_key(&c, &pk, &["mv", "/other", "/team/a/other"], None),
        "prefix mv in",
    );
    refused(
        &with_key(&c, &pk, &["mkdir", "/team/c"], None),
        "prefix mkdir beside",
    );
    // A revoked key stops working at once.
    let out = c.cli(&["key", "revoke", &pk.0]);
    assert!(out.status.success(), "{}", stderr(&out));
    let out = with_key(&c, &pk, &["ls", "/team/a"], None);
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );
    // Without any key: one line, not authenticated.
    let out = with_key(&c, &(String::new(), String::new()), &["ls", "/"], None);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("not authenticated"),
        "{}",
        stderr(&out)
    );

    // Nothing outside /team/a changed.
    let mut after_a = admin_ls("/team/a");
    after_a = after_a.replace("new\n", "");
    assert_eq!((admin_ls("/"), admin_ls("/team"), after_a), before);
}

/// An SDK client of `c` presenting the certificate `cert`, with `key` if given.
fn sdk_as(c: &TestCluster, cert: &str, key: Option<&(String, String)>) -> Client {
    let mut cfg = c.client_config();
    (cfg.access_key, cfg.secret_key) = key.cloned().unwrap_or_default();
    Client::connect(&cfg, Some(&c.secure.as_ref().unwrap().tls_as(cert))).unwrap()
}

fn code(r: Result<impl std::fmt::Debug, ClientError>) -> (Option<Code>, String) {
    let e = r.unwrap_err();
    (testkit::grpc_code(&e), e.to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn s3_secrets_go_to_gateway_certificates_only() {
    if !secure("S3 credentials") {
        return;
    }
    let mut c = TestCluster::start(1);
    let s = c.secure.clone().unwrap();
    let admin = (s.key_id.clone(), s.secret.clone());
    let rw = c.create_key("s3", "readwrite", "/photos");

    // Not for a client or node certificate, nor for no certificate, whatever the key.
    for cert in ["client", "node"] {
        let (got, e) = code(sdk_as(&c, cert, Some(&admin)).s3_credential(&rw.0).await);
        assert_eq!(got, Some(Code::PermissionDenied), "{cert}: {e}");
        assert!(e.contains("gateway certificate"), "{e}");
    }
    let (got, e) = code(c.client().s3_credential(&rw.0).await);
    assert_eq!(got, Some(Code::PermissionDenied), "{e}");

    // The gateway certificate alone gets the secret, the role and the prefix.
    let gw = sdk_as(&c, "gateway", None);
    let cred = gw.s3_credential(&rw.0).await.unwrap();
    assert_eq!(
        (
            cred.secret.as_str(),
            cred.role.as_str(),
            cred.prefix.as_str()
        ),
        (rw.1.as_str(), "readwrite", "/photos")
    );
    // The first admin key (configured with admin_key_id/admin_secret) is sealed too.
    assert_eq!(gw.s3_credential(&admin.0).await.unwrap().secret, admin.1);

    let (got, e) = code(gw.s3_credential("DKNOSUCHKEY000000000").await);
    assert_eq!(got, Some(Code::NotFound), "{e}");
    assert!(e.contains("DKNOSUCHKEY000000000"), "{e}");
    let (got, e) = code(gw.s3_credential("not a key").await);
    assert_eq!(got, Some(Code::InvalidArgument), "{e}");
    c.revoke_key(&rw.0);
    let (got, e) = code(gw.s3_credential(&rw.0).await);
    assert_eq!(got, Some(Code::PermissionDenied), "{e}");
    assert!(e.contains(&rw.0) && e.contains("revoked"), "{e}");

    // The database holds the secret sealed, never in clear.
    let old = c.create_key("old", "readonly", "/");
    let moved = c.create_key("moved", "readonly", "/");
    let db = rusqlite::Connection::open(c.coordinator_dir().join("meta.db")).unwrap();
    let sealed: Vec<u8> = db
        .query_row(
            "SELECT s3_secret_sealed FROM access_keys WHERE id = ?1",
            [&old.0],
            |r| r.get(0),
        )
        .unwrap();
    assert!(!sealed.windows(old.1.len()).any(|w| w == old.1.as_bytes()));
    // A key from before S3 support (no sealed secret), and a sealed secret copied onto
    // another key's row; the coordinator reads keys at start-up.
    db.execute(
        "UPDATE access_keys SET s3_secret_sealed = NULL WHERE id = ?1",
        [&old.0],
    )
    .unwrap();
    db.execute(
        "UPDATE access_keys SET s3_secret_sealed = ?2 WHERE id = ?1",
        rusqlite::params![moved.0, sealed],
    )
    .unwrap();
    drop(db);
    c.kill_coordinator();
    c.start_coordinator();
    let gw = sdk_as(&c, "gateway", None);
    let (got, e) = code(gw.s3_credential(&old.0).await);
    assert_eq!(got, Some(Code::FailedPrecondition), "{e}");
    assert!(
        e.contains(&old.0) && e.contains("before S3 support") && e.contains("new key"),
        "{e}"
    );
    assert_eq!(e.lines().count(), 1, "{e}");
    let (got, e) = code(gw.s3_credential(&moved.0).await);
    assert_eq!(got, Some(Code::Internal), "{e}");
    // Such a key still works for dfsd calls.
    let out = with_key(&c, &old, &["ls", "/"], None);
    assert!(out.status.success(), "{}", stderr(&out));
    // Nothing secret reached the coordinator's log.
    let log = c.log("coordinator");
    for secret in [&rw.1, &old.1, &moved.1, &admin.1] {
        assert!(!log.contains(secret.as_str()), "a secret in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn gateways_act_with_the_permissions_of_the_key_they_name() {
    if !secure("on behalf of") {
        return;
    }
    let c = TestCluster::start(1);
    let s = c.secure.clone().unwrap();
    let admin = (s.key_id.clone(), s.secret.clone());
    for p in ["/photos/a", "/other/b"] {
        let out = c.cli_stdin(&["put", "-", p], Some(b"x"));
        assert!(out.status.success(), "{}", stderr(&out));
    }
    let ro = c.create_key("ro", "readonly", "/photos");
    let rw = c.create_key("rw", "readwrite", "/photos");
    let gw = sdk_as(&c, "gateway", None);

    // The certificate alone is not a key.
    let (got, e) = code(gw.stat("/photos/a").await);
    assert_eq!(got, Some(Code::Unauthenticated), "{e}");

    // For the readonly key: its reads, none of its writes, nothing beside its prefix.
    let as_ro = gw.on_behalf_of(&ro.0);
    assert_eq!(as_ro.stat("/photos/a").await.unwrap().size, 1);
    let (got, e) = code(as_ro.mkdir("/photos/new", false).await);
    assert_eq!(got, Some(Code::PermissionDenied), "{e}");
    assert!(e.contains(&ro.0), "{e}");
    let (got, _) = code(as_ro.stat("/other/b").await);
    assert_eq!(got, Some(Code::PermissionDenied));
    // For the readwrite key: a whole put, through the datanodes, under its prefix only.
    let as_rw = gw.on_behalf_of(&rw.0);
    as_rw
        .put(&b"hello"[..], "/photos/b", &PutOptions::default())
        .await
        .unwrap();
    let (got, _) = code(as_rw.delete("/other/b", false).await);
    assert_eq!(got, Some(Code::PermissionDenied));

    // Anyone else naming a key is refused, an admin key notwithstanding.
    for cert in ["client", "node"] {
        let (got, e) = code(
            sdk_as(&c, cert, Some(&admin))
                .on_behalf_of(&ro.0)
                .stat("/photos/a")
                .await,
        );
        assert_eq!(got, Some(Code::PermissionDenied), "{cert}: {e}");
        assert!(e.contains("gateway certificate"), "{e}");
    }
    let (got, _) = code(c.client().on_behalf_of(&ro.0).stat("/photos/a").await);
    assert_eq!(got, Some(Code::PermissionDenied));
    // Unknown and unsendable ids.
    let (got, e) = code(
        gw.on_behalf_of("DKNOSUCHKEY000000000")
            .stat("/photos/a")
            .await,
    );
    assert_eq!(got, Some(Code::Unauthenticated), "{e}");
    let (got, _) = code(gw.on_behalf_of("bad\nid").stat("/photos/a").await);
    assert_eq!(got, Some(Code::Unauthenticated));

    // A revocation applies to the next call made for the key.
    c.revoke_key(&rw.0);
    let (got, e) = code(as_rw.stat("/photos/b").await);
    assert_eq!(got, Some(Code::Unauthenticated), "{e}");
    assert!(e.contains("revoked"), "{e}");
}

#[test]
fn datanodes_without_a_cluster_node_certificate_cannot_join() {
    if !secure("join") {
        return;
    }
    let c = TestCluster::start(1);
    let s = c.secure.clone().unwrap();
    let foreign = c.dir.path().join("foreign");
    certs::init_ca(&foreign, 1).unwrap();
    certs::issue(&foreign, Role::Node, "node", &[], 1).unwrap();
    // One node with a certificate from another CA, one with a client certificate from ours.
    let attempts = [
        (
            "foreign",
            foreign.join("ca.pem"),
            foreign.join("node.pem"),
            foreign.join("node.key"),
        ),
        (
            "client",
            s.certs.join("ca.pem"),
            s.certs.join("client.pem"),
            s.certs.join("client.key"),
        ),
    ];
    let mut children = Vec::new();
    for (name, ca, cert, key) in &attempts {
        let log = c.dir.path().join(format!("intruder-{name}.log"));
        let f = std::fs::File::create(&log).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = std::process::Command::new(testkit::bin())
            .env_remove("DFSD_CONFIG")
            .env("DFSD_TLS__CA", ca)
            .env("DFSD_TLS__CERT", cert)
            .env("DFSD_TLS__KEY", key)
            .args([
                "datanode",
                "--join",
                &c.coordinator_addr,
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("--data-dir")
            .arg(c.dir.path().join(format!("intruder-{name}")))
            .stdout(f.try_clone().unwrap())
            .stderr(f)
            .spawn()
            .unwrap();
        children.push((KillOnDrop(child), log));
    }
    // Each is refused (the log says why) and the coordinator never lists it.
    for (_, log) in &children {
        wait_until("the join to be refused", Duration::from_secs(20), || {
            std::fs::read_to_string(log)
                .unwrap_or_default()
                .contains("coordinator unreachable")
        });
    }
    let client_log = std::fs::read_to_string(&children[1].1).unwrap();
    assert!(client_log.contains("node"), "{client_log}");
    // Each node logged its refusal after its registration call came back refused, so the
    // coordinator's list is final: no wait.
    assert_eq!(c.node_infos().len(), 1, "an intruder joined");
    drop(children);
}

/// Resident set size of a process, in KiB.
#[tokio::test(flavor = "multi_thread")]
async fn oversized_declarations_big_frames_and_stream_floods_are_refused() {
    let c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        ..Default::default()
    });
    let node = c.nodes[0].as_ref().unwrap();
    let (addr, pid) = (node.addr.clone(), node.pid());
    let dn = || pb::datanode_client::DatanodeClient::new(c.raw_channel(&addr, Role::Node, None));
    let header = |id: ChunkId, size: u64| c.write_header(id, size, vec![]);
    let frame = |n: usize| pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::Data(Bytes::from(vec![
            0u8;
            n
        ]))),
    };
    let base_rss = testkit::rss_kib(pid);

    // A declared size of 5 TB: refused before anything is allocated.
    let id = ChunkId::of(b"terabytes");
    let e = dn()
        .write_chunk(tokio_stream::iter(vec![header(id, 5 << 40), frame(10)]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    // A frame bigger than the frame limit, and one bigger than the message limit.
    for n in [8 << 20, 20 << 20] {
        let e = dn()
            .write_chunk(tokio_stream::iter(vec![header(id, 32 << 20), frame(n)]))
            .await
            .unwrap_err();
        assert!(
            matches!(
                e.code(),
                Code::InvalidArgument | Code::ResourceExhausted | Code::OutOfRange
            ),
            "{n}: {e:?}"
        );
    }
    // Coordinator side: terabyte chunks and placements are refused too.
    let mut coord = c.raw_coordinator();
    let up = coord
        .begin_upload(pb::BeginUploadRequest {
            path: "/big".into(),
            replication: 1,
            write_quorum: 1,
            no_clobber: false,
        })
        .await
        .unwrap()
        .into_inner();
    let e = coord
        .place_chunks(pb::PlaceChunksRequest {
            upload_id: up.upload_id,
            chunks: vec![pb::ChunkRef {
                chunk_id: id.to_hex(),
                size: 5 << 40,
                receipt: None,
            }],
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);

    // A slow client opens 400 write streams on one connection and sends only headers.
    let flood_channel = c.raw_channel(&addr, Role::Node, None);
    let mut holds = Vec::new();
    let mut streams = Vec::new();
    for i in 0..400u32 {
        let id = ChunkId::of(&i.to_le_bytes());
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tx.send(header(id, 1 << 20)).await.unwrap();
        holds.push(tx);
        let mut client = pb::datanode_client::DatanodeClient::new(flood_channel.clone());
        streams.push(tokio::spawn(async move {
            client
                .write_chunk(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
        }));
    }
    // Meanwhile other clients are served: a put and a get of 4 MiB through the CLI.
    let data = random_bytes(4 << 20, 3);
    let out = c.cli_stdin(&["put", "-", "/while-flooded"], Some(&data));
    assert!(out.status.success(), "{}", stderr(&out));
    let out = c.cli(&["get", "/while-flooded", "-"]);
    assert!(out.stdout == data, "{}", stderr(&out));
    // The node's memory stayed bounded: each open stream costs a temp file and a small
    // buffer, not a chunk.
    let grown = testkit::rss_kib(pid).saturating_sub(base_rss);
    assert!(
        grown < 256 * 1024,
        "datanode RSS grew by {grown} KiB under the flood"
    );
    drop(holds);
    let deadline = Instant::now() + Duration::from_secs(60);
    for s in streams {
        let r = tokio::time::timeout(deadline.saturating_duration_since(Instant::now()), s)
            .await
            .expect("flood streams end once the client gives up")
            .unwrap();
        assert!(r.is_err(), "a stream without data stored a chunk");
    }
    // No temp file outlives its stream.
    wait_until("temp files cleaned", Duration::from_secs(20), || {
        std::fs::read_dir(c.node_dir(0).join("tmp"))
            .unwrap()
            .count()
            == 0
    });
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_datanode_refuses_writes_and_gets_no_placements() {
    // Capacity and the disk reserve feed the same "free above the limit" figure; a
    // capacity is used here because the test cannot control the disk's real free space.
    let c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        env: vec![("DFSD_DATANODE__CAPACITY".into(), "3MiB".into())],
    });
    let mib = 1 << 20;
    let first = random_bytes(5 * mib / 2, 21);
    let out = c.cli_stdin(
        &["put", "--chunk-size", "1MiB", "-", "/first"],
        Some(&first),
    );
    assert!(out.status.success(), "{}", stderr(&out));

    // Straight to the node, with a valid token: refused for space, with the numbers.
    let data = random_bytes(mib, 22);
    let id = ChunkId::of(&data);
    let addr = c.nodes[0].as_ref().unwrap().addr.clone();
    let mut dn = pb::datanode_client::DatanodeClient::new(c.raw_channel(&addr, Role::Node, None));
    let msgs = vec![
        c.write_header(id, mib as u64, vec![]),
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Data(Bytes::from(
                data.clone(),
            ))),
        },
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::End(true)),
        },
    ];
    let e = dn.write_chunk(tokio_stream::iter(msgs)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("not enough space"), "{}", e.message());

    // Once the coordinator hears how full the node is, it places nothing there.
    wait_until(
        "the node reports itself full",
        Duration::from_secs(20),
        || {
            c.node_infos()
                .first()
                .is_some_and(|n| n.free_bytes < mib as u64)
        },
    );
    let out = c.cli_stdin(
        &["put", "--chunk-size", "1MiB", "-", "/second"],
        Some(&data),
    );
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("free space"), "{e}");
    assert_eq!(e.trim_end().lines().count(), 1, "{e}");
    let ls = c.cli(&["ls", "/"]);
    assert_eq!(String::from_utf8_lossy(&ls.stdout), "first\n");
    // What was stored before is intact.
    assert_eq!(c.cli(&["get", "/first", "-"]).stdout, first);
}

#[test]
fn servers_refuse_to_start_without_tls_unless_plaintext_is_chosen() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["coordinator", "datanode"] {
        let out = std::process::Command::new(testkit::bin())
            .env_remove("DFSD_CONFIG")
            .env_remove("DFSD_TLS__CA")
            .env_remove("DFSD_TLS__PLAINTEXT")
            .args([role, "--data-dir"])
            .arg(dir.path().join(role))
            .args(["--listen", "127.0.0.1:0"])
            .output()
            .unwrap();
        let e = stderr(&out);
        assert!(!out.status.success(), "{role} started without TLS");
        assert!(
            e.contains("TLS is not configured") && e.contains("--plaintext"),
            "{e}"
        );
        assert_eq!(e.trim_end().lines().count(), 1, "{e}");
        assert!(
            !dir.path().join(role).exists(),
            "{role} created its data dir anyway"
        );
    }
    // Chosen explicitly, plaintext starts, with a warning in the log.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let log = dir.path().join("plain.log");
    let log_file = std::fs::File::create(&log).unwrap();
    let child = std::process::Command::new(testkit::bin())
        .env_remove("DFSD_CONFIG")
        .args([
            "coordinator",
            "--plaintext",
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .arg("--data-dir")
        .arg(dir.path().join("plain"))
        // One open file for both streams, so neither overwrites the other.
        .stdout(log_file.try_clone().unwrap())
        .stderr(log_file)
        .spawn()
        .unwrap();
    // Ended even if the wait below fails.
    let _child = KillOnDrop(child);
    wait_until("the plaintext warning", Duration::from_secs(20), || {
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("serving PLAINTEXT")
    });
}

/// Kills and reaps a child process when dropped (also when a test panics).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
