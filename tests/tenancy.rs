//! What one access key can learn about, or do to, data it may not read (issue 12):
//! knowing a chunk's SHA-256 is not having its content. Each test replays an attack found
//! by the security review against a real secure cluster and checks that it now fails the
//! attacker's way, and that honest dedup still saves the transfer.
//!
//! Plaintext mode runs without authentication, where every caller may read everything:
//! the tests say so and return.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use bytes::Bytes;
use dfsd::chunk::ChunkId;
use dfsd::client::{Client, ClientError, PutOptions, ReadRange};
use dfsd::proto::pb;
use dfsd::security::Role;
use testkit::admin;
use testkit::{random_bytes, wait_until, Opts, RawCoordinator, TestCluster};
use tonic::Code;

fn secure(name: &str) -> bool {
    if testkit::secure_mode() {
        true
    } else {
        println!("{name}: skipped in plaintext mode (no keys, nothing to confine)");
        false
    }
}

fn sdk(c: &TestCluster, key: &(String, String)) -> Client {
    let mut cfg = c.client_config();
    (cfg.access_key, cfg.secret_key) = key.clone();
    Client::connect(&cfg, c.client_tls().as_ref()).unwrap()
}

fn raw(c: &TestCluster, key: &(String, String)) -> RawCoordinator {
    c.raw_coordinator_with(Some(key.clone()), None)
}

fn chunk_ref(id: ChunkId, size: u64, receipt: Option<pb::Receipt>) -> pb::ChunkRef {
    pb::ChunkRef {
        chunk_id: id.to_hex(),
        size,
        receipt,
    }
}

async fn begin(coord: &mut RawCoordinator, path: &str) -> pb::BeginUploadResponse {
    coord
        .begin_upload(pb::BeginUploadRequest {
            path: path.into(),
            replication: 0,
            write_quorum: 0,
            no_clobber: false,
        })
        .await
        .unwrap()
        .into_inner()
}

/// The code a begin fails with, if it fails.
async fn begin_err(coord: &mut RawCoordinator, path: &str) -> Option<Code> {
    coord
        .begin_upload(pb::BeginUploadRequest {
            path: path.into(),
            ..Default::default()
        })
        .await
        .err()
        .map(|e| e.code())
}

async fn place(
    coord: &mut RawCoordinator,
    upload: &str,
    chunks: Vec<pb::ChunkRef>,
) -> Result<Vec<pb::ChunkPlacement>, tonic::Status> {
    coord
        .place_chunks(pb::PlaceChunksRequest {
            upload_id: upload.into(),
            chunks,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().placements)
}

async fn commit(
    coord: &mut RawCoordinator,
    upload: &str,
    chunks: Vec<pb::ChunkRef>,
    size: u64,
) -> Result<pb::Entry, tonic::Status> {
    coord
        .commit_upload(pb::CommitUploadRequest {
            upload_id: upload.into(),
            chunks,
            size,
            ..Default::default()
        })
        .await
        .map(|r| r.into_inner().entry.unwrap())
}

/// Sends `data` through the pipeline of `p` (as the SDK does) and returns the response.
async fn send(
    c: &TestCluster,
    p: &pb::ChunkPlacement,
    owner: &str,
    data: &[u8],
) -> Result<pb::WriteChunkResponse, tonic::Status> {
    let header = pb::WriteChunkHeader {
        chunk_id: p.chunk_id.clone(),
        size: data.len() as u64,
        downstream: p.targets[1..].to_vec(),
        token: p.token.clone(),
        owner: owner.into(),
        targets: p.targets.clone(),
    };
    let msgs = vec![
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(header)),
        },
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Data(Bytes::copy_from_slice(
                data,
            ))),
        },
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::End(true)),
        },
    ];
    pb::datanode_client::DatanodeClient::new(c.raw_channel(&p.targets[0].addr, Role::Node, None))
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .map(|r| r.into_inner())
}

