//! In-process tests of what a datanode tells the coordinator, over real gRPC: real
//! datanodes (`run_with`) against a coordinator that records what it is told (inventory
//! streams, including ones that break off, heartbeat contents, corruption reports), which
//! the real coordinator does not expose. Everything else runs against real clusters
//! through the test kit (testkit/; the datanode's answers to orders are in
//! tests/datanode_orders.rs).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};
use tonic::{Code, Request, Response, Status, Streaming};

use super::{run_with, DatanodeTuning};
use crate::chunk::ChunkId;
use crate::config::DatanodeConfig;
use crate::proto::pb;
use crate::security::token::{Op, TokenKey, WriteScope};

#[derive(Default)]
struct Seen {
    registrations: u32,
    /// Complete inventories: node id and chunk ids.
    inventories: Vec<(String, Vec<String>)>,
    corrupt: Vec<String>,
    /// Inventory batches received, and streams that broke off instead of ending.
    batches: u32,
    aborted_inventories: u32,
    scrub: Option<pb::ScrubProgress>,
    ask_inventory: bool,
}

/// The token key the fake coordinator hands out, so tests can sign their requests.
fn test_key() -> TokenKey {
    TokenKey::from_bytes(&[7u8; 32]).unwrap()
}

fn token(op: Op, ids: &[ChunkId]) -> String {
    test_key().sign(op, ids, Duration::from_secs(600))
}

#[derive(Clone, Default)]
struct FakeCoordinator(Arc<Mutex<Seen>>);

