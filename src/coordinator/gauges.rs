//! The gauge cache of the coordinator's admin endpoint, and the gauges set from it
//! before each scrape (the status page reads the same cache).
//!
//! Files, chunks, the garbage backlog and replicas per node need scans of the metadata
//! tables. A scrape or a page view must not run them: anyone who reaches the admin port
//! could otherwise keep the coordinator's readers busy (with 2M files one scrape took
//! seconds). So one background worker ([`run_refresher`]) recomputes them every
//! `gauge_refresh_interval`, one refresh at a time, and scrapes and the page read the last
//! result. Everything else they show (node states, repair progress) is in memory.

use crate::sync::ReadWriteLocked;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;

use super::admin;
use super::State;
use crate::admin_http::Refresh;
use crate::meta::MetaError;
use crate::metrics::{self, set};
use crate::model::{now_ms, ClusterStatus, StoreCounts};

/// The result of the last background refresh.
#[derive(Debug, Clone, Default)]
pub struct Scanned {
    /// When it was taken (ms since the epoch).
    pub at_ms: i64,
    pub counted: StoreCounts,
    /// Replica records per node.
    pub replicas: HashMap<String, u64>,
}

/// The gauge cache; empty until the first refresh.
#[derive(Default)]
pub struct GaugeCache(RwLock<Option<Arc<Scanned>>>);

impl GaugeCache {
    pub fn get(&self) -> Option<Arc<Scanned>> {
        self.0.read_locked().clone()
    }

    fn put(&self, s: Scanned) {
        *self.0.write_locked() = Some(Arc::new(s));
    }
}

/// Recomputes the cache now and then every `gauge_refresh_interval` until `shutdown`
/// turns true. One loop, so refreshes never overlap; a slow one delays the next.
pub async fn run_refresher(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        refresh_cache(&state).await;
        tokio::select! {
            _ = tokio::time::sleep(state.cfg.gauge_refresh_interval) => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
    }
}

async fn refresh_cache(state: &Arc<State>) {
    let scanned = async {
        Ok::<_, MetaError>(Scanned {
            at_ms: now_ms(),
            counted: state.store.counts().await?,
            replicas: state.store.replica_counts().await?,
        })
    }
    .await;
    metrics::coordinator().gauge_refreshes.inc();
    match scanned {
        Ok(s) => state.gauges.put(s),
        Err(e) => tracing::warn!(error = %e, "refreshing the cluster gauges failed"),
    }
}

/// The cluster status from the cache and memory; `None` before the first refresh.
pub fn cached_status(state: &Arc<State>) -> Option<(ClusterStatus, Arc<Scanned>)> {
    let scanned = state.gauges.get()?;
    Some((admin::status_with(state, &scanned.counted), scanned))
}

/// Sets the gauges that mirror the cluster's state (nodes by state, repair and GC
/// backlogs, namespace totals) from the same numbers `dfsd status` shows, the scanned
/// ones from the cache.
pub fn refresh_gauges(state: &Arc<State>) {
    let m = metrics::coordinator();
    let Some((s, _)) = cached_status(state) else {
        return;
    };
    for (name, n) in [
        ("alive", s.nodes_alive),
        ("suspect", s.nodes_suspect),
        ("dead", s.nodes_dead),
        ("draining", s.nodes_draining),
    ] {
        m.nodes
            .get_or_create(&metrics::StateLabel { state: name.into() })
            .set(n.into());
    }
    set(&m.under_replicated, s.under_replicated);
    set(&m.unrecoverable, s.unrecoverable);
    set(&m.over_replicated, s.over_replicated);
    set(&m.repair_queue, s.repair_queue);
    set(&m.repairs_running, s.repairs_running);
    set(&m.gc_backlog_chunks, s.gc_backlog_chunks);
    set(&m.gc_backlog_bytes, s.gc_backlog_bytes);
    set(&m.files, s.files);
    set(&m.directories, s.directories);
    set(&m.chunks, s.chunks);
    set(&m.logical_bytes, s.logical_bytes);
    set(&m.capacity_bytes, s.capacity_bytes);
    set(&m.used_bytes, s.used_bytes);
    set(&m.free_bytes, s.free_bytes);
    m.safe_mode.set(s.safe_mode.into());
}

pub fn refresh(state: Arc<State>) -> Refresh {
    Arc::new(move || {
        refresh_gauges(&state);
        Box::pin(async {})
    })
}
