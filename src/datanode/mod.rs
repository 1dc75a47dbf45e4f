//! The datanode role: stores chunks on local disk, streams them, forwards them along write
//! pipelines, and keeps the coordinator informed (registration, heartbeats, replica
//! reports).
//!
//! - `store.rs`: the content-addressed chunk store on disk.
//! - `service.rs`: the gRPC service (pipelined writes, reads, verification).
//! - `reporter.rs`: batched replica reports to the coordinator.

mod reporter;
mod service;
pub mod store;

use std::future::Future;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Channel, Server};

use crate::config::DatanodeConfig;
use crate::net::{channel, ChannelCache, MAX_MESSAGE_BYTES};
use crate::proto::pb;
use reporter::Reporter;
use store::DiskStore;

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
            let mut f =
                std::fs::File::create(&tmp).with_context(|| format!("create {}", tmp.display()))?;
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
    let f = std::fs::OpenOptions::new()
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

fn stats_pb(store: &DiskStore, active: u32) -> pb::NodeStats {
    let s = store.stats();
    pb::NodeStats {
        capacity_bytes: s.capacity_bytes,
        used_bytes: s.used_bytes,
        free_bytes: s.free_bytes,
        chunk_count: s.chunk_count,
        active_transfers: active,
    }
}

/// Registers with the coordinator and heartbeats until the process ends. Failures are
/// retried: a coordinator that restarts finds its nodes again within one interval.
async fn heartbeat_loop(
    node_id: String,
    addr: String,
    store: Arc<DiskStore>,
    coordinator: Channel,
) {
    let mut client = pb::cluster_client::ClusterClient::new(coordinator);
    let mut interval = Duration::from_secs(2);
    let mut registered = false;
    let mut warned = false;
    loop {
        let result = if registered {
            let mut req = tonic::Request::new(pb::HeartbeatRequest {
                node_id: node_id.clone(),
                stats: Some(stats_pb(&store, 0)),
            });
            req.set_timeout(Duration::from_secs(10));
            client.heartbeat(req).await.map(|r| {
                if r.into_inner().reregister {
                    registered = false;
                }
            })
        } else {
            let mut req = tonic::Request::new(pb::RegisterRequest {
                node_id: node_id.clone(),
                addr: addr.clone(),
                stats: Some(stats_pb(&store, 0)),
            });
            req.set_timeout(Duration::from_secs(10));
            client.register(req).await.map(|r| {
                let ms = r.into_inner().heartbeat_interval_ms;
                if ms > 0 {
                    interval = Duration::from_millis(ms);
                }
                registered = true;
                tracing::info!(node = %node_id, "registered with the coordinator");
            })
        };
        match result {
            Ok(()) => warned = false,
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
            }
        }
        tokio::time::sleep(if registered {
            interval
        } else {
            interval.min(Duration::from_millis(500))
        })
        .await;
    }
}

/// Serves a datanode on `listener` until `shutdown` resolves.
pub async fn run(
    listener: TcpListener,
    cfg: DatanodeConfig,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&cfg.data_dir)
        .with_context(|| format!("create data dir {}", cfg.data_dir.display()))?;
    let _lock = lock_data_dir(&cfg.data_dir)?;
    let node_id = load_or_create_node_id(&cfg.data_dir)?;
    let store =
        DiskStore::open(&cfg.data_dir, cfg.capacity, cfg.reserve).context("open chunk store")?;
    let local = listener.local_addr()?;
    let addr = advertise_addr(&cfg, local);
    let coordinator = channel(&cfg.join, Duration::from_secs(3))
        .map_err(|s| anyhow::anyhow!("{}", s.message()))?;

    let stats = store.stats();
    tracing::info!(node = %node_id, listen = %local, advertise = %addr, chunks = stats.chunk_count,
        used = stats.used_bytes, "datanode listening");

    let reporter = Reporter::spawn(node_id.clone(), coordinator.clone());
    let hb = tokio::spawn(heartbeat_loop(
        node_id.clone(),
        addr,
        store.clone(),
        coordinator,
    ));
    let svc = service::DatanodeService {
        node_id,
        store,
        reporter,
        peers: ChannelCache::new(Duration::from_secs(3)),
    };
    let server = pb::datanode_server::DatanodeServer::new(svc)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    let result = Server::builder()
        .tcp_nodelay(true)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024))
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .http2_keepalive_timeout(Some(Duration::from_secs(10)))
        .add_service(server)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .context("datanode server");
    hb.abort();
    tracing::info!("datanode stopped");
    result
}
