//! The coordinator role: owns the namespace and all metadata (in SQLite), places chunks,
//! commits files, tracks datanode health. It never stores file bytes.
//!
//! - `service.rs`, `cluster_service.rs`: the gRPC services (client API, cluster API),
//!   translation only, with `wire.rs` (decoding requests, encoding answers).
//! - `namespace.rs`: namespace changes with their events, and the read path's chunk
//!   locations. `keys.rs`: access-key creation and revocation. `nodes.rs`: what the
//!   cluster API does with a datanode's word (registration, heartbeats, reports).
//! - `access.rs`: who is calling (access keys, gateways acting for S3 callers), S3 secrets.
//! - `health.rs`: node states from heartbeats.
//! - `placement.rs`: the one rule for which datanodes may take a replica, and the ranking.
//! - `repair.rs`: the maintenance worker (re-replication, trimming, garbage collection).
//! - `bad_replicas.rs`: clients' reports of bad replicas, verified by the holder, bounded.
//! - `uploads/`: uploads in flight from begin to commit (bounded per key) and chunk
//!   placement, with dedup only for chunks the caller proves it may use.
//! - `secrets.rs`: the private data directory and the secrets file (token, seal and join
//!   keys, kept out of the database).
//! - `trust.rs`: who may use the cluster API (node certificate or join secret) and the
//!   certificate deny-list.

pub(crate) mod access;
pub(crate) mod admin;
pub(crate) mod bad_replicas;
pub(crate) mod buckets;
mod cluster_service;
pub mod events;
mod gauges;
mod health;
pub(crate) mod keys;
mod namespace;
mod nodes;
mod observe;
mod orders;
mod placement;
mod repair;
pub mod secrets;
mod service;
mod status_page;
pub(crate) mod trust;
pub(crate) mod uploads;
mod wire;

use crate::sync::{Locked, ReadWriteLocked};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;
use tonic::service::interceptor::InterceptedService;
use tonic::transport::{Server, ServerTlsConfig};

pub use health::{NodeState, NodeTable, NodeView, ScrubInfo};
pub use placement::{choose, Candidate};
pub use repair::Maintenance;

use crate::config::CoordinatorConfig;
use crate::conn_limit;
use crate::meta::{MetaError, MetaStore, SqliteStore};
use crate::net::{ChannelCache, MAX_MESSAGE_BYTES};
use crate::proto::pb;
use crate::security::keys::{AccessKey, KeyRole};
use crate::security::seal::SealKey;
use crate::security::token::{Op, TokenKey};
use crate::security::Tls;

/// Deadline the server puts on every call (clients may ask for less).
const CALL_TIMEOUT: Duration = Duration::from_secs(300);
/// Concurrent calls (HTTP/2 streams) one connection may have open.
pub const MAX_STREAMS_PER_CONNECTION: u32 = 256;
/// Largest header block of a call (hyper's default is 16 MiB): keys, request ids and
/// deadlines need a few hundred bytes.
pub const MAX_HEADER_LIST_BYTES: u32 = 64 * 1024;

/// Everything the coordinator's services share.
pub struct State {
    pub cfg: CoordinatorConfig,
    /// The metadata store, behind the seam (see `meta`).
    pub store: Arc<dyn MetaStore>,
    pub nodes: NodeTable,
    /// Uploads in flight (memory only; see `uploads/`).
    pub uploads: uploads::Uploads,
    /// Clients' bad-replica reports being verified, and those verified lately.
    bad_replicas: bad_replicas::BadReplicas,
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
    /// TLS material; `None` when serving plaintext.
    pub tls: Option<Tls>,
    /// Access keys by id, revoked ones included (the table is small and read on every call).
    keys: RwLock<HashMap<String, AccessKey>>,
    /// Signs chunk tokens; datanodes receive it when they register.
    pub token_key: TokenKey,
    /// Seals the S3 secrets of access keys (opened only for gateways).
    s3_seal: SealKey,
    /// The cluster API's gatekeeper and the certificate deny-list.
    pub trust: trust::Trust,
    /// Cluster events: stored, broadcast to `dfsd events` followers.
    pub events: events::Events,
    /// Node-state transitions, turned into events.
    pub node_watch: events::NodeWatch,
    /// Counts for the admin endpoint, refreshed in the background.
    pub gauges: gauges::GaugeCache,
    /// Buckets anonymous S3 callers may read (see `buckets.rs`).
    public: buckets::PublicBuckets,
}

