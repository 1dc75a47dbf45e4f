//! The datanode role: stores chunks on local disk, streams them, forwards them along write
//! pipelines, and keeps the coordinator informed (registration, heartbeats, replica
//! reports).
//!
//! - `store/`: the [`store::ChunkStore`] trait and its implementation on a local disk.
//! - `service.rs`: the gRPC service: decodes requests, calls the parts below, encodes
//!   answers.
//! - `pipeline.rs`: the pipelined write (store here, forward to the next node, ack).
//! - `local.rs`: storing a chunk on this node and acknowledging it (writes and repairs).
//! - `peer.rs`: the gRPC calls to other datanodes (forwarding writes, reading chunks).
//! - `replicate.rs`: pulling a chunk from a peer on the coordinator's order (repair).
//! - `acks.rs`: protection of recently acknowledged chunks against deletion orders.
//! - `throttle.rs`: the token bucket that rate-limits background traffic.
//! - `heartbeat.rs`: registration and heartbeats.
//! - `cluster.rs`: the coordinator calls of the background work below.
//! - `reporter.rs`: batched replica reports to the coordinator.
//! - `inventory.rs`: full chunk inventories streamed to the coordinator.
//! - `scrub.rs`: the background re-hashing of every chunk.
//!
//! Background loops (heartbeat, inventory, scrub) run until the server stops; they share
//! one pattern: a timer, a wake-up [`tokio::sync::Notify`] and a shutdown `watch`.

pub(crate) mod acks;
pub(crate) mod cluster;
#[cfg(test)]
mod e2e_tests;
mod heartbeat;
mod inventory;
mod local;
pub(crate) mod peer;
pub(crate) mod pipeline;
pub(crate) mod replicate;
mod reporter;
pub mod scrub;
mod service;
pub mod store;
mod throttle;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::AtomicU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Server;

use crate::config::DatanodeConfig;
use crate::conn_limit;
use crate::net::{channel, ChannelCache, MAX_MESSAGE_BYTES};
use crate::proto::pb;
use crate::security::files::{self, Privacy};
use crate::security::join::{self, JoinProof};
use crate::security::revoke::Revoked;
use crate::security::token::TokenKey;
use crate::security::{Role, Tls};
use heartbeat::{heartbeat_loop, Heartbeats};
use local::LocalStore;
use reporter::Reporter;
use scrub::ScrubProgress;
use store::disk::DiskStore;
use store::ChunkStore;

/// Deadline the server puts on every call: a chunk transfer at a crawl still fits, a
/// stalled one does not hold its resources for ever.
const CALL_TIMEOUT: Duration = Duration::from_secs(600);
/// Concurrent calls (HTTP/2 streams) one connection may have open.
const MAX_STREAMS_PER_CONNECTION: u32 = 256;

/// Knobs of the datanode's background work, apart from [`DatanodeConfig`] so tests and
/// embedders can tune them; [`run`] uses the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatanodeTuning {
    /// Bytes per second all replication pulls on this node share; 0 = unlimited.
    pub replication_rate: u64,
    /// Replication pulls at once (at least 1); further orders wait for a slot.
    pub replication_concurrency: usize,
    /// How often a full inventory is sent unasked; zero = only when asked (registration,
    /// coordinator request, end of a scrub pass).
    pub inventory_interval: Duration,
    /// Bytes per second the scrubber reads; 0 = unlimited.
    pub scrub_rate: u64,
    /// Time from the start of one scrub pass to the start of the next (longer passes are
    /// followed by the next at once).
    pub scrub_period: Duration,
    /// Wait after start-up before scrubbing, so a restarting cluster is not slowed by it.
    pub scrub_start_delay: Duration,
}

impl From<&DatanodeConfig> for DatanodeTuning {
    fn from(cfg: &DatanodeConfig) -> Self {
        DatanodeTuning {
            replication_rate: cfg.replication_rate,
            inventory_interval: cfg.inventory_interval,
            scrub_rate: cfg.scrub_rate,
            scrub_period: cfg.scrub_period,
            scrub_start_delay: cfg.scrub_start_delay,
            ..DatanodeTuning::default()
        }
    }
}

impl Default for DatanodeTuning {
    fn default() -> Self {
        DatanodeTuning {
            replication_rate: 200 * 1024 * 1024,
            replication_concurrency: 4,
            inventory_interval: Duration::from_secs(3600),
            scrub_rate: 32 * 1024 * 1024,
            scrub_period: Duration::from_secs(7 * 24 * 3600),
            scrub_start_delay: Duration::from_secs(60),
        }
    }
}

