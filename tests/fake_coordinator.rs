//! Issue 12 review, finding 10: a datanode of a plaintext cluster (it has a join secret)
//! takes the chunk-token key only in the form sealed under that secret. Something else
//! answering at its `--join` address (a wrong address, a spoofed name) that hands it a
//! key in clear must not be able to sign orders the node obeys.
//!
//! The datanode is a real `dfsd datanode` process; the coordinator it joins is a Cluster
//! server in this test, which answers each registration as the test tells it.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use dfsd::chunk::ChunkId;
use dfsd::proto::pb;
use dfsd::security::join::JoinSecret;
use dfsd::security::token::{Op, TokenKey, WriteScope};
use testkit::procs::{eventually, start, Server};
use tonic::{Code, Request, Response, Status, Streaming};

const JOIN_SECRET: &str = "the-join-secret-of-this-test-0123";

/// How the fake answers a registration.
enum Answer {
    /// The token key in clear, as a coordinator with TLS (or without keys) sends it.
    Clear(TokenKey),
    /// Sealed under the join secret, as the cluster's real coordinator sends it.
    Sealed(TokenKey),
}

#[derive(Default)]
struct Seen {
    /// Registrations so far: (node id, advertised address).
    registered: Vec<(String, String)>,
    /// Answers for the next registrations, in order.
    answers: VecDeque<Answer>,
    /// Tell the node to register again at its next heartbeat.
    reregister: bool,
}

#[derive(Clone, Default)]
struct Fake(Arc<Mutex<Seen>>);

#[tonic::async_trait]
impl pb::cluster_server::Cluster for Fake {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = req.into_inner();
        let mut seen = self.0.lock().unwrap();
        let answer = seen
            .answers
            .pop_front()
            .ok_or_else(|| Status::unavailable("no answer planned"))?;
        seen.registered.push((req.node_id.clone(), req.addr));
        let (token_key, token_key_sealed) = match answer {
            Answer::Clear(k) => (Bytes::copy_from_slice(k.as_bytes()), Bytes::new()),
            Answer::Sealed(k) => (
                Bytes::new(),
                JoinSecret::new(JOIN_SECRET)
                    .seal_token_key(&req.node_id, k.as_bytes())
                    .into(),
            ),
        };
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 200,
            token_key,
            token_key_sealed,
            revoked: None,
        }))
    }

    async fn heartbeat(
        &self,
        _req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let reregister = std::mem::take(&mut self.0.lock().unwrap().reregister);
        Ok(Response::new(pb::HeartbeatResponse {
            reregister,
            ..Default::default()
        }))
    }

    async fn report_replicas(
        &self,
        _req: Request<pb::ReportReplicasRequest>,
    ) -> Result<Response<pb::ReportReplicasResponse>, Status> {
        Ok(Response::new(pb::ReportReplicasResponse {}))
    }

    async fn report_inventory(
        &self,
        req: Request<Streaming<pb::InventoryBatch>>,
    ) -> Result<Response<pb::InventoryResponse>, Status> {
        let mut stream = req.into_inner();
        while stream.message().await?.is_some() {}
        Ok(Response::new(pb::InventoryResponse::default()))
    }

    async fn report_corruption(
        &self,
        _req: Request<pb::ReportCorruptionRequest>,
    ) -> Result<Response<pb::ReportCorruptionResponse>, Status> {
        Ok(Response::new(pb::ReportCorruptionResponse::default()))
    }
}

impl Fake {
    fn plan(&self, a: Answer) {
        self.0.lock().unwrap().answers.push_back(a);
    }

    fn registrations(&self) -> usize {
        self.0.lock().unwrap().registered.len()
    }

    /// Plans `a` and has the node register again; waits until it did.
    async fn reregister_with(&self, a: Answer) {
        let before = self.registrations();
        self.plan(a);
        self.0.lock().unwrap().reregister = true;
        eventually(
            "the node to register again",
            Duration::from_secs(20),
            || async { self.registrations() > before },
        )
        .await;
    }

    fn node(&self) -> (String, String) {
        self.0.lock().unwrap().registered[0].clone()
    }
}

/// A datanode client over plaintext.
fn datanode(addr: &str) -> pb::datanode_client::DatanodeClient<tonic::transport::Channel> {
    let ch = dfsd::net::channel(addr, Duration::from_secs(3), None).unwrap();
    pb::datanode_client::DatanodeClient::new(ch)
}

