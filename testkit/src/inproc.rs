//! An in-process cluster: the coordinator and every datanode run as tokio tasks in the
//! test process (`coordinator::run`, `datanode::run_with`), each on a listener bound to
//! `127.0.0.1:0`, with a real SQLite file and real chunk directories in a temporary
//! directory, speaking real gRPC over loopback. Plaintext, without access keys (as
//! `dfsd dev`): the process harness ([`TestCluster`](crate::TestCluster)) covers TLS and
//! keys.
//!
//! Each datanode is known to the cluster by the address of a [`Relay`] in front of it,
//! and reaches the coordinator through a relay of its own, so faults are made on the
//! network path: [`pause_node`](InProcCluster::pause_node) (connections held, no bytes
//! move), [`cut_off`](InProcCluster::cut_off) (every connection of the node closed, in
//! and out), [`kill_node`](InProcCluster::kill_node) (the server and its background
//! tasks stopped) and [`corrupt_replica`](InProcCluster::corrupt_replica) (a chunk file
//! rewritten on disk). Every wait is bounded by a deadline.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dfsd::chunk::ChunkId;
use dfsd::client::Client;
use dfsd::config::{ClientConfig, CoordinatorConfig, DatanodeConfig};
use dfsd::coordinator::secrets::{SecretsFile, FILE_NAME};
use dfsd::datanode::DatanodeTuning;
use dfsd::proto::pb;
use dfsd::security::token::{Op, TokenKey};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::eventually;
use crate::relay::{Mode, Relay};

/// How long start-ups and restarts may take before the test fails.
const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// The shape of an in-process cluster.
#[derive(Clone, Debug)]
pub struct InProcOpts {
    pub nodes: usize,
    /// The coordinator's settings; `data_dir`, `listen`, `auth` and `admin_listen` are
    /// the kit's. The default has fast heartbeats (200 ms), a node suspect after 2 s of
    /// silence and dead after 5 s.
    pub coordinator: CoordinatorConfig,
    /// Every datanode's background work; the default never scrubs.
    pub tuning: DatanodeTuning,
}

impl Default for InProcOpts {
    fn default() -> Self {
        InProcOpts {
            nodes: 3,
            coordinator: CoordinatorConfig {
                replication: 3,
                heartbeat_interval: Duration::from_millis(200),
                suspect_after: Duration::from_secs(2),
                dead_after: Duration::from_secs(5),
                ..CoordinatorConfig::default()
            },
            tuning: DatanodeTuning {
                scrub_start_delay: Duration::from_secs(86_400),
                ..DatanodeTuning::default()
            },
        }
    }
}

/// A server task and the signal that stops it.
struct Running {
    stop: oneshot::Sender<()>,
    task: JoinHandle<anyhow::Result<()>>,
}

impl Running {
    fn spawn<F>(run: impl FnOnce(oneshot::Receiver<()>) -> F) -> Running
    where
        F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let (stop, rx) = oneshot::channel();
        Running {
            stop,
            task: tokio::spawn(run(rx)),
        }
    }

    /// Stops the server gracefully; one that does not stop within 10 s is aborted.
    async fn stop(self) {
        let _ = self.stop.send(());
        let abort = self.task.abort_handle();
        match tokio::time::timeout(Duration::from_secs(10), self.task).await {
            Ok(Ok(r)) => r.expect("server stopped with an error"),
            Ok(Err(e)) => panic!("server task: {e}"),
            Err(_) => abort.abort(),
        }
    }

    /// Fails the test if the server has already ended (it could not start).
    fn check_running(&self, what: &str) {
        assert!(!self.task.is_finished(), "{what} stopped unexpectedly");
    }
}

/// One in-process datanode.
pub struct InProcNode {
    /// Its node id (from its data dir, so it survives restarts).
    pub id: String,
    /// `http://127.0.0.1:port` of its relay: the address the cluster and clients use.
    pub addr: String,
    pub dir: PathBuf,
    /// In front of the node: clients and peers dial this.
    front: Relay,
    /// The node's own way to the coordinator.
    to_coordinator: Relay,
    server: Option<Running>,
}

pub struct InProcCluster {
    pub dir: tempfile::TempDir,
    pub opts: InProcOpts,
    /// `http://127.0.0.1:port`, bound by the coordinator (port 0 at first start).
    pub coordinator_addr: String,
    coordinator_bound: SocketAddr,
    coordinator: Option<Running>,
    pub nodes: Vec<InProcNode>,
}

impl InProcCluster {
    /// `nodes` datanodes, replication `min(3, nodes)`.
    pub async fn start(nodes: usize) -> InProcCluster {
        let mut opts = InProcOpts {
            nodes,
            ..InProcOpts::default()
        };
        opts.coordinator.replication = 3.min(nodes as u32);
        Self::start_with(opts).await
    }