impl State {
    pub async fn open(cfg: CoordinatorConfig, tls: Option<Tls>) -> anyhow::Result<Arc<State>> {
        secrets::prepare_data_dir(&cfg)?;
        let store = open_store(&cfg)?;
        let known = store.list_nodes().await.context("load datanodes")?;
        let nodes = NodeTable::new(cfg.suspect_after, cfg.dead_after, known);
        let secrets = secrets::load(&*store, &cfg, tls.is_none() && cfg.auth).await?;
        let trust = trust::Trust::new(
            &*store,
            tls.as_ref(),
            cfg.auth,
            secrets.join_secret.as_deref(),
        )
        .await
        .context("load the certificate deny-list")?;
        let (token_key, s3_seal) = (secrets.token_key, secrets.s3_seal);
        let keys = access::bootstrap_keys(&*store, &cfg, &s3_seal).await?;
        let public = buckets::PublicBuckets::default();
        public.replace(
            store
                .public_buckets()
                .await
                .context("load public buckets")?,
        );
        let uploads = uploads::Uploads::new(uploads::Limits {
            uploads_per_key: cfg.max_uploads_per_key,
            chunks_per_key: cfg.max_upload_chunks_per_key,
            ttl: cfg.upload_ttl,
            idle: cfg.upload_idle_timeout,
        });
        Ok(Arc::new(State {
            cfg,
            store,
            nodes,
            uploads,
            bad_replicas: Default::default(),
            peers: ChannelCache::new(Duration::from_secs(3), tls.as_ref()),
            maint: Maintenance::default(),
            inventoried: Mutex::new(HashSet::new()),
            inventory_asked: Mutex::new(HashMap::new()),
            started: Instant::now(),
            safe_mode: AtomicBool::new(true),
            tls,
            keys: RwLock::new(keys.into_iter().map(|k| (k.id.clone(), k)).collect()),
            token_key,
            s3_seal,
            trust,
            events: Default::default(),
            node_watch: Default::default(),
            gauges: Default::default(),
            public,
        }))
    }

    /// Replaces the cached copy of one key after a change in the store.
    pub fn cache_key(&self, key: AccessKey) {
        self.keys.write_locked().insert(key.id.clone(), key);
    }

    /// Valid admin keys other than `except`.
    pub fn other_admin_keys(&self, except: &str) -> usize {
        self.keys
            .read_locked()
            .values()
            .filter(|k| k.role == KeyRole::Admin && k.revoked_ms.is_none() && k.id != except)
            .count()
    }

    /// A chunk token for `op` on `ids`.
    pub fn token(&self, op: Op, ids: &[crate::chunk::ChunkId]) -> String {
        self.token_key.sign(op, ids, self.cfg.token_ttl)
    }

    /// True until datanodes holding `safe_mode_share` of the known replicas have sent their
    /// inventories (or `safe_mode_timeout` passed). No repair or deletion happens before.
    pub async fn in_safe_mode(&self) -> Result<bool, MetaError> {
        if !self.safe_mode.load(Ordering::Relaxed) {
            return Ok(false);
        }
        let counts = self.store.replica_counts().await?;
        let total: u64 = counts.values().sum();
        let reported: u64 = {
            let done = self.inventoried.locked();
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

    /// Chunks proven by uploads in flight (see `uploads/`): garbage collection leaves
    /// them alone.
    pub fn chunks_in_flight(&self) -> HashSet<crate::chunk::ChunkId> {
        self.uploads.protected()
    }

    pub fn safe_mode_now(&self) -> bool {
        self.safe_mode.load(Ordering::Relaxed)
    }
}

/// Opens the metadata store the configuration names. The one place that picks a backend:
/// SQLite in the data directory, the only one today.
fn open_store(cfg: &CoordinatorConfig) -> anyhow::Result<Arc<dyn MetaStore>> {
    let db = cfg.data_dir.join(secrets::DB_NAME);
    let store =
        SqliteStore::open_with_readers(&db, &cfg.sqlite_synchronous, cfg.reader_connections)
            .with_context(|| format!("open {}", db.display()))?;
    Ok(Arc::new(store))
}

/// Serves the coordinator on `listener` until `shutdown` resolves. `tls` is `None` only
/// when plaintext was chosen (the caller has warned).
pub async fn run(
    listener: TcpListener,
    cfg: CoordinatorConfig,
    tls: Option<Tls>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let server_tls = tls.as_ref().map(Tls::server).transpose()?;
    let state = State::open(cfg, tls).await?;
    if !state.cfg.auth {
        tracing::warn!("authentication is off: any client may do anything");
    }
    let addr = listener.local_addr()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(repair::run(state.clone(), stop_rx.clone()));
    let event_writer = tokio::spawn(events::run_writer(state.clone()));
    let watch = tokio::spawn(events::run_watch(state.clone(), stop_rx.clone()));
    let sweeper = tokio::spawn(sweep_uploads(state.clone(), stop_rx.clone()));
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
            let refresher = tokio::spawn(gauges::run_refresher(state.clone(), stop_rx));
            let server = crate::admin_http::spawn(
                l,
                observe::routes(state.clone()),
                gauges::refresh(state.clone()),
            );
            (server, refresher)
        });
    tracing::info!(%addr, data_dir = %state.cfg.data_dir.display(), "coordinator listening");
    serve(listener, &state, server_tls, shutdown).await?;
    let _ = stop_tx.send(true);
    let _ = worker.await;
    let _ = watch.await;
    let _ = sweeper.await;
    event_writer.abort();
    if let Some((server, refresher)) = admin {
        server.abort();
        refresher.abort();
    }
    tracing::info!("coordinator stopped");
    Ok(())
}

