//! The admin HTTP endpoint every server role can open with `--admin-listen`: Prometheus
//! metrics at `/metrics`, a liveness answer at `/healthz`, and whatever routes the role
//! adds (the coordinator's status page). Plain HTTP/1.1 on axum, which tonic already
//! brings in.
//!
//! The port is bounded like every public one ([`conn_limit`]): at most
//! [`MAX_CONNECTIONS`] open connections, [`MAX_CONNECTIONS_PER_IP`] from one address, a
//! request head must arrive within [`HEADER_TIMEOUT`], and a connection that sends nothing
//! (or stops reading the answer) for [`IDLE_TIMEOUT`] is closed. A scraper and a few
//! browsers need far less; a stranger cannot hold more.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::conn_limit::{self, Guarded, Limiter, Limits, ReadTimeout};

/// Open connections the admin port accepts, in all.
pub const MAX_CONNECTIONS: usize = 64;
/// Open connections the admin port accepts from one IP address.
pub const MAX_CONNECTIONS_PER_IP: usize = 16;
/// Time to send a request head (and, between requests, the next one).
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection silent, or not reading, for this long is closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Name of the admin port in the connection metrics.
const SERVER: &str = "admin";

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
    tokio::spawn(serve(listener, app))
}

/// Accepts connections within the limits and serves `app` on each, every wait bounded.
async fn serve(listener: TcpListener, app: Router) {
    let limiter = Limiter::new(
        SERVER,
        Limits {
            total: MAX_CONNECTIONS,
            per_ip: MAX_CONNECTIONS_PER_IP,
        },
    );
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT);
    loop {
        let (stream, peer, permit) = conn_limit::accept(&listener, &limiter).await;
        let io = Guarded::new(stream, ReadTimeout::Idle(IDLE_TIMEOUT), SERVER)
            .with_permit(permit)
            .with_write_stall(IDLE_TIMEOUT);
        let conn = http.serve_connection(TokioIo::new(io), TowerToHyperService::new(app.clone()));
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "admin connection ended with an error");
            }
        });
    }
}

/// A refresh hook that does nothing.
pub fn no_refresh() -> Refresh {
    Arc::new(|| Box::pin(async {}))
}