    /// Starts the coordinator and every datanode, and waits until each node is alive and
    /// serving chunk requests.
    pub async fn start_with(opts: InProcOpts) -> InProcCluster {
        let dir = tempfile::Builder::new()
            .prefix("dfsd-inproc-")
            .tempdir()
            .unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let mut c = InProcCluster {
            dir,
            coordinator_addr: format!("http://{bound}"),
            coordinator_bound: bound,
            coordinator: None,
            nodes: Vec::new(),
            opts,
        };
        c.run_coordinator(listener);
        for i in 0..c.opts.nodes {
            let node = c.add_node(i).await;
            c.nodes.push(node);
        }
        c.wait_alive(c.opts.nodes).await;
        c.wait_serving().await;
        c
    }

    pub fn coordinator_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    fn run_coordinator(&mut self, listener: TcpListener) {
        let cfg = CoordinatorConfig {
            data_dir: self.coordinator_dir(),
            listen: self.coordinator_bound.to_string(),
            auth: false,
            admin_listen: String::new(),
            ..self.opts.coordinator.clone()
        };
        self.coordinator = Some(Running::spawn(|rx| {
            dfsd::coordinator::run(listener, cfg, None, async {
                let _ = rx.await;
            })
        }));
    }

    /// Stops the coordinator (its port closes: calls to it are refused).
    pub async fn kill_coordinator(&mut self) {
        if let Some(r) = self.coordinator.take() {
            r.stop().await;
        }
    }

    /// Starts the coordinator again on its old port, from its data dir.
    pub async fn start_coordinator(&mut self) {
        let addr = self.coordinator_bound;
        let mut listener = None;
        eventually("the coordinator's old port", READY_TIMEOUT, || {
            let l = std::net::TcpListener::bind(addr);
            let ok = l.is_ok();
            listener = l.ok();
            async move { ok }
        })
        .await;
        let l = listener.unwrap();
        l.set_nonblocking(true).unwrap();
        self.run_coordinator(TcpListener::from_std(l).unwrap());
    }

    fn node_config(&self, dir: &Path, front: &Relay, to_coordinator: &Relay) -> DatanodeConfig {
        DatanodeConfig {
            join: format!("http://{}", to_coordinator.addr()),
            advertise: format!("http://{}", front.addr()),
            data_dir: dir.to_path_buf(),
            capacity: 0,
            reserve: 0,
            admin_listen: String::new(),
            ..DatanodeConfig::default()
        }
    }

    async fn add_node(&self, i: usize) -> InProcNode {
        let dir = self.dir.path().join(format!("node-{i}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let front = Relay::start(listener.local_addr().unwrap()).await;
        let to_coordinator = Relay::start(self.coordinator_bound).await;
        let server = self.run_node(listener, &dir, &front, &to_coordinator);
        let id_file = dir.join("node_id");
        eventually("a datanode's id", READY_TIMEOUT, || {
            server.check_running("a datanode");
            let exists = id_file.exists();
            async move { exists }
        })
        .await;
        InProcNode {
            id: std::fs::read_to_string(&id_file)
                .unwrap()
                .trim()
                .to_string(),
            addr: format!("http://{}", front.addr()),
            dir,
            front,
            to_coordinator,
            server: Some(server),
        }
    }

    fn run_node(
        &self,
        listener: TcpListener,
        dir: &Path,
        front: &Relay,
        to_coordinator: &Relay,
    ) -> Running {
        let cfg = self.node_config(dir, front, to_coordinator);
        let tuning = self.opts.tuning.clone();
        Running::spawn(|rx| {
            dfsd::datanode::run_with(listener, cfg, tuning, None, async {
                let _ = rx.await;
            })
        })
    }

    /// Stops datanode `i`: its connections close at once, then its server and its
    /// background tasks stop. Its relay stays, closing every connection, until a restart.
    pub async fn kill_node(&mut self, i: usize) {
        let n = &mut self.nodes[i];
        n.front.set_mode(Mode::Cut);
        n.to_coordinator.set_mode(Mode::Cut);
        if let Some(r) = n.server.take() {
            r.stop().await;
        }
    }

    /// Starts datanode `i` again from its data dir, on a fresh port behind its old relay
    /// (so at its old address), and waits until it serves.
    pub async fn restart_node(&mut self, i: usize) {
        self.kill_node(i).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let n = &self.nodes[i];
        n.front.set_upstream(listener.local_addr().unwrap());
        let server = self.run_node(listener, &n.dir, &n.front, &n.to_coordinator);
        let n = &mut self.nodes[i];
        n.server = Some(server);
        n.front.set_mode(Mode::Open);
        n.to_coordinator.set_mode(Mode::Open);
        self.wait_serving().await;
    }

    /// Datanode `i` stops answering without closing anything: calls to it hang, and its
    /// heartbeats stop reaching the coordinator.
    pub fn pause_node(&self, i: usize) {
        self.nodes[i].front.set_mode(Mode::Paused);
        self.nodes[i].to_coordinator.set_mode(Mode::Paused);
    }

    /// Datanode `i` is cut off the network: every connection to or from it closes and new
    /// ones are closed at once (the node itself keeps running).
    pub fn cut_off(&self, i: usize) {
        self.nodes[i].front.set_mode(Mode::Cut);
        self.nodes[i].to_coordinator.set_mode(Mode::Cut);
    }

    /// Undoes [`pause_node`](Self::pause_node) or [`cut_off`](Self::cut_off).
    pub fn reconnect(&self, i: usize) {
        self.nodes[i].front.set_mode(Mode::Open);
        self.nodes[i].to_coordinator.set_mode(Mode::Open);
    }

    /// The file of chunk `id` on datanode `i`, if it holds one.
    pub fn chunk_file(&self, i: usize, id: &ChunkId) -> Option<PathBuf> {
        let hex = id.to_hex();
        let mut stack = vec![self.nodes[i].dir.join("chunks")];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else if p.file_name().is_some_and(|f| *f == *hex) {
                    return Some(p);
                }
            }
        }
        None
    }

