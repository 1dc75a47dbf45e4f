//! The admin HTTP endpoint every server role can open with `--admin-listen`: Prometheus
//! metrics at `/metrics`, a liveness answer at `/healthz`, and whatever routes the role
//! adds (the coordinator's status page). Plain HTTP/1.1 on axum, which tonic already
//! brings in.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Brings a role's state-mirroring gauges up to date before a scrape.
pub type Refresh = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

/// Binds the admin address, or returns `None` when it is empty (admin endpoint off).
pub async fn bind(addr: &str) -> anyhow::Result<Option<TcpListener>> {
    if addr.is_empty() {
        return Ok(None);
    }
    let l = TcpListener::bind(addr)
        .await
        .with_context(|| format!("bind admin address {addr}"))?;
    Ok(Some(l))
}

/// Serves `/metrics`, `/healthz` and `routes` on `listener` until the task is aborted.
pub fn spawn(listener: TcpListener, routes: Router, refresh: Refresh) -> JoinHandle<()> {
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    tracing::info!(%addr, "admin endpoint listening");
    let app = routes
        .route(
            "/metrics",
            get(move || {
                let refresh = refresh.clone();
                async move {
                    refresh().await;
                    (
                        [(CONTENT_TYPE, crate::metrics::CONTENT_TYPE)],
                        crate::metrics::encode(),
                    )
                        .into_response()
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    })
}

/// A refresh hook that does nothing.
pub fn no_refresh() -> Refresh {
    Arc::new(|| Box::pin(async {}))
}
