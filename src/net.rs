//! gRPC channels: one lazily connected channel per peer address, reused by every call.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::Status;

use crate::config::endpoint_uri;
use crate::security::{Role, Tls};

/// Largest gRPC message dfsd sends or accepts. Chunk bytes travel in 256 KiB frames, so
/// only metadata lists come near this.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;

/// Builds a lazily connecting channel with a bounded connect time and keepalives, so a dead
/// peer gives an error within seconds instead of a hang. With `tls`, the address is dialled
/// as https whatever scheme it was written with.
pub fn channel(
    addr: &str,
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
) -> Result<Channel, Status> {
    let mut uri = endpoint_uri(addr);
    if tls.is_some() {
        if let Some(rest) = uri.strip_prefix("http://") {
            uri = format!("https://{rest}");
        }
    } else if uri.starts_with("https://") {
        return Err(Status::invalid_argument(format!(
            "{addr}: an https address needs TLS settings (tls.ca)"
        )));
    }
    let mut ep = Endpoint::from_shared(uri.clone())
        .map_err(|e| Status::invalid_argument(format!("invalid address {addr:?}: {e}")))?
        .connect_timeout(connect_timeout)
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true)
        .initial_stream_window_size(Some(4 * 1024 * 1024))
        .initial_connection_window_size(Some(16 * 1024 * 1024));
    if let Some(tls) = tls {
        ep = ep
            .tls_config(tls)
            .map_err(|e| Status::invalid_argument(format!("TLS settings for {addr}: {e}")))?;
    }
    Ok(ep.connect_lazy())
}

/// Most channels one cache keeps. Datanodes dial only nodes a coordinator chose, so a
/// cluster's size bounds a cache in practice; the cap is the backstop (a channel that
/// falls out is simply made again when next needed).
pub const CHANNEL_CACHE_MAX: usize = 1024;

/// Channels to datanodes by address (over TLS when configured, expecting a node
/// certificate), at most [`CHANNEL_CACHE_MAX`], the least recently used going first.
#[derive(Clone)]
pub struct ChannelCache {
    connect_timeout: Duration,
    tls: Option<ClientTlsConfig>,
    map: Arc<Mutex<Cached>>,
}

#[derive(Default)]
struct Cached {
    /// Channel and the tick of its last use.
    channels: HashMap<String, (Channel, u64)>,
    tick: u64,
}

impl ChannelCache {
    pub fn new(connect_timeout: Duration, tls: Option<&Tls>) -> Self {
        ChannelCache {
            connect_timeout,
            tls: tls.map(|t| t.client(Role::Node)),
            map: Arc::default(),
        }
    }

    pub fn get(&self, addr: &str) -> Result<Channel, Status> {
        let mut cached = self.map.locked();
        cached.tick += 1;
        let tick = cached.tick;
        if let Some((c, used)) = cached.channels.get_mut(addr) {
            *used = tick;
            return Ok(c.clone());
        }
        let c = channel(addr, self.connect_timeout, self.tls.clone())?;
        if cached.channels.len() >= CHANNEL_CACHE_MAX {
            let oldest = cached
                .channels
                .iter()
                .min_by_key(|(_, (_, used))| *used)
                .map(|(a, _)| a.clone());
            if let Some(a) = oldest {
                cached.channels.remove(&a);
            }
        }
        cached.channels.insert(addr.to_string(), (c.clone(), tick));
        Ok(c)
    }

    /// Forgets a peer's channel, e.g. after it failed, so the next call reconnects.
    pub fn forget(&self, addr: &str) {
        self.map.locked().channels.remove(addr);
    }

    /// Channels cached now.
    pub fn len(&self) -> usize {
        self.map.locked().channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_cache_is_bounded_and_keeps_what_is_in_use() {
        let cache = ChannelCache::new(Duration::from_secs(1), None);
        cache.get("127.0.0.1:1").unwrap();
        for i in 0..CHANNEL_CACHE_MAX + 500 {
            // Keep the first one in use.
            cache.get("127.0.0.1:1").unwrap();
            cache
                .get(&format!("127.0.0.{}:{}", 2 + i % 200, 1000 + i))
                .unwrap();
        }
        assert_eq!(cache.len(), CHANNEL_CACHE_MAX);
        assert!(cache
            .map
            .lock()
            .unwrap()
            .channels
            .contains_key("127.0.0.1:1"));
    }
}
