//! The datanode role: stores chunks on local disk, streams them, forwards them along write
//! pipelines, and keeps the coordinator informed (registration, heartbeats, replica
//! reports).
//!
//! - `store.rs`: the content-addressed chunk store on disk.
//! - `service.rs`: the gRPC service (pipelined writes, reads, verification, coordinator
//!   orders).
//! - `replicate.rs`: pulling a chunk from a peer on the coordinator's order (repair).
//! - `acks.rs`: protection of recently acknowledged chunks against deletion orders.
//! - `throttle.rs`: the token bucket that rate-limits background traffic.
//! - `reporter.rs`: batched replica reports to the coordinator.
//! - `inventory.rs`: full chunk inventories streamed to the coordinator.
//! - `scrub.rs`: the background re-hashing of every chunk.
//!
//! Background loops (heartbeat, inventory, scrub) run until the server stops; they share
//! one pattern: a timer, a wake-up [`tokio::sync::Notify`] and a shutdown `watch`.

mod acks;
#[cfg(test)]
mod e2e_tests;
mod inventory;
mod replicate;
mod reporter;
pub mod scrub;
mod service;
pub mod store;
mod throttle;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
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
use crate::security::join::{self, ClusterChannel, JoinProof};
use crate::security::revoke::{self, Revoked};
use crate::security::token::TokenKey;
use crate::security::{Role, Tls};
use inventory::Inventory;
use reporter::Reporter;
use scrub::ScrubProgress;
use store::DiskStore;

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
            crate::status::check_node_id(&id)
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

fn stats_pb(store: &DiskStore, active: u32, scrub: &ScrubProgress) -> pb::NodeStats {
    let s = store.stats();
    pb::NodeStats {
        capacity_bytes: s.capacity_bytes,
        used_bytes: s.used_bytes,
        free_bytes: s.free_bytes,
        chunk_count: s.chunk_count,
        active_transfers: active,
        scrub: Some(scrub.to_pb()),
    }
}

/// What the heartbeat loop reports from and hands out to.
struct Heartbeats {
    node_id: String,
    addr: String,
    store: Arc<DiskStore>,
    coordinator: ClusterChannel,
    inventory: Inventory,
    scrub: Arc<ScrubProgress>,
    active: Arc<std::sync::atomic::AtomicU32>,
    /// Filled with the token key at each registration.
    tokens: TokenSlot,
    /// The certificate deny-list, from registration and heartbeats.
    revoked: Revoked,
    /// The join secret, which opens a token key sealed by a plaintext coordinator.
    proof: JoinProof,
    /// Whether the coordinator channel is TLS (then the token key comes in clear).
    tls_on: bool,
}

/// The token key of a RegisterResponse: in clear (TLS, or no authentication) or sealed
/// under the join secret (plaintext with access keys).
///
/// A node with a join secret and no TLS takes only the sealed form. The coordinator of
/// its cluster always seals the key for it, so a key in clear comes from something else
/// answering at the `--join` address (a wrong address, a spoofed DNS name): taking it
/// would let that impostor sign orders (DeleteChunks) this node obeys.
fn token_key_of(
    r: &pb::RegisterResponse,
    node_id: &str,
    proof: &JoinProof,
    tls_on: bool,
) -> Result<TokenKey, String> {
    if r.token_key_sealed.is_empty() {
        if proof.secret().is_some() && !tls_on {
            return Err(
                "the coordinator sent the token key in clear, which the coordinator \
                of a cluster without TLS and with access keys never does: refused. Either \
                --join does not name this cluster's coordinator, or that coordinator runs \
                without authentication (then remove datanode.join_secret)"
                    .to_string(),
            );
        }
        return TokenKey::from_bytes(&r.token_key)
            .ok_or_else(|| "the coordinator sent no valid token key".to_string());
    }
    let secret = proof.secret().ok_or(
        "the coordinator sealed the token key under its join secret: set datanode.join_secret",
    )?;
    secret
        .open_token_key(node_id, &r.token_key_sealed)
        .ok()
        .and_then(|k| TokenKey::from_bytes(&k))
        .ok_or_else(|| "the sealed token key does not open with this join secret".to_string())
}