/// Serves the Coordinator and Cluster services on `listener` until `shutdown` resolves:
/// every client call authenticated, cluster calls only from datanodes, connections
/// admitted within the configured limits.
async fn serve(
    listener: TcpListener,
    state: &Arc<State>,
    server_tls: Option<ServerTlsConfig>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let coord = pb::coordinator_server::CoordinatorServer::new(service::CoordinatorService::new(
        state.clone(),
    ))
    .max_decoding_message_size(MAX_MESSAGE_BYTES)
    .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // Every client call is authenticated before it reaches a handler, which finds the
    // caller in the request's extensions (none for a gateway certificate without a key).
    let auth_state = state.clone();
    let coord = InterceptedService::new(coord, move |mut req: tonic::Request<()>| {
        auth_state.trust.revoked.check(&req)?;
        if let Some(who) = auth_state.authenticate(wire::credentials(&req))? {
            req.extensions_mut().insert(who);
        }
        Ok(req)
    });
    let cluster =
        pb::cluster_server::ClusterServer::new(cluster_service::ClusterService::new(state.clone()))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
    // The cluster API is for datanodes only: a node certificate with TLS, the join
    // secret without.
    let cluster_state = state.clone();
    let cluster = InterceptedService::new(cluster, move |req: tonic::Request<()>| {
        cluster_state.trust.check_cluster_caller(&req)?;
        Ok(req)
    });
    let mut builder = Server::builder();
    if let Some(t) = server_tls {
        builder = builder
            .tls_config(t.timeout(conn_limit::TLS_HANDSHAKE_TIMEOUT))
            .context("coordinator TLS settings")?;
    }
    // Connections are admitted within the limits (TCP_NODELAY set, stalled peers cut) by
    // conn_limit, since tonic's own socket options do not reach a listener we bound.
    let limiter = conn_limit::Limiter::new(
        "coordinator",
        conn_limit::Limits {
            total: state.cfg.max_connections,
            per_ip: state.cfg.max_connections_per_ip,
        },
    );
    let keepalive = conn_limit::grpc_keepalive(state.cfg.idle_timeout);
    builder
        .timeout(CALL_TIMEOUT)
        .max_concurrent_streams(MAX_STREAMS_PER_CONNECTION)
        .http2_max_header_list_size(MAX_HEADER_LIST_BYTES)
        .layer(crate::grpc_layer::GrpcMetricsLayer::default())
        .http2_keepalive_interval(Some(keepalive))
        .http2_keepalive_timeout(Some(keepalive))
        .add_service(coord)
        .add_service(cluster)
        .serve_with_incoming_shutdown(
            conn_limit::grpc_incoming(listener, limiter, state.cfg.idle_timeout),
            shutdown,
        )
        .await
        .context("coordinator server")?;
    Ok(())
}

/// Drops abandoned uploads (idle or past their TTL) on a timer, so memory held for uploads
/// does not wait for the next upload to begin.
async fn sweep_uploads(state: Arc<State>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let every = (state.cfg.upload_idle_timeout / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(30));
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => return,
        }
        let dropped = state.uploads.sweep();
        if dropped > 0 {
            tracing::info!(dropped, "abandoned uploads dropped");
        }
        crate::metrics::coordinator()
            .uploads_open
            .set(state.uploads.open() as i64);
    }
}
