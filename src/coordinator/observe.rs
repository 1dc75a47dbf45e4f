//! The coordinator's admin endpoint: gauges brought up to date before each scrape, and
//! the routes it adds beside `/metrics` (the status page).

use std::sync::Arc;

use axum::Router;

use super::{admin, State};
use crate::admin_http::Refresh;
use crate::metrics::{self, set};

/// Sets the gauges that mirror the cluster's state (nodes by state, repair and GC
/// backlogs, namespace totals) from the same numbers `dfsd status` shows.
pub async fn refresh_gauges(state: &Arc<State>) {
    let m = metrics::coordinator();
    let s = match admin::status(state).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e.message(), "metrics: reading the cluster status failed");
            return;
        }
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
        let state = state.clone();
        Box::pin(async move { refresh_gauges(&state).await })
    })
}

/// Routes the coordinator adds to its admin endpoint: the status page at `/`.
pub fn routes(state: Arc<State>) -> Router {
    Router::new().route(
        "/",
        axum::routing::get(move || {
            let state = state.clone();
            async move { axum::response::Html(super::status_page::render(&state).await) }
        }),
    )
}
