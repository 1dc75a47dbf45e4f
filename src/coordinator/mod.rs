//! The coordinator role: owns the namespace and all metadata (in SQLite), places chunks,
//! commits files, tracks datanode health. It never stores file bytes.
//!
//! - `service.rs`: the gRPC services (client API and cluster API), translation only.
//! - `health.rs`: node states from heartbeats.
//! - `placement.rs`: choosing target datanodes.

mod health;
mod placement;
mod service;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::Server;

pub use health::{NodeState, NodeTable, NodeView};
pub use placement::{choose, Candidate};

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
}

/// Everything the coordinator's services share.
pub struct State {
    pub cfg: CoordinatorConfig,
    pub store: Store,
    pub nodes: NodeTable,
    pub uploads: Mutex<HashMap<String, Upload>>,
    /// Channels to datanodes, for orders such as "verify this chunk".
    pub peers: ChannelCache,
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
        }))
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
        .tcp_nodelay(true)
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(coord)
        .add_service(cluster)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("coordinator server")?;
    tracing::info!("coordinator stopped");
    Ok(())
}