/// The answer for one chunk with everything that names the chunk or is random blanked:
/// two answers that differ after this tell the caller something.
fn shape(p: &pb::ChunkPlacement) -> String {
    format!(
        "existing={:?} replicas={} targets={} read_token={:?} receipt={}",
        p.existing,
        p.existing_replicas.len(),
        p.targets.len(),
        p.read_token,
        p.receipt.is_some()
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn knowing_a_hash_gives_no_bytes_no_commit_and_no_existence_answer() {
    if !secure("dedup attack") {
        return;
    }
    let c = TestCluster::start_with(Opts {
        nodes: 3,
        replication: 2,
        ..Default::default()
    });
    let owner = c.create_key("payroll", "readwrite", "/secret");
    let tenant = c.create_key("tenant1", "readwrite", "/tenant1");
    let secret = random_bytes(300_000, 7);
    sdk(&c, &owner)
        .put(&secret[..], "/secret/payroll.txt", &PutOptions::default())
        .await
        .unwrap();
    let stolen = ChunkId::of(&secret);
    let ghost = ChunkId::of(&random_bytes(300_000, 8));
    let size = secret.len() as u64;

    let mut coord = raw(&c, &tenant);
    let up = begin(&mut coord, "/tenant1/loot").await;
    assert_eq!(up.owner, tenant.0);

    // The existence oracle: the stored chunk and a never-stored one get the same answer,
    // with no holders, no read token and no grant; both are to be uploaded.
    let placed = place(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(stolen, size, None), chunk_ref(ghost, size, None)],
    )
    .await
    .unwrap();
    assert_eq!(shape(&placed[0]), shape(&placed[1]));
    assert!(placed[0].existing.is_empty() && placed[0].read_token.is_empty());
    assert_eq!(placed[0].targets.len(), 2, "placed as a new chunk");
    // In bulk: 500 candidate contents, one of them stored, all answered alike.
    let mut candidates: Vec<pb::ChunkRef> = (0..499u32)
        .map(|i| chunk_ref(ChunkId::of(&i.to_le_bytes()), size, None))
        .collect();
    candidates.insert(250, chunk_ref(stolen, size, None));
    let up2 = begin(&mut coord, "/tenant1/probe").await;
    let answers = place(&mut coord, &up2.upload_id, candidates).await.unwrap();
    let shapes: HashSet<String> = answers.iter().map(shape).collect();
    assert_eq!(shapes.len(), 1, "answers differ: {shapes:?}");

    // No read: no token this key can get opens the chunk on any node.
    for node in c.node_addrs() {
        for token in [placed[0].token.clone(), placed[0].read_token.clone()] {
            let r = pb::datanode_client::DatanodeClient::new(c.raw_channel(
                &node.addr,
                Role::Node,
                None,
            ))
            .read_chunk(pb::ReadChunkRequest {
                chunk_id: stolen.to_hex(),
                token,
            })
            .await;
            let e = r.expect_err("a read of another key's chunk was allowed");
            assert!(
                matches!(e.code(), Code::Unauthenticated | Code::PermissionDenied),
                "{e:?}"
            );
        }
    }

    // No commit, and the refusal reads the same for the stored and the unstored chunk;
    // a wrong size does not bring out the size on record.
    let refusal = |e: tonic::Status, id: ChunkId| {
        assert_eq!(e.code(), Code::FailedPrecondition, "{e:?}");
        e.message().replace(&id.to_hex(), "<id>")
    };
    let a = commit(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(stolen, size, None)],
        size,
    )
    .await
    .unwrap_err();
    let b = commit(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(ghost, size, None)],
        size,
    )
    .await
    .unwrap_err();
    assert_eq!(refusal(a, stolen), refusal(b, ghost));
    let e = commit(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(stolen, size + 1, None)],
        size + 1,
    )
    .await
    .unwrap_err();
    assert!(!e.message().contains(&size.to_string()), "{}", e.message());

    // Receipts: forged, for another chunk, or another key's are refused alike.
    let mine = random_bytes(1000, 9);
    let mine_id = ChunkId::of(&mine);
    let p = place(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(mine_id, mine.len() as u64, None)],
    )
    .await
    .unwrap()
    .remove(0);
    let resp = send(&c, &p, &up.owner, &mine).await.unwrap();
    assert_eq!(resp.receipts.len(), 2, "one receipt per replica");
    let own_receipt = resp.receipts[0].clone();
    let mut forged = own_receipt.clone();
    forged.mac = Bytes::from(vec![7u8; 32]);
    let mut owner_coord = raw(&c, &owner);
    let owner_up = begin(&mut owner_coord, "/secret/again").await;
    let op = place(
        &mut owner_coord,
        &owner_up.upload_id,
        vec![chunk_ref(stolen, size, None)],
    )
    .await
    .unwrap()
    .remove(0);
    let owners_receipt = op
        .receipt
        .clone()
        .expect("the owner may reuse its own chunk");
    for (what, r) in [
        ("forged", forged),
        ("for another chunk", own_receipt.clone()),
        ("another key's", owners_receipt),
    ] {
        let e = commit(
            &mut coord,
            &up.upload_id,
            vec![chunk_ref(stolen, size, Some(r))],
            size,
        )
        .await
        .expect_err(what);
        assert_eq!(
            refusal(e, stolen),
            refusal(
                commit(
                    &mut coord,
                    &up.upload_id,
                    vec![chunk_ref(ghost, size, None)],
                    size
                )
                .await
                .unwrap_err(),
                ghost,
            ),
            "{what}"
        );
    }
    // The receipt of what this key did store works.
    let entry = commit(
        &mut coord,
        &up.upload_id,
        vec![chunk_ref(mine_id, mine.len() as u64, Some(own_receipt))],
        mine.len() as u64,
    )
    .await
    .unwrap();
    assert_eq!(entry.path, "/tenant1/loot");
    let t = sdk(&c, &tenant);
    let mut got = Vec::new();
    t.get("/tenant1/loot", &mut got, ReadRange::default())
        .await
        .unwrap();
    assert_eq!(got, mine);

    // Having the bytes is having the content: the tenant may store the same file, sending
    // every byte, and read it back.
    let report = t
        .put(&secret[..], "/tenant1/copy", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(report.bytes_sent, size, "{report:?}");
    let mut got = Vec::new();
    t.get("/tenant1/copy", &mut got, ReadRange::default())
        .await
        .unwrap();
    assert_eq!(got, secret);
    // The payroll file itself is untouched and still unreadable to the tenant.
    let e = t
        .get("/secret/payroll.txt", &mut Vec::new(), ReadRange::default())
        .await;
    let e = e.unwrap_err();
    assert!(matches!(e, ClientError::PermissionDenied(_)), "{e:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn honest_dedup_moves_the_bytes_once() {
    if !secure("honest dedup") {
        return;
    }
    let c = TestCluster::start_with(Opts {
        nodes: 3,
        replication: 2,
        ..Default::default()
    });
    let team = c.create_key("team", "readwrite", "/team");
    let other = c.create_key("other", "readwrite", "/other");
    let client = sdk(&c, &team);
    let data = random_bytes(100 << 20, 11);
    let first = client
        .put(&data[..], "/team/a", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(first.bytes_sent, data.len() as u64);
    let started = Instant::now();
    let second = client
        .put(&data[..], "/team/b", &PutOptions::default())
        .await
        .unwrap();
    println!(
        "second put of 100 MiB by the same key: {:?}, {} bytes sent, {} of {} chunks deduplicated",
        started.elapsed(),
        second.bytes_sent,
        second.deduplicated_chunks,
        second.chunks
    );
    assert_eq!(second.bytes_sent, 0, "{second:?}");
    assert_eq!(second.deduplicated_chunks, second.chunks);
    let mut got = Vec::new();
    client
        .get("/team/b", &mut got, ReadRange::default())
        .await
        .unwrap();
    assert!(got == data, "the deduplicated copy reads back wrong");
    // A key that cannot read /team sends the bytes again (and the nodes keep one copy).
    let third = sdk(&c, &other)
        .put(&data[..], "/other/c", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(third.bytes_sent, data.len() as u64);
    // A chunk repeated within one file is sent once or a few times (those in flight
    // together), not once per occurrence.
    let zeros = vec![0u8; 16 << 20];
    let opts = PutOptions {
        chunk_size: Some(1 << 20),
        ..Default::default()
    };
    let z = client.put(&zeros[..], "/team/zeros", &opts).await.unwrap();
    assert_eq!(z.chunks, 16);
    assert!(z.uploaded_chunks <= 8, "{z:?}");
    let mut got = Vec::new();
    client
        .get("/team/zeros", &mut got, ReadRange::default())
        .await
        .unwrap();
    assert!(got == zeros);
}

#[tokio::test(flavor = "multi_thread")]
async fn placing_a_known_id_does_not_keep_deleted_data_alive() {
    if !secure("GC grace refresh") {
        return;
    }
    let c = TestCluster::start_with(Opts {
        nodes: 2,
        replication: 2,
        env: vec![("DFSD_COORDINATOR__GC_GRACE".into(), "2s".into())],
    });
    let owner = c.create_key("owner", "readwrite", "/secret");
    let tenant = c.create_key("tenant", "readwrite", "/tenant");
    let data = random_bytes(50_000, 21);
    let id = ChunkId::of(&data);
    let keepalive = |coord: &mut RawCoordinator, upload: String| {
        let mut coord = coord.clone();
        let size = data.len() as u64;
        async move {
            let p = place(&mut coord, &upload, vec![chunk_ref(id, size, None)])
                .await
                .unwrap();
            assert!(p[0].existing.is_empty() && p[0].receipt.is_none());
        }
    };
    // The tenant opens its upload and names the chunk before the owner even stores it,
    // then keeps naming it, as fast as it likes.
    let mut coord = raw(&c, &tenant);
    let early = begin(&mut coord, "/tenant/early").await;
    keepalive(&mut coord, early.upload_id.clone()).await;

    let o = sdk(&c, &owner);
    o.put(&data[..], "/secret/old", &PutOptions::default())
        .await
        .unwrap();
    assert_eq!(c.holders(&id.to_hex()).len(), 2);
    let late = begin(&mut coord, "/tenant/late").await;
    keepalive(&mut coord, late.upload_id.clone()).await;
    o.delete("/secret/old", false).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        keepalive(&mut coord, early.upload_id.clone()).await;
        keepalive(&mut coord, late.upload_id.clone()).await;
        if c.holders(&id.to_hex()).is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the deleted chunk was kept alive by placements alone"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datanode_forwards_only_to_the_nodes_the_coordinator_chose() {
    if !secure("pipeline targets") {
        return;
    }
    let c = TestCluster::start_with(Opts {
        nodes: 2,
        replication: 1,
        ..Default::default()
    });
    // A listener on every loopback address: any connection a datanode makes to the
    // made-up pipeline addresses lands here.
    let trap = std::net::TcpListener::bind("0.0.0.0:0").unwrap();
    let port = trap.local_addr().unwrap().port();
    trap.set_nonblocking(true).unwrap();

    let mut coord = c.raw_coordinator();
    let up = begin(&mut coord, "/p").await;
    let data = random_bytes(10_000, 31);
    let id = ChunkId::of(&data);
    let p = place(&mut coord, &up.upload_id, vec![chunk_ref(id, 10_000, None)])
        .await
        .unwrap()
        .remove(0);
    assert_eq!(p.targets.len(), 1);
    let first = p.targets[0].clone();
    let node = c
        .nodes
        .iter()
        .flatten()
        .find(|n| n.addr == first.addr)
        .unwrap();
    let pid = node.pid();
    let base = testkit::rss_kib(pid);

    let mut dn =
        pb::datanode_client::DatanodeClient::new(c.raw_channel(&first.addr, Role::Node, None));
    let foreign = |i: u32| pb::NodeAddr {
        node_id: format!("x{i}"),
        addr: format!(
            "http://127.{}.{}.{}:{port}",
            (i >> 16) & 0xff,
            (i >> 8) & 0xff,
            (i & 0xff).max(1)
        ),
        public_addr: String::new(),
    };
    let header =
        |downstream: Vec<pb::NodeAddr>, targets: Vec<pb::NodeAddr>| pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(pb::WriteChunkHeader {
                chunk_id: id.to_hex(),
                size: data.len() as u64,
                downstream,
                token: p.token.clone(),
                owner: up.owner.clone(),
                targets,
            })),
        };
    for i in 0..20_000u32 {
        // Half name a foreign next hop; half also add it to the targets, which the token
        // does not cover.
        let hop = foreign(i);
        let targets = if i.is_multiple_of(2) {
            p.targets.clone()
        } else {
            vec![first.clone(), hop.clone()]
        };
        let e = dn
            .write_chunk(tokio_stream::iter(vec![header(vec![hop], targets)]))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "{i}: {e:?}");
        for word in ["connect", "refused", "timed out", "unreachable", "dns"] {
            assert!(!e.message().to_lowercase().contains(word), "{e:?}");
        }
    }
    assert!(
        matches!(trap.accept(), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock),
        "a datanode dialled an address the coordinator never chose"
    );
    let grown = testkit::rss_kib(pid).saturating_sub(base);
    assert!(grown < 64 * 1024, "datanode RSS grew by {grown} KiB");
    // The real pipeline still works.
    let resp = send(&c, &p, &up.owner, &data).await.unwrap();
    assert_eq!(resp.stored_on, vec![first.node_id.clone()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn uploads_are_bounded_per_key_and_idle_ones_are_swept() {
    if !secure("upload limits") {
        return;
    }
    let c = admin::cluster(
        1,
        &[
            ("DFSD_COORDINATOR__MAX_UPLOADS_PER_KEY", "50"),
            ("DFSD_COORDINATOR__MAX_UPLOAD_CHUNKS_PER_KEY", "1000"),
            ("DFSD_COORDINATOR__UPLOAD_IDLE_TIMEOUT", "3s"),
        ],
    );
    let metrics = admin::admin_addr(&c, "coordinator");
    let pid = c.coordinator.as_ref().unwrap().pid();
    let flooder = c.create_key("flooder", "readwrite", "/f");
    let bystander = c.create_key("bystander", "readwrite", "/b");
    let mut coord = raw(&c, &flooder);
    let base = testkit::rss_kib(pid);

    // 20,000 uploads begun as fast as one client can: the first 50 are accepted, then
    // each is refused until the sweeper frees a slot (uploads left idle for 3 s).
    let mut open = Vec::new();
    let mut refused = 0;
    for i in 0..20_000 {
        match coord
            .begin_upload(pb::BeginUploadRequest {
                path: format!("/f/{i}"),
                ..Default::default()
            })
            .await
        {
            Ok(r) => {
                assert!(refused > 0 || open.len() < 50, "a 51st upload was accepted");
                open.push(r.into_inner().upload_id)
            }
            Err(e) => {
                assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
                assert!(e.message().contains("max_uploads_per_key"), "{e:?}");
                refused += 1;
            }
        }
        assert!(refused > 0 || i < 50);
    }
    assert!(refused >= 19_000, "{refused} refused");
    let grown = testkit::rss_kib(pid).saturating_sub(base);
    assert!(grown < 64 * 1024, "coordinator RSS grew by {grown} KiB");
    assert!(admin::val(&admin::scrape(&metrics), "dfsd_uploads_open") <= 50.0);
    // Another key is not affected.
    let b = sdk(&c, &bystander);
    b.put(&b"fine"[..], "/b/x", &PutOptions::default())
        .await
        .unwrap();

    // Left idle, the uploads are dropped by the sweeper, not by the next begin.
    wait_until("idle uploads swept", Duration::from_secs(30), || {
        admin::val(&admin::scrape(&metrics), "dfsd_uploads_open") == 0.0
    });
    let e = commit(&mut coord, open.last().unwrap(), vec![], 0)
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound, "{e:?}");
    // The chunks one key's uploads hold on to (proven ones: stored, with their receipts,
    // or reused) are bounded in all; merely named ones are not held at all.
    let up = begin(&mut coord, "/f/budget").await;
    let key = c.token_key();
    let expires = dfsd::security::token::unix_now() + 600;
    let stored = |from: u32, n: u32| -> Vec<pb::ChunkRef> {
        (from..from + n)
            .map(|i| {
                let id = ChunkId::of(&i.to_be_bytes());
                let r = key.receipt(&up.owner, id, 1, "dn-x", expires);
                chunk_ref(id, 1, Some(r.into()))
            })
            .collect()
    };
    let named: Vec<pb::ChunkRef> = (0..4000u32)
        .map(|i| chunk_ref(ChunkId::of(&(i + 10_000).to_be_bytes()), 1, None))
        .collect();
    place(&mut coord, &up.upload_id, named).await.unwrap();
    let report = |stored: Vec<pb::ChunkRef>| pb::PlaceChunksRequest {
        upload_id: up.upload_id.clone(),
        stored,
        ..Default::default()
    };
    coord.place_chunks(report(stored(0, 1000))).await.unwrap();
    let e = coord
        .place_chunks(report(stored(1000, 1)))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_upload_chunks_per_key"), "{e:?}");
    // A stored chunk without a valid receipt is refused.
    let mut forged = stored(2000, 1);
    forged[0].receipt.as_mut().unwrap().mac = Bytes::from(vec![1u8; 32]);
    let e = coord.place_chunks(report(forged)).await.unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    let e = begin_err(&mut coord, "/f/second").await;
    assert_eq!(
        e, None,
        "a second upload is fine; only the chunk budget is spent"
    );
    coord
        .abort_upload(pb::AbortUploadRequest {
            upload_id: up.upload_id,
        })
        .await
        .unwrap();
    // And the key may upload again.
    sdk(&c, &flooder)
        .put(&b"again"[..], "/f/again", &PutOptions::default())
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_replica_reports_are_confined_coalesced_and_logged_safely() {
    if !secure("bad replica reports") {
        return;
    }
    let c = admin::cluster(2, &[]);
    let owner = c.create_key("owner", "readwrite", "/secret");
    let tenant = c.create_key("tenant", "readwrite", "/tenant");
    let secret = random_bytes(100_000, 41);
    sdk(&c, &owner)
        .put(&secret[..], "/secret/s", &PutOptions::default())
        .await
        .unwrap();
    let mine = random_bytes(100_000, 42);
    sdk(&c, &tenant)
        .put(&mine[..], "/tenant/m", &PutOptions::default())
        .await
        .unwrap();
    let nodes = c.node_addrs();
    let datanode_metrics: Vec<String> = (0..2)
        .map(|i| admin::admin_addr(&c, &format!("node-{i}")))
        .collect();
    let verifies = || -> f64 {
        datanode_metrics
            .iter()
            .map(|a| {
                admin::val(
                    &admin::scrape(a),
                    &admin::grpc("Datanode", "VerifyChunk", "OK"),
                )
            })
            .sum()
    };
    let mut coord = raw(&c, &tenant);
    let report = |chunk: ChunkId, node: &str, reason: &str| pb::ReportBadReplicaRequest {
        chunk_id: chunk.to_hex(),
        node_id: node.into(),
        reason: reason.into(),
    };

    // Another key's chunk, and one nobody stored: refused alike, nothing verified.
    let secret_id = ChunkId::of(&secret);
    let ghost = ChunkId::of(b"ghost");
    let mut texts = Vec::new();
    for id in [secret_id, ghost] {
        for _ in 0..50 {
            let e = coord
                .report_bad_replica(report(id, &nodes[0].node_id, "bad"))
                .await
                .unwrap_err();
            assert_eq!(e.code(), Code::PermissionDenied, "{e:?}");
            texts.push(e.message().replace(&id.to_hex(), "<id>"));
        }
    }
    texts.dedup();
    assert_eq!(texts.len(), 1, "{texts:?}");

    // Its own chunk, reported 100 times at once with a hostile reason: one verification.
    let mine_id = ChunkId::of(&mine);
    let forged = format!(
        "x\n2026-01-01T00:00:00Z ERROR forged line{}",
        "y".repeat(10_000)
    );
    let mut calls = Vec::new();
    for _ in 0..100 {
        let mut cc = coord.clone();
        let r = report(mine_id, &nodes[0].node_id, &forged);
        calls.push(tokio::spawn(async move { cc.report_bad_replica(r).await }));
    }
    for call in calls {
        call.await.unwrap().unwrap();
    }
    wait_until("the one verification", Duration::from_secs(20), || {
        verifies() == 1.0
    });
    let m = admin::scrape(&admin::admin_addr(&c, "coordinator"));
    let outcome = |k: &str| {
        admin::val(
            &m,
            &format!("dfsd_bad_replica_reports_total{{kind=\"{k}\"}}"),
        )
    };
    assert_eq!(outcome("verify"), 1.0);
    assert_eq!(outcome("pending") + outcome("cooldown"), 99.0);
    assert_eq!(outcome("refused"), 100.0);
    assert_eq!(verifies(), 1.0);
    // The reason reached the log escaped and cut short: no forged line, no 10 KB run.
    let log = c.log("coordinator");
    assert!(
        !log.lines()
            .any(|l| l.starts_with("2026-01-01T00:00:00Z ERROR forged")),
        "a report forged a log line"
    );
    assert!(log.contains("forged line"), "the report was not logged");
    assert!(
        !log.contains(&"y".repeat(500)),
        "the reason was not cut short"
    );
    // The replica is intact and stays on record: the file still reads.
    let mut got = Vec::new();
    sdk(&c, &tenant)
        .get("/tenant/m", &mut got, ReadRange::default())
        .await
        .unwrap();
    assert_eq!(got, mine);
}