impl FakeCoordinator {
    fn seen<T>(&self, f: impl FnOnce(&mut Seen) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for FakeCoordinator {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let scrub = req.into_inner().stats.and_then(|s| s.scrub);
        self.seen(|s| {
            s.registrations += 1;
            s.scrub = scrub;
        });
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: 50,
            token_key: test_key().as_bytes().to_vec().into(),
            ..Default::default()
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let scrub = req.into_inner().stats.and_then(|s| s.scrub);
        let send_inventory = self.seen(|s| {
            s.scrub = scrub;
            std::mem::take(&mut s.ask_inventory)
        });
        Ok(Response::new(pb::HeartbeatResponse {
            send_inventory,
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
        /// Counts a stream that did not end cleanly, whether the handler saw an error or
        /// was cancelled (the server drops it when the client resets the stream).
        struct Unfinished(Option<FakeCoordinator>);
        impl Drop for Unfinished {
            fn drop(&mut self) {
                if let Some(c) = self.0.take() {
                    c.seen(|s| s.aborted_inventories += 1);
                }
            }
        }
        let mut unfinished = Unfinished(Some(self.clone()));
        let mut stream = req.into_inner();
        let (mut node, mut ids) = (String::new(), Vec::new());
        while let Some(batch) = stream.message().await? {
            self.seen(|s| s.batches += 1);
            node = batch.node_id;
            ids.extend(batch.chunks.into_iter().map(|c| c.chunk_id));
        }
        unfinished.0 = None;
        let added = ids.len() as u64;
        self.seen(|s| s.inventories.push((node, ids)));
        Ok(Response::new(pb::InventoryResponse {
            added,
            ..Default::default()
        }))
    }

    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Result<Response<pb::ReportCorruptionResponse>, Status> {
        let ids = req.into_inner().chunk_ids;
        self.seen(|s| s.corrupt.extend(ids));
        Ok(Response::new(pb::ReportCorruptionResponse {}))
    }
}

struct Node {
    id: String,
    addr: String,
    dir: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Node {
    fn client(&self) -> pb::datanode_client::DatanodeClient<Channel> {
        pb::datanode_client::DatanodeClient::new(
            crate::net::channel(&self.addr, Duration::from_secs(3), None).unwrap(),
        )
    }

    fn chunk_file(&self, id: &ChunkId) -> PathBuf {
        let h = id.to_hex();
        self.dir
            .join("chunks")
            .join(&h[..2])
            .join(&h[2..4])
            .join(&h)
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        self.task.await.unwrap().unwrap();
    }
}

struct Cluster {
    tmp: tempfile::TempDir,
    coordinator: FakeCoordinator,
    join: String,
}

impl Cluster {
    async fn new() -> Cluster {
        let coordinator = FakeCoordinator::default();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let join = format!("http://{}", l.local_addr().unwrap());
        let svc = pb::cluster_server::ClusterServer::new(coordinator.clone());
        tokio::spawn(
            Server::builder()
                .add_service(svc)
                .serve_with_incoming(TcpListenerStream::new(l)),
        );
        Cluster {
            tmp: tempfile::tempdir().unwrap(),
            coordinator,
            join,
        }
    }

    async fn node(&self, name: &str, tuning: DatanodeTuning) -> Node {
        let dir = self.tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", l.local_addr().unwrap());
        let cfg = DatanodeConfig {
            join: self.join.clone(),
            advertise: addr.clone(),
            data_dir: dir.clone(),
            capacity: 0,
            reserve: 0,
            ..Default::default()
        };
        let (tx, rx) = oneshot::channel::<()>();
        let registered = self.coordinator.seen(|s| s.registrations);
        let task = tokio::spawn(run_with(l, cfg, tuning, None, async {
            let _ = rx.await;
        }));
        let id_file = dir.join("node_id");
        wait_for("node id", || id_file.exists()).await;
        // Chunk requests need the token key, which comes with registration: wait until a
        // read of an absent chunk gets past the token check.
        wait_for("registration", || {
            self.coordinator.seen(|s| s.registrations) > registered
        })
        .await;
        let probe = ChunkId::of(b"probe");
        let ch = crate::net::channel(&addr, Duration::from_secs(3), None).unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let r = pb::datanode_client::DatanodeClient::new(ch.clone())
                .read_chunk(pb::ReadChunkRequest {
                    chunk_id: probe.to_hex(),
                    token: token(Op::Read, &[probe]),
                })
                .await;
            match r {
                Err(e) if e.code() == Code::Unavailable => {
                    assert!(Instant::now() < deadline, "node never got the token key");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                _ => break,
            }
        }
        let id = std::fs::read_to_string(&id_file)
            .unwrap()
            .trim()
            .to_string();
        Node {
            id,
            addr,
            dir,
            stop: Some(tx),
            task,
        }
    }
}

async fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn write(node: &Node, data: &[u8]) -> ChunkId {
    let id = ChunkId::of(data);
    let header = pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::Header(pb::WriteChunkHeader {
            chunk_id: id.to_hex(),
            size: data.len() as u64,
            downstream: vec![],
            token: test_key().sign_write(
                id,
                &WriteScope {
                    owner: "",
                    targets: vec![(node.id.as_str(), node.addr.as_str())],
                },
                Duration::from_secs(600),
            ),
            owner: String::new(),
            targets: vec![pb::NodeAddr {
                node_id: node.id.clone(),
                addr: node.addr.clone(),
                public_addr: String::new(),
            }],
        })),
    };
    let body = pb::WriteChunkRequest {
        msg: Some(pb::write_chunk_request::Msg::Data(Bytes::copy_from_slice(
            data,
        ))),
    };
    let resp = node
        .client()
        .write_chunk(tokio_stream::iter(vec![
            header,
            body,
            pb::WriteChunkRequest {
                msg: Some(pb::write_chunk_request::Msg::End(true)),
            },
        ]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.stored_on, vec![node.id.clone()]);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventories_follow_registration_and_requests_and_scrub_reports_corruption() {
    let c = Cluster::new().await;
    let tuning = DatanodeTuning {
        scrub_start_delay: Duration::from_secs(86_400),
        ..Default::default()
    };
    let n = c.node("n", tuning.clone()).await;
    // The first inventory follows registration, even for an empty node.
    let inv = |c: &Cluster| c.coordinator.seen(|s| s.inventories.clone());
    wait_for("first inventory", || inv(&c).len() == 1).await;
    assert_eq!(inv(&c)[0], (n.id.clone(), vec![]));
    let good = write(&n, b"good chunk").await;
    let bad = write(&n, b"chunk about to rot").await;
    // A heartbeat answer asks for another.
    c.coordinator.seen(|s| s.ask_inventory = true);
    wait_for("requested inventory", || inv(&c).len() == 2).await;
    let mut listed = inv(&c)[1].1.clone();
    listed.sort();
    let mut expect = vec![good.to_hex(), bad.to_hex()];
    expect.sort();
    assert_eq!(listed, expect);
    let bad_file = n.chunk_file(&bad);
    n.stop().await;

    // Restarted with scrubbing: the rotten chunk is reported and the pass's inventory
    // no longer lists it.
    std::fs::write(bad_file, b"chunk about to rox").unwrap();
    let scrubbing = DatanodeTuning {
        scrub_start_delay: Duration::ZERO,
        ..tuning
    };
    let n = c.node("n", scrubbing).await;
    wait_for("corruption report", || {
        c.coordinator.seen(|s| s.corrupt.contains(&bad.to_hex()))
    })
    .await;
    wait_for("inventory after the pass", || {
        inv(&c)
            .last()
            .is_some_and(|(_, ids)| ids == &vec![good.to_hex()])
    })
    .await;
    wait_for("scrub progress in heartbeats", || {
        c.coordinator.seen(|s| {
            s.scrub
                .is_some_and(|p| p.checked == 2 && p.errors == 1 && p.last_pass_ms > 0)
        })
    })
    .await;
    assert!(c.coordinator.seen(|s| s.registrations) >= 2);
    n.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_walk_failing_halfway_resets_the_stream_instead_of_ending_it() {
    let c = Cluster::new().await;
    let channel = crate::security::join::cluster_channel(
        crate::net::channel(&c.join, Duration::from_secs(3), None).unwrap(),
        Default::default(),
    );
    let coordinator = c.coordinator.clone();
    let (_running, stop) = tokio::sync::watch::channel(false);
    let result = super::inventory::stream_inventory(channel, stop, move |tx, _complete| {
        let batch = pb::InventoryBatch {
            node_id: "dn-a".into(),
            chunks: vec![pb::InventoryChunk {
                chunk_id: ChunkId::of(b"x").to_hex(),
                size: 1,
                age_secs: 0,
            }],
            last: false,
        };
        tx.blocking_send(batch).unwrap();
        // Fail only once the coordinator is reading the stream.
        let deadline = Instant::now() + Duration::from_secs(20);
        while coordinator.seen(|s| s.batches) == 0 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        Err(super::store::StoreError::Io {
            what: "list chunks".into(),
            source: std::io::Error::other("disk gone"),
        })
    })
    .await;
    assert!(result.is_err());
    wait_for("the coordinator to see the stream break", || {
        c.coordinator.seen(|s| s.aborted_inventories == 1)
    })
    .await;
    assert!(
        c.coordinator.seen(|s| s.inventories.is_empty()),
        "a partial inventory must never look complete"
    );
}
