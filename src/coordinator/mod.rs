//! The coordinator role: owns the namespace and all metadata (in SQLite), places chunks,
//! commits files, tracks datanode health. It never stores file bytes.
//!
//! - `service.rs`: the gRPC services (client API and cluster API), translation only.
//! - `health.rs`: node states from heartbeats.
//! - `placement.rs`: choosing target datanodes.
//! - `repair.rs`: the maintenance worker (re-replication, trimming, garbage collection).

mod admin;
pub mod events;
mod health;
mod observe;
mod placement;
mod repair;
mod service;
mod status_page;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

pub use health::{NodeState, NodeTable, NodeView, ScrubInfo};
pub use placement::{choose, Candidate};
pub use repair::Maintenance;

use crate::config::CoordinatorConfig;
use crate::meta::{self, Store};
use crate::net::{ChannelCache, MAX_MESSAGE_BYTES};
use crate::path::DfsPath;
use crate::proto::pb;

/// An upload in flight. Kept in memory: a coordinator restart forgets it, and the client
/// starts a new one (its chunks are then found already stored).
#[derive(Debug, Clone)]
pub struct Upload {
    pub path: DfsPath,
    pub replication: u32,
    pub write_quorum: u32,
    pub no_clobber: bool,
    pub started: Instant,
    /// Last placement: an upload quiet for longer than `upload_idle_timeout` is abandoned.
    pub last_active: Instant,
    /// Chunks placed for this upload: garbage collection leaves them alone while the
    /// upload is in flight, whatever the grace period.
    pub chunks: HashSet<crate::chunk::ChunkId>,
}

/// Everything the coordinator's services share.
pub struct State {
    pub cfg: CoordinatorConfig,
    pub store: Store,
    pub nodes: NodeTable,
    pub uploads: Mutex<HashMap<String, Upload>>,
    /// Channels to datanodes, for orders such as "verify this chunk".
    pub peers: ChannelCache,
    /// Re-replication, trimming and GC.
    pub maint: Maintenance,
    /// Nodes whose full inventory arrived since this coordinator started.
    pub inventoried: Mutex<HashSet<String>>,
    /// When each node was last asked for an inventory.
    pub inventory_asked: Mutex<HashMap<String, Instant>>,
    pub started: Instant,
    safe_mode: AtomicBool,
    /// Cluster events: stored, broadcast to `dfsd events` followers.
    pub events: events::Events,
    /// Node-state transitions, turned into events.
    pub node_watch: events::NodeWatch,
}

impl State {
    pub fn open(cfg: CoordinatorConfig) -> anyhow::Result<Arc<State>> {
        std::fs::create_dir_all(&cfg.data_dir)
            .with_context(|| format!("create coordinator data dir {}", cfg.data_dir.display()))?;
        let db = cfg.data_dir.join("meta.db");
        let store = Store::open(&db, &cfg.sqlite_synchronous)
            .with_context(|| format!("open {}", db.display()))?;
        let known = store
            .with_writer(|c| meta::list_nodes(c))
            .context("load datanodes")?;
        let nodes = NodeTable::new(cfg.suspect_after, cfg.dead_after, known);
        Ok(Arc::new(State {
            cfg,
            store,
            nodes,
            uploads: Mutex::new(HashMap::new()),
            peers: ChannelCache::new(Duration::from_secs(3)),
            maint: Maintenance::default(),
            inventoried: Mutex::new(HashSet::new()),
            inventory_asked: Mutex::new(HashMap::new()),
            started: Instant::now(),
            safe_mode: AtomicBool::new(true),
            events: Default::default(),
            node_watch: Default::default(),
        }))
    }

    /// True until datanodes holding `safe_mode_share` of the known replicas have sent their
    /// inventories (or `safe_mode_timeout` passed). No repair or deletion happens before.
    pub async fn in_safe_mode(&self) -> Result<bool, meta::MetaError> {
        if !self.safe_mode.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let counts = self.store.read(|c| meta::replica_counts(c)).await?;
        let total: u64 = counts.values().sum();
        let reported: u64 = {
            let done = self.inventoried.lock().unwrap_or_else(|p| p.into_inner());
            counts
                .iter()
                .filter(|(n, _)| done.contains(*n))
                .map(|(_, c)| c)
                .sum()
        };
        let share = if total == 0 {
            1.0
        } else {
            reported as f64 / total as f64
        };
        let timed_out = self.started.elapsed() >= self.cfg.safe_mode_timeout;
        if share >= self.cfg.safe_mode_share || timed_out {
            self.safe_mode.store(false, Ordering::Relaxed);
            tracing::info!(
                share,
                timed_out,
                "leaving safe mode: repair and garbage collection enabled"
            );
            return Ok(false);
        }
        Ok(true)
    }

    /// Every chunk an unexpired upload has placed.
    pub fn chunks_in_flight(&self) -> HashSet<crate::chunk::ChunkId> {
        let uploads = self.uploads.lock().unwrap_or_else(|p| p.into_inner());
        uploads
            .values()
            // An upload that went quiet is abandoned (its client died): its chunks are
            // garbage like any other.
            .filter(|u| {
                u.started.elapsed() < self.cfg.upload_ttl
                    && u.last_active.elapsed() < self.cfg.upload_idle_timeout
            })
            .flat_map(|u| u.chunks.iter().copied())
            .collect()
    }

    pub fn safe_mode_now(&self) -> bool {
        self.safe_mode.load(Ordering::Relaxed)
    }
}

/// Serves the coordinator on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    cfg: CoordinatorConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let state = State::open(cfg)?;
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(repair::run(state.clone(), stop_rx.clone()));
    let event_writer = tokio::spawn(events::run_writer(state.clone()));
    let watch = tokio::spawn(events::run_watch(state.clone(), stop_rx));
    // Followers of the event stream end with the server, or it would wait for them.
    let st = state.clone();
    let shutdown = async move {
        shutdown.await;
        st.events.shutdown();
    };
    crate::metrics::coordinator();
    let admin = crate::admin_http::bind(&state.cfg.admin_listen)
        .await?
        .map(|l| {
            crate::admin_http::spawn(
                l,
                observe::routes(state.clone()),
                observe::refresh(state.clone()),
            )
        });
    tracing::info!(%addr, data_dir = %state.cfg.data_dir.display(), "coordinator listening");
    let coord = pb::coordinator_server::CoordinatorServer::new(service::CoordinatorService::new(
        state.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let cluster =
        pb::cluster_server::ClusterServer::new(service::ClusterService::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    Server::builder()
        .layer(crate::grpc_layer::GrpcMetricsLayer::default())
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(coord)
        .add_service(cluster)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("coordinator server")?;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = watch.await;
    event_writer.abort();
    if let Some(a) = admin {
        a.abort();
    }
    tracing::info!("coordinator stopped");
    Ok(())
}