/// Loads the node's id from `<data_dir>/node_id`, creating it on first start, so a node
/// keeps its identity (and its chunks keep counting) across restarts.
pub fn load_or_create_node_id(data_dir: &Path) -> anyhow::Result<String> {
    let path = data_dir.join("node_id");
    match std::fs::read_to_string(&path) {
        Ok(s) => {
            let id = s.trim().to_string();
            crate::wire_error::check_node_id(&id)
                .map_err(|e| anyhow::anyhow!("{}: {}", path.display(), e.message()))?;
            Ok(id)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = format!("dn-{:016x}", rand::random::<u64>());
            let tmp = data_dir.join("node_id.tmp");
            let _ = std::fs::remove_file(&tmp);
            let mut f = files::create_new_private(&tmp)
                .with_context(|| format!("create {}", tmp.display()))?;
            writeln!(f, "{id}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(data_dir)?.sync_all()?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("read {}", path.display())),
    }
}

/// Holds an exclusive lock on the data dir for the life of the node, so two datanodes
/// never share one.
fn lock_data_dir(data_dir: &Path) -> anyhow::Result<std::fs::File> {
    use std::os::unix::io::AsRawFd;
    let path = data_dir.join("LOCK");
    let f = files::private_options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    // SAFETY: flock on a file descriptor we own.
    let rc = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc != 0 {
        anyhow::bail!(
            "data dir {} is in use by another datanode",
            data_dir.display()
        );
    }
    Ok(f)
}

fn advertise_addr(cfg: &DatanodeConfig, local: SocketAddr) -> String {
    if !cfg.advertise.is_empty() {
        return crate::config::endpoint_uri(&cfg.advertise);
    }
    // A wildcard address is filled in by the coordinator with the address it sees us at.
    format!("http://{local}")
}

/// The token key, once the coordinator has handed it over at registration.
pub type TokenSlot = Arc<RwLock<Option<TokenKey>>>;

/// Sets the gauges that mirror the store and the scrubber before a scrape.
fn refresh_gauges(
    store: Arc<dyn ChunkStore>,
    scrub: Arc<ScrubProgress>,
) -> crate::admin_http::Refresh {
    Arc::new(move || {
        let m = crate::metrics::datanode();
        let s = store.stats();
        crate::metrics::set(&m.chunks, s.chunk_count);
        crate::metrics::set(&m.capacity_bytes, s.capacity_bytes);
        crate::metrics::set(&m.used_bytes, s.used_bytes);
        crate::metrics::set(&m.free_bytes, s.free_bytes);
        let p = scrub.to_pb();
        crate::metrics::set(&m.scrub_checked, p.checked);
        crate::metrics::set(&m.scrub_total, p.total);
        crate::metrics::set(&m.scrub_errors, p.errors);
        m.scrub_last_pass.set(p.last_pass_ms / 1000);
        Box::pin(async {})
    })
}

/// Serves a datanode on `listener` until `shutdown` resolves, with the default tuning.
/// `tls` is `None` only when plaintext was chosen (the caller has warned).
pub async fn run(
    listener: TcpListener,
    cfg: DatanodeConfig,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let tuning = DatanodeTuning::from(&cfg);
    run_with(listener, cfg, tuning, tls, shutdown).await
}

/// Takes the data dir (created if needed, locked for the life of the node, checked for
/// privacy) and opens the node id and the chunk store in it.
fn open_data_dir(
    cfg: &DatanodeConfig,
) -> anyhow::Result<(std::fs::File, String, Arc<dyn ChunkStore>)> {
    files::create_private_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let mut privacy = Privacy::default();
    privacy.check(&cfg.data_dir);
    let lock = lock_data_dir(&cfg.data_dir)?;
    let node_id = load_or_create_node_id(&cfg.data_dir)?;
    for name in [
        "LOCK",
        "node_id",
        scrub::STATE_FILE,
        "chunks",
        "tmp",
        "quarantine",
    ] {
        privacy.check(&cfg.data_dir.join(name));
    }
    let disk =
        DiskStore::open(&cfg.data_dir, cfg.capacity, cfg.reserve).context("open chunk store")?;
    if disk.made_private() > 0 {
        privacy.note(format!(
            "{} chunk files and fan-out directories",
            disk.made_private()
        ));
    }
    privacy.report("datanode");
    Ok((lock, node_id, disk))
}

/// Serves `svc` on `listener` until `shutdown` resolves, with the datanode's limits.
async fn serve(
    listener: TcpListener,
    cfg: &DatanodeConfig,
    server_tls: Option<tonic::transport::ServerTlsConfig>,
    svc: service::DatanodeService,
    revoked: Revoked,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let layer = crate::grpc_layer::GrpcMetricsLayer::for_node(&svc.node_id);
    let server = pb::datanode_server::DatanodeServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Revoked certificates are refused on every call, whoever presents them.
    let server = InterceptedService::new(server, move |req: tonic::Request<()>| {
        revoked.check(&req)?;
        Ok(req)
    });
    let mut builder = Server::builder();
    if let Some(t) = server_tls {
        builder = builder
            .tls_config(t.timeout(conn_limit::TLS_HANDSHAKE_TIMEOUT))
            .context("datanode TLS settings")?;
    }
    // As on the coordinator: limits, TCP_NODELAY and stalled peers through conn_limit.
    let limiter = conn_limit::Limiter::new(
        "datanode",
        conn_limit::Limits {
            total: cfg.max_connections,
            per_ip: cfg.max_connections_per_ip,
        },
    );
    let keepalive = conn_limit::grpc_keepalive(cfg.idle_timeout);
    builder
        .timeout(CALL_TIMEOUT)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(crate::coordinator::MAX_HEADER_LIST_BYTES)
        .layer(layer)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .add_service(server)
        .serve_with_incoming_shutdown(
            conn_limit::grpc_incoming(listener, limiter, cfg.idle_timeout),
            shutdown,
        )
        .await
        .context("datanode server")
}

/// Serves a datanode on `listener` until `shutdown` resolves, then stops its background
/// workers.
pub async fn run_with(
    listener: TcpListener,
    cfg: DatanodeConfig,
    tuning: DatanodeTuning,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server_tls = tls.as_ref().map(Tls::server).transpose()?;
    let (_lock, node_id, store) = open_data_dir(&cfg)?;
    let local = listener.local_addr()?;
    let addr = advertise_addr(&cfg, local);
    let public_addr = match cfg.public_advertise.as_str() {
        "" => String::new(),
        a => crate::config::endpoint_uri(a),
    };
    let (coordinator, proof) = coordinator_channel(&cfg, tls.as_ref())?;
    let stats = store.stats();
    tracing::info!(node = %node_id, listen = %local, advertise = %addr, public_addr, chunks = stats.chunk_count,
        used = stats.used_bytes, "datanode listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let cluster = cluster::Cluster::new(coordinator.clone());
    let reporter = Reporter::spawn(node_id.clone(), cluster.clone());
    let (inventory, inventory_task) = inventory::spawn(
        node_id.clone(),
        store.clone(),
        cluster.clone(),
        tuning.inventory_interval,
        stop_rx.clone(),
    );
    let (scrubber, scrub_task) = scrub::spawn(
        node_id.clone(),
        store.clone(),
        &cfg.data_dir,
        cluster,
        inventory.clone(),
        &tuning,
        stop_rx,
    );
    crate::metrics::datanode();
    let admin = crate::admin_http::bind(&cfg.admin_listen).await?.map(|l| {
        crate::admin_http::spawn(
            l,
            axum::Router::new(),
            refresh_gauges(store.clone(), scrubber.progress().clone()),
        )
    });
    let active = Arc::new(AtomicU32::new(0));
    let tokens = TokenSlot::default();
    let revoked = Revoked::default();
    let hb = tokio::spawn(heartbeat_loop(Heartbeats {
        node_id: node_id.clone(),
        addr,
        public_addr,
        store: store.clone(),
        coordinator,
        inventory,
        scrub: scrubber.progress().clone(),
        active: active.clone(),
        tokens: tokens.clone(),
        revoked: revoked.clone(),
        proof,
        tls_on: tls.is_some(),
    }));
    let local = LocalStore {
        node_id,
        store,
        recent: Default::default(),
        reporter,
    };
    let svc = datanode_service(local, tls.as_ref(), &tuning, tokens, active);
    let result = serve(listener, &cfg, server_tls, svc, revoked, shutdown).await;
    hb.abort();
    if let Some(a) = admin {
        a.abort();
    }
    stop_workers(stop_tx, [inventory_task, scrub_task]).await;
    tracing::info!("datanode stopped");
    result
}

/// Tells the background workers to stop. They stop between chunks; one still hashing a
/// chunk gets a moment to finish before it is abandoned.
async fn stop_workers(stop: watch::Sender<bool>, tasks: [tokio::task::JoinHandle<()>; 2]) {
    let _ = stop.send(true);
    for task in tasks {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}

/// The channel to the coordinator. Every cluster call on it proves the join secret, when
/// one is set (plaintext clusters).
fn coordinator_channel(
    cfg: &DatanodeConfig,
    tls: Option<&Tls>,
) -> anyhow::Result<(join::ClusterChannel, JoinProof)> {
    let coordinator = channel(
        &cfg.join,
        Duration::from_secs(3),
        tls.map(|t| t.client(Role::Coordinator)),
    )
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    let proof = JoinProof::new(&cfg.join_secret);
    Ok((join::cluster_channel(coordinator, proof.clone()), proof))
}

/// The gRPC service over this node's chunks: writes through the pipeline, repairs through
/// the replicator, both storing through `local`.
fn datanode_service(
    local: LocalStore,
    tls: Option<&Tls>,
    tuning: &DatanodeTuning,
    tokens: TokenSlot,
    active: Arc<AtomicU32>,
) -> service::DatanodeService {
    let peers = ChannelCache::new(Duration::from_secs(3), tls);
    let limits =
        replicate::Replication::new(tuning.replication_rate, tuning.replication_concurrency);
    service::DatanodeService {
        node_id: local.node_id.clone(),
        store: local.store.clone(),
        recent: local.recent.clone(),
        pipeline: pipeline::WritePipeline::new(local.clone(), peers.clone()),
        replicator: replicate::Replicator::new(local, peers, limits),
        tokens,
        tls_on: tls.is_some(),
        active,
    }
}
