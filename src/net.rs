//! gRPC channels: one lazily connected channel per peer address, reused by every call.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, Endpoint};
use tonic::Status;

use crate::config::endpoint_uri;

/// Largest gRPC message dfsd sends or accepts. Chunk bytes travel in 256 KiB frames, so
/// only metadata lists come near this.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Builds a lazily connecting channel with a bounded connect time and keepalives, so a dead
/// peer gives an error within seconds instead of a hang.
pub fn channel(addr: &str, connect_timeout: Duration) -> Result<Channel, Status> {
    let uri = endpoint_uri(addr);
    let ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| Status::invalid_argument(format!("invalid address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024));
    Ok(ep.connect_lazy())
}

/// Channels by address.
#[derive(Clone)]
pub struct ChannelCache {
    connect_timeout: Duration,
    map: Arc<Mutex<HashMap<String, Channel>>>,
}

impl ChannelCache {
    pub fn new(connect_timeout: Duration) -> Self {
        ChannelCache {
            connect_timeout,
            map: Arc::default(),
        }
    }

    pub fn get(&self, addr: &str) -> Result<Channel, Status> {
        let mut map = self.map.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = map.get(addr) {
            return Ok(c.clone());
        }
        let c = channel(addr, self.connect_timeout)?;
        map.insert(addr.to_string(), c.clone());
        Ok(c)
    }

    /// Forgets a peer's channel, e.g. after it failed, so the next call reconnects.
    pub fn forget(&self, addr: &str) {
        self.map
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(addr);
    }
}