/// Installs the deny-list the coordinator sent, if any.
fn apply_revoked(revoked: &Revoked, list: Option<pb::RevokedCertificates>, node_id: &str) {
    let Some(list) = list else { return };
    let set: Option<std::collections::HashSet<_>> = list
        .fingerprints
        .iter()
        .map(|f| revoke::parse_fingerprint(f).ok())
        .collect();
    match set {
        Some(set) => {
            if !set.is_empty() {
                tracing::info!(node = %node_id, revoked = set.len(), "certificate deny-list updated");
            }
            revoked.replace(set);
        }
        None => tracing::error!(node = %node_id, "the coordinator sent a malformed deny-list"),
    }
}

/// Registers with the coordinator and heartbeats until the process ends. Failures are
/// retried: a coordinator that restarts finds its nodes again within one interval. Every
/// registration is followed by an inventory, which is how a restarted coordinator (or
/// one that forgot this node) learns what the node holds.
async fn heartbeat_loop(hb: Heartbeats) {
    let Heartbeats {
        node_id,
        addr,
        store,
        coordinator,
        inventory,
        scrub,
        active,
        tokens,
        revoked,
        proof,
        tls_on,
    } = hb;
    let mut client = pb::cluster_client::ClusterClient::new(coordinator);
    let mut interval = Duration::from_secs(2);
    let mut registered = false;
    let mut warned = false;
    loop {
        let result = if registered {
            let mut req = tonic::Request::new(pb::HeartbeatRequest {
                node_id: node_id.clone(),
                stats: Some(stats_pb(
                    &store,
                    active.load(std::sync::atomic::Ordering::Relaxed),
                    &scrub,
                )),
                revoked_digest: revoked.digest().into(),
                token_key_digest: tokens
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .as_ref()
                    .map(|k| k.digest().to_vec())
                    .unwrap_or_default()
                    .into(),
            });
            req.set_timeout(Duration::from_secs(10));
            let sent = client.heartbeat(req).await;
            crate::metrics::datanode()
                .heartbeats
                .get_or_create(&crate::metrics::result(sent.is_ok()))
                .inc();
            sent.map(|r| {
                let r = r.into_inner();
                apply_revoked(&revoked, r.revoked, &node_id);
                if r.reregister {
                    tracing::info!(node = %node_id, "coordinator asks this node to register again");
                    registered = false;
                } else if r.send_inventory {
                    inventory.request();
                }
            })
        } else {
            let mut req = tonic::Request::new(pb::RegisterRequest {
                node_id: node_id.clone(),
                addr: addr.clone(),
                stats: Some(stats_pb(&store, 0, &scrub)),
            });
            req.set_timeout(Duration::from_secs(10));
            client.register(req).await.map(|r| {
                let r = r.into_inner();
                let ms = r.heartbeat_interval_ms;
                if ms > 0 {
                    interval = Duration::from_millis(ms);
                }
                match token_key_of(&r, &node_id, &proof, tls_on) {
                    Ok(k) => *tokens.write().unwrap_or_else(|p| p.into_inner()) = Some(k),
                    // A key held from an earlier registration stays in use.
                    Err(e) => tracing::error!(node = %node_id, error = %e,
                        "token key refused: chunk requests are not served with it"),
                }
                apply_revoked(&revoked, r.revoked, &node_id);
                registered = true;
                inventory.request();
                tracing::info!(node = %node_id, "registered with the coordinator");
            })
        };
        let again_now = match result {
            Ok(()) => {
                warned = false;
                // Asked to register again: do it now rather than after a pause.
                !registered
            }
            // A restarted coordinator refuses proofs dated before the second after it
            // started, and says which second that is: date the next proofs from it and
            // call again at once (the floor only rises, so this repeats at most a few
            // times), rather than wait a heartbeat or until our clock catches up.
            Err(status) if proof.learn(&status) => {
                tracing::info!(node = %node_id, "dating join proofs from the coordinator's start");
                true
            }
            Err(status) => {
                if !warned {
                    tracing::warn!(node = %node_id, error = %status.message(), "coordinator unreachable; retrying");
                    warned = true;
                }
                if status.code() == tonic::Code::FailedPrecondition
                    || status.code() == tonic::Code::NotFound
                {
                    registered = false;
                }
                false
            }
        };
        if again_now {
            continue;
        }
        tokio::time::sleep(if registered {
            interval
        } else {
            interval.min(Duration::from_millis(500))
        })
        .await;
    }
}