    /// The indexes of the datanodes holding a replica of `id`.
    pub fn holders(&self, id: &ChunkId) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| self.chunk_file(i, id).is_some())
            .collect()
    }

    /// Rots datanode `i`'s replica of `id` on disk: same length, one byte flipped, so only
    /// its hash tells. Panics if the node holds no replica.
    pub fn corrupt_replica(&self, i: usize, id: &ChunkId) {
        let path = self
            .chunk_file(i, id)
            .unwrap_or_else(|| panic!("node {i} holds no replica of {id}"));
        let mut bytes = std::fs::read(&path).unwrap();
        let at = bytes.len() / 2;
        bytes[at] ^= 0x40;
        std::fs::write(&path, bytes).unwrap();
    }

    pub fn client_config(&self) -> ClientConfig {
        ClientConfig {
            coordinator: self.coordinator_addr.clone(),
            ..ClientConfig::default()
        }
    }

    /// An SDK client of this cluster (plaintext, no key).
    pub fn client(&self) -> Client {
        Client::connect(&self.client_config(), None).unwrap()
    }

    /// The key chunk tokens are signed with, from the coordinator's secrets file.
    pub fn token_key(&self) -> TokenKey {
        SecretsFile::read(&self.coordinator_dir().join(FILE_NAME))
            .unwrap()
            .expect("the coordinator's secrets file")
            .token_key()
            .unwrap()
    }

    /// Waits until the coordinator counts `n` datanodes alive.
    pub async fn wait_alive(&self, n: usize) {
        let client = self.client();
        eventually(&format!("{n} alive datanodes"), READY_TIMEOUT, || {
            if let Some(c) = &self.coordinator {
                c.check_running("the coordinator");
            }
            let client = client.clone();
            async move {
                client.nodes().await.is_ok_and(|nodes| {
                    nodes
                        .iter()
                        .filter(|n| n.state == Some(dfsd::model::NodeState::Alive))
                        .count()
                        >= n
                })
            }
        })
        .await;
    }

    /// Waits until every running datanode has its token key (which arrives with
    /// registration): a read of an absent chunk gets NotFound, not Unavailable.
    pub async fn wait_serving(&self) {
        let probe = ChunkId::of(b"readiness probe");
        let token = self
            .token_key()
            .sign(Op::Read, &[probe], Duration::from_secs(60));
        for n in self.nodes.iter().filter(|n| n.server.is_some()) {
            let ch = dfsd::net::channel(&n.addr, Duration::from_secs(3), None).unwrap();
            eventually("a datanode ready for chunk requests", READY_TIMEOUT, || {
                let (ch, token) = (ch.clone(), token.clone());
                async move {
                    let r = pb::datanode_client::DatanodeClient::new(ch)
                        .read_chunk(pb::ReadChunkRequest {
                            chunk_id: probe.to_hex(),
                            token,
                        })
                        .await;
                    matches!(r, Err(e) if e.code() == tonic::Code::NotFound)
                }
            })
            .await;
        }
    }
}

impl Drop for InProcCluster {
    fn drop(&mut self) {
        // Dropping the stop signals shuts every server down; the runtime ending with the
        // test reaps whatever is left.
        for n in &mut self.nodes {
            if let Some(r) = n.server.take() {
                drop(r.stop);
            }
        }
        if let Some(r) = self.coordinator.take() {
            drop(r.stop);
        }
    }
}
