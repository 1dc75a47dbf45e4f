//! The SDK's typed errors: each condition is provoked against a real cluster and the
//! `ClientError` variant matched, so a program using the SDK branches on variants, never on
//! message text. The wire side of the same contract (a reason in the status details) is
//! checked on a raw status for the conditions the SDK handles by itself (an unknown upload).

use dfsd::client::{Client, ClientError, PutOptions, ReadRange};
use dfsd::config::ClientConfig;
use dfsd::model::{Entry, MkdirOptions};
use dfsd::proto::pb;
use dfsd::wire_error::{reason, Reason};
use testkit::{random_bytes, secure_mode, Opts, TestCluster};

async fn put(c: &Client, path: &str, data: &[u8]) -> Result<Entry, ClientError> {
    put_with(c, path, data, PutOptions::default()).await
}

async fn put_with(
    c: &Client,
    path: &str,
    data: &[u8],
    opts: PutOptions,
) -> Result<Entry, ClientError> {
    let mut r = data;
    c.put(&mut r, path, &opts).await.map(|r| r.entry)
}

async fn get(c: &Client, path: &str) -> Result<Vec<u8>, ClientError> {
    let mut out = Vec::new();
    c.get(path, &mut out, ReadRange::default()).await?;
    Ok(out)
}

#[tokio::test(flavor = "multi_thread")]
async fn namespace_refusals_have_their_own_variants() {
    let c = TestCluster::start(1);
    let sdk = c.client();
    let v1 = put(&sdk, "/f", b"one").await.unwrap();
    sdk.mkdir("/d/e", true).await.unwrap();

    let e = sdk.stat("/missing").await.unwrap_err();
    assert!(matches!(e, ClientError::NotFound(_)), "{e:?}");
    assert!(e.to_string().contains("/missing"), "{e}");

    let e = sdk.mkdir("/d", false).await.unwrap_err();
    assert!(matches!(e, ClientError::AlreadyExists(_)), "{e:?}");

    let opts = PutOptions {
        no_clobber: true,
        ..PutOptions::default()
    };
    let e = put_with(&sdk, "/f", b"two", opts).await.unwrap_err();
    assert!(matches!(e, ClientError::AlreadyExists(_)), "{e:?}");

    // A compare-and-swap on a stale version names the file whose version moved.
    put(&sdk, "/f", b"two").await.unwrap();
    let opts = PutOptions {
        expected_version: Some(v1.version),
        ..PutOptions::default()
    };
    let e = put_with(&sdk, "/f", b"three", opts).await.unwrap_err();
    match &e {
        ClientError::VersionMismatch { path, .. } => assert_eq!(path, "/f"),
        other => panic!("expected VersionMismatch, got {other:?}"),
    }
    assert_eq!(
        get(&sdk, "/f").await.unwrap(),
        b"two",
        "the refused put changed nothing"
    );

    let e = sdk.mkdir("/f/sub", true).await.unwrap_err();
    assert!(matches!(e, ClientError::NotADirectory(_)), "{e:?}");

    let e = put(&sdk, "/d", b"over a directory").await.unwrap_err();
    assert!(matches!(e, ClientError::IsADirectory(_)), "{e:?}");

    let e = sdk.delete("/d", false).await.unwrap_err();
    assert!(matches!(e, ClientError::NotEmpty(_)), "{e:?}");
    assert!(
        sdk.stat("/d/e").await.is_ok(),
        "the refused delete removed nothing"
    );

    // The server refuses the request itself (an attribute name over its limit).
    let e = sdk
        .mkdir_with(
            "/attrs",
            &MkdirOptions {
                parents: true,
                attrs: Some([("k".repeat(100_000), "v".into())].into()),
                owner: String::new(),
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::Rejected(_)), "{e:?}");
    assert!(matches!(
        sdk.stat("/attrs").await,
        Err(ClientError::NotFound(_))
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn credential_refusals_are_typed() {
    if !secure_mode() {
        eprintln!("skipped: a plaintext cluster has no access keys");
        return;
    }
    let c = TestCluster::start(1);
    let (id, secret) = c.create_key("photos", "readwrite", "/photos");
    let client = |id: &str, secret: &str| {
        let cfg = ClientConfig {
            access_key: id.into(),
            secret_key: secret.into(),
            ..c.client_config()
        };
        Client::connect(&cfg, c.client_tls().as_ref()).unwrap()
    };
    let confined = client(&id, &secret);
    put(&confined, "/photos/a", b"mine").await.unwrap();

    let e = put(&confined, "/other", b"outside the prefix")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::PermissionDenied(_)), "{e:?}");
    assert!(e.to_string().starts_with("permission denied: "), "{e}");
    let e = confined.mkdir("/other", false).await.unwrap_err();
    assert!(matches!(e, ClientError::PermissionDenied(_)), "{e:?}");

    let e = client(&id, "not-the-secret")
        .stat("/photos/a")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotAuthenticated(_)), "{e:?}");
    assert!(e.to_string().starts_with("not authenticated: "), "{e}");
    let e = client("DKNOSUCHKEY000000000", &secret)
        .stat("/photos/a")
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::NotAuthenticated(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_coordinator_nobody_serves_is_unreachable() {
    let c = TestCluster::start(1);
    // A port that was just free: nothing listens there.
    let port = testkit::closed_port();
    let cfg = ClientConfig {
        coordinator: format!("127.0.0.1:{port}"),
        ..c.client_config()
    };
    let sdk = Client::connect(&cfg, c.client_tls().as_ref()).unwrap();
    let e = sdk.stat("/").await.unwrap_err();
    match &e {
        ClientError::Unreachable { what, addr, .. } => {
            assert_eq!(*what, "coordinator");
            assert!(addr.contains(&port.to_string()), "{addr}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn too_few_replicas_is_quorum_not_met() {
    // Two nodes, two replicas, both needed. One node is killed before the coordinator
    // notices: it is placed on and fails, and no other node can take the replica.
    let mut c = TestCluster::start_with(Opts {
        nodes: 2,
        replication: 2,
        env: vec![("DFSD_COORDINATOR__WRITE_QUORUM".into(), "2".into())],
    });
    let sdk = c.client();
    put(&sdk, "/before", b"both nodes up").await.unwrap();
    c.kill_node(1);
    let e = put(&sdk, "/after", &random_bytes(10_000, 1))
        .await
        .unwrap_err();
    assert!(matches!(e, ClientError::QuorumNotMet(_)), "{e:?}");
    assert!(
        matches!(sdk.stat("/after").await, Err(ClientError::NotFound(_))),
        "nothing was committed"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_bytes_on_every_replica_are_an_integrity_failure() {
    let c = TestCluster::start_with(Opts {
        nodes: 2,
        replication: 2,
        ..Opts::default()
    });
    let sdk = c.client();
    let data = random_bytes(100_000, 2);
    put(&sdk, "/f", &data).await.unwrap();
    for i in 0..2 {
        let files = c.chunk_files(i);
        assert_eq!(files.len(), 1, "node {i} holds the one chunk");
        let mut b = std::fs::read(&files[0]).unwrap();
        b[500] ^= 0x01;
        std::fs::write(&files[0], b).unwrap();
    }
    let e = get(&sdk, "/f").await.unwrap_err();
    assert!(matches!(e, ClientError::Integrity(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_that_cannot_be_reached_are_unavailable_not_corrupt() {
    let mut c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        ..Opts::default()
    });
    let sdk = c.client();
    put(&sdk, "/f", b"on the one node").await.unwrap();
    c.kill_node(0);
    let e = get(&sdk, "/f").await.unwrap_err();
    assert!(
        matches!(
            e,
            ClientError::Unavailable(_) | ClientError::Unreachable { .. }
        ),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_over_the_per_key_limit_are_limit_exceeded() {
    let c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        env: vec![("DFSD_COORDINATOR__MAX_UPLOADS_PER_KEY".into(), "1".into())],
    });
    // The key's one upload, held open by a raw call with the same (admin) key.
    let mut raw = c.raw_coordinator();
    let held = raw
        .begin_upload(pb::BeginUploadRequest {
            path: "/held".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    let sdk = c.client();
    let e = put(&sdk, "/second", b"x").await.unwrap_err();
    assert!(matches!(e, ClientError::LimitExceeded(_)), "{e:?}");
    assert!(e.to_string().contains("max_uploads_per_key"), "{e}");
    raw.abort_upload(pb::AbortUploadRequest {
        upload_id: held.upload_id,
    })
    .await
    .unwrap();
    put(&sdk, "/second", b"x").await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_replaced_mid_read_aborts_the_read() {
    let c = TestCluster::start(1);
    let sdk = c.client();
    // More chunks than one GetFile page, so the read asks again while it streams.
    let opts = |v: u8| PutOptions {
        chunk_size: Some(1024),
        attrs: [("v".to_string(), v.to_string())].into(),
        ..PutOptions::default()
    };
    let data = random_bytes(600 * 1024, 3);
    put_with(&sdk, "/f", &data, opts(1)).await.unwrap();
    // A reader that stalls after its first bytes until the file has been replaced.
    let (mut out, mut sink) = tokio::io::duplex(4096);
    let reading = {
        let sdk = sdk.clone();
        tokio::spawn(async move { sdk.get("/f", &mut out, ReadRange::default()).await })
    };
    let mut first = [0u8; 1024];
    tokio::io::AsyncReadExt::read_exact(&mut sink, &mut first)
        .await
        .unwrap();
    assert_eq!(&first[..], &data[..1024]);
    put_with(&sdk, "/f", &random_bytes(600 * 1024, 4), opts(2))
        .await
        .unwrap();
    let drain = tokio::spawn(async move {
        let mut rest = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut sink, &mut rest)
            .await
            .unwrap();
        rest
    });
    let e = reading.await.unwrap().unwrap_err();
    assert!(matches!(e, ClientError::Aborted(_)), "{e:?}");
    let rest = drain.await.unwrap();
    assert!(
        data[1024..].starts_with(&rest),
        "every byte delivered before the abort was the old file's"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_upload_carries_its_reason_on_the_wire() {
    // The SDK handles this one itself (it begins a new upload and reports its receipts
    // again), so it is checked on the wire: the reason, not the message, says it.
    let c = TestCluster::start(1);
    let mut raw = c.raw_coordinator();
    let e = raw
        .place_chunks(pb::PlaceChunksRequest {
            upload_id: "no-such-upload".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(reason(&e), Reason::UploadUnknown, "{e:?}");
    // A path that does not exist is a different reason under the same gRPC code.
    let e = raw
        .stat(pb::StatRequest {
            path: "/missing".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), tonic::Code::NotFound);
    assert_eq!(reason(&e), Reason::NotFound, "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_plaintext_client_of_a_tls_coordinator_is_told_why() {
    if !secure_mode() {
        eprintln!("skipped: the cluster is plaintext");
        return;
    }
    let c = TestCluster::start(1);
    // The right address and key, but no TLS: the server answers with a TLS alert.
    let sdk = Client::new(&c.client_config()).unwrap();
    let e = sdk.stat("/").await.unwrap_err();
    match &e {
        ClientError::Unreachable { what, reason, .. } => {
            assert_eq!(*what, "coordinator");
            assert!(reason.contains("does it use TLS?"), "{reason}");
        }
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