/// The token key, once the coordinator has handed it over at registration.
pub type TokenSlot = Arc<RwLock<Option<TokenKey>>>;

/// Sets the gauges that mirror the store and the scrubber before a scrape.
fn refresh_gauges(store: Arc<DiskStore>, scrub: Arc<ScrubProgress>) -> crate::admin_http::Refresh {
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
    files::create_private_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let mut privacy = Privacy::default();
    privacy.check(&cfg.data_dir);
    let _lock = lock_data_dir(&cfg.data_dir)?;
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
    let store =
        DiskStore::open(&cfg.data_dir, cfg.capacity, cfg.reserve).context("open chunk store")?;
    if store.made_private() > 0 {
        privacy.note(format!(
            "{} chunk files and fan-out directories",
            store.made_private()
        ));
    }
    privacy.report("datanode");
    let local = listener.local_addr()?;
    let addr = advertise_addr(&cfg, local);
    let coordinator = channel(
        &cfg.join,
        Duration::from_secs(3),
        tls.as_ref().map(|t| t.client(Role::Coordinator)),
    )
    .map_err(|s| anyhow::anyhow!("{}", s.message()))?;
    // Every cluster call proves the join secret, when one is set (plaintext clusters).
    let proof = JoinProof::new(&cfg.join_secret);
    let coordinator = join::cluster_channel(coordinator, proof.clone());

    let stats = store.stats();
    tracing::info!(node = %node_id, listen = %local, advertise = %addr, chunks = stats.chunk_count,
        used = stats.used_bytes, "datanode listening");

    let (stop_tx, stop_rx) = watch::channel(false);
    let reporter = Reporter::spawn(node_id.clone(), coordinator.clone());
    let (inventory, inventory_task) = inventory::spawn(
        node_id.clone(),
        store.clone(),
        coordinator.clone(),
        tuning.inventory_interval,
        stop_rx.clone(),
    );
    let (scrubber, scrub_task) = scrub::spawn(
        node_id.clone(),
        store.clone(),
        coordinator.clone(),
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
    let active = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let tokens = TokenSlot::default();
    let revoked = Revoked::default();
    let hb = tokio::spawn(heartbeat_loop(Heartbeats {
        node_id: node_id.clone(),
        addr,
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
    let svc = service::DatanodeService {
        node_id,
        store,
        reporter,
        peers: ChannelCache::new(Duration::from_secs(3), tls.as_ref()),
        tokens,
        tls_on: server_tls.is_some(),
        recent: Default::default(),
        active,
        replication: Arc::new(replicate::Replication::new(
            tuning.replication_rate,
            tuning.replication_concurrency,
        )),
    };
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
    let result = builder
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
        .context("datanode server");
    hb.abort();
    if let Some(a) = admin {
        a.abort();
    }
    // Workers stop between chunks; one still hashing a chunk gets a moment to finish
    // before it is abandoned.
    let _ = stop_tx.send(true);
    for task in [inventory_task, scrub_task] {
        let abort = task.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
    tracing::info!("datanode stopped");
    result
}