/// ReadChunk of `id` with a read token signed by `key`: the bytes, or the refusal.
async fn read(addr: &str, key: &TokenKey, id: ChunkId) -> Result<Vec<u8>, Code> {
    let token = key.sign(Op::Read, &[id], Duration::from_secs(60));
    let mut stream = datanode(addr)
        .read_chunk(pb::ReadChunkRequest {
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

/// DeleteChunks of `id`, ordered with a token signed by `key`: the ids deleted.
async fn delete(addr: &str, key: &TokenKey, id: ChunkId) -> Result<Vec<String>, Code> {
    let token = key.sign(Op::Delete, &[id], Duration::from_secs(60));
    datanode(addr)
        .delete_chunks(pb::DeleteChunksRequest {
            chunk_ids: vec![id.to_hex()],
            protect_secs: 0,
            token,
        })
        .await
        .map(|r| r.into_inner().deleted)
        .map_err(|e| e.code())
}

/// Stores `data` on the node with a write token signed by `key`.
async fn write(addr: &str, node: &(String, String), key: &TokenKey, data: &[u8]) -> ChunkId {
    let id = ChunkId::of(data);
    let targets = vec![pb::NodeAddr {
        node_id: node.0.clone(),
        addr: node.1.clone(),
        public_addr: String::new(),
    }];
    let scope = WriteScope {
        owner: "",
        targets: vec![(node.0.as_str(), node.1.as_str())],
    };
    let header = pb::WriteChunkHeader {
        chunk_id: id.to_hex(),
        size: data.len() as u64,
        downstream: vec![],
        token: key.sign_write(id, &scope, Duration::from_secs(60)),
        owner: String::new(),
        targets,
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
    datanode(addr)
        .write_chunk(tokio_stream::iter(msgs))
        .await
        .expect("write with the sealed key");
    id
}

fn refusals(node: &Server) -> usize {
    node.log().matches("token key refused").count()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_datanode_with_a_join_secret_refuses_a_token_key_sent_in_clear() {
    let fake = Fake::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let coord = format!("http://{}", listener.local_addr().unwrap());
    let server = fake.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(pb::cluster_server::ClusterServer::new(server))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
            .await
    });
    let (forged, sealed, forged_again) = (
        TokenKey::generate(),
        TokenKey::generate(),
        TokenKey::generate(),
    );
    fake.plan(Answer::Clear(forged.clone()));

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("node");
    let env = [
        ("DFSD_TLS__PLAINTEXT", "true".to_string()),
        ("DFSD_DATANODE__RESERVE", "0".into()),
        ("DFSD_DATANODE__JOIN_SECRET", JOIN_SECRET.into()),
    ];
    let node = start(dir.path(), "node", &env, |addr| {
        vec![
            "datanode".into(),
            "--join".into(),
            coord.clone(),
            "--listen".into(),
            addr.into(),
            "--data-dir".into(),
            data.display().to_string(),
        ]
    });
    let addr = node.addr.clone();

    // An impostor's key in clear: refused, said so, and no request signed with it is
    // served (the node has no key at all, so it answers as a node not yet registered).
    eventually(
        "the refusal in the log",
        Duration::from_secs(20),
        || async { refusals(&node) == 1 },
    )
    .await;
    assert_eq!(fake.registrations(), 1);
    let log = node.log();
    assert!(log.contains("sent the token key in clear"), "{log}");
    let absent = ChunkId::of(b"not stored anywhere");
    assert_eq!(read(&addr, &forged, absent).await, Err(Code::Unavailable));
    assert_eq!(delete(&addr, &forged, absent).await, Err(Code::Unavailable));

    // The cluster's coordinator seals the key: taken, and it works (the check above did
    // not fail for some other reason).
    fake.reregister_with(Answer::Sealed(sealed.clone())).await;
    eventually("the sealed key in use", Duration::from_secs(20), || async {
        read(&addr, &sealed, absent).await == Err(Code::NotFound)
    })
    .await;
    let node_id = fake.node();
    let bytes = b"a chunk the forged key must not delete".to_vec();
    let id = write(&addr, &node_id, &sealed, &bytes).await;
    assert_eq!(read(&addr, &sealed, id).await, Ok(bytes.clone()));
    assert_eq!(
        delete(&addr, &forged, id).await,
        Err(Code::PermissionDenied)
    );

    // A key in clear at a later registration does not replace the good one.
    fake.reregister_with(Answer::Clear(forged_again.clone()))
        .await;
    eventually("the second refusal", Duration::from_secs(20), || async {
        refusals(&node) == 2
    })
    .await;
    for k in [&forged, &forged_again] {
        assert_eq!(delete(&addr, k, id).await, Err(Code::PermissionDenied));
        assert_eq!(read(&addr, k, id).await, Err(Code::PermissionDenied));
    }
    assert_eq!(read(&addr, &sealed, id).await, Ok(bytes));
    assert_eq!(delete(&addr, &sealed, id).await, Ok(vec![id.to_hex()]));
    assert_eq!(read(&addr, &sealed, id).await, Err(Code::NotFound));
}
