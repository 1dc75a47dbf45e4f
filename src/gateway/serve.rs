//! The S3 port's server loop: connections admitted within `gateway.max_connections` and
//! `max_connections_per_ip` ([`conn_limit`]), HTTPS handshakes on each connection's own
//! task, then hyper (HTTP/1.1 or HTTP/2) with every wait bounded:
//!
//! | phase | bound |
//! |---|---|
//! | TLS handshake | [`HANDSHAKE_TIMEOUT`] |
//! | first bytes (HTTP/1 or HTTP/2?) | `header_timeout` ([`ReadTimeout::Head`]): hyper's detection has none |
//! | HTTP/1 request head, and the wait for the next one | `header_timeout` (hyper's timer) |
//! | request body that stops | `idle_timeout` between frames ([`TimedBody`]) |
//! | response the client stops reading | `idle_timeout` (write stall) |
//! | HTTP/2 peer gone | ping every `idle_timeout / 2`, answer within `idle_timeout / 2` |
//!
//! A slowloris client therefore holds a connection for at most `header_timeout`, and
//! never more connections than the per-IP limit.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use super::front::Front;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::time::{Instant, Sleep};
use tokio_rustls::TlsAcceptor;

use crate::config::GatewayConfig;
use crate::conn_limit::{self, Guarded, Limiter, Limits, ReadTimeout};
use crate::metrics::{self, ServerReasonLabels};

/// How long open connections get to finish when the gateway shuts down.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client gets to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Name of the S3 port in the connection metrics.
const SERVER: &str = "s3";

/// Serves `service` on `listener` until `shutdown` resolves, then lets open connections
/// finish for up to [`DRAIN_TIMEOUT`].
pub async fn serve(
    listener: TcpListener,
    cfg: &GatewayConfig,
    acceptor: Option<TlsAcceptor>,
    service: Front,
    shutdown: impl Future<Output = ()>,
) {
    let limiter = Limiter::new(
        SERVER,
        Limits {
            total: cfg.max_connections,
            per_ip: cfg.max_connections_per_ip,
        },
    );
    let http = builder(cfg);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        let (stream, peer, permit) = tokio::select! {
            c = conn_limit::accept(&listener, &limiter) => c,
            () = &mut shutdown => break,
        };
        let conn = Conn {
            http: http.clone(),
            service: service.clone(),
            watcher: graceful.watcher(),
            peer,
            header_timeout: cfg.header_timeout,
            idle_timeout: cfg.idle_timeout,
        };
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            // The permit lives as long as this task: handshake and connection.
            let _permit = permit;
            match acceptor {
                None => conn.serve(stream).await,
                // The handshake runs on the connection's task, so a slow or broken client
                // holds up no one else; a failed one ends that connection only.
                Some(acceptor) => {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => conn.serve(tls).await,
                        Ok(Err(e)) => {
                            tracing::debug!(peer = %peer, error = %e, "TLS handshake failed")
                        }
                        Err(_) => {
                            timed_out("handshake");
                            tracing::debug!(peer = %peer, "TLS handshake timed out")
                        }
                    }
                }
            }
        });
    }
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(DRAIN_TIMEOUT) => {
            tracing::warn!("connections still open after {DRAIN_TIMEOUT:?}; closing them");
        }
    }
}

fn timed_out(what: &str) {
    metrics::common()
        .connections_timed_out
        .get_or_create(&ServerReasonLabels::of(SERVER, what))
        .inc();
}

/// hyper's settings for the S3 port. Both protocols get the timer, without which hyper
/// silently ignores its header-read timeout and keep-alive pings.
fn builder(cfg: &GatewayConfig) -> ConnBuilder<TokioExecutor> {
    let mut http = ConnBuilder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(cfg.header_timeout);
    let ping = cfg.idle_timeout / 2;
    http.http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(cfg.max_concurrent_streams)
        .keep_alive_interval(ping)
        .keep_alive_timeout(ping)
        .max_header_list_size(64 * 1024)
        .max_pending_accept_reset_streams(32)
        .max_local_error_reset_streams(64);
    http
}

/// One accepted connection, ready to be served once its transport is.
struct Conn {
    http: ConnBuilder<TokioExecutor>,
    service: Front,
    watcher: hyper_util::server::graceful::Watcher,
    peer: std::net::SocketAddr,
    header_timeout: Duration,
    idle_timeout: Duration,
}

impl Conn {
    async fn serve<IO>(self, io: IO)
    where
        IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let io = Guarded::new(io, ReadTimeout::Head(self.header_timeout), SERVER)
            .with_write_stall(self.idle_timeout);
        let s3 = self.service;
        let idle = self.idle_timeout;
        let svc = hyper::service::service_fn(move |req: http::Request<Incoming>| {
            let s3 = s3.clone();
            let req = req.map(|body| s3s::Body::http_body(TimedBody::new(body, idle)));
            async move { s3.call(req).await }
        });
        let conn = self
            .http
            .serve_connection(TokioIo::new(io), svc)
            .into_owned();
        if let Err(e) = self.watcher.watch(conn).await {
            tracing::debug!(peer = %self.peer, error = %e, "connection ended with an error");
        }
    }
}

/// A request body that fails when the client sends nothing for `idle` while the service
/// waits for it: hyper has no timeout of its own for a body, so a client could otherwise
/// start an upload and stall for ever. Time the service spends between reads does not
/// count.
struct TimedBody {
    inner: Incoming,
    idle: Duration,
    timer: Pin<Box<Sleep>>,
    /// The service is waiting for the next frame (the timer runs).
    waiting: bool,
}

impl TimedBody {
    fn new(inner: Incoming, idle: Duration) -> Self {
        TimedBody {
            inner,
            idle,
            timer: Box::pin(tokio::time::sleep(idle)),
            waiting: false,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if !this.waiting {
            this.waiting = true;
            let deadline = Instant::now() + this.idle;
            this.timer.as_mut().reset(deadline);
        }
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Ready(frame) => {
                this.waiting = false;
                Poll::Ready(frame.map(|f| f.map_err(std::io::Error::other)))
            }
            Poll::Pending => {
                if this.timer.as_mut().poll(cx).is_ready() {
                    timed_out("body");
                    return Poll::Ready(Some(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("request body stalled for {:?}", this.idle),
                    ))));
                }
                Poll::Pending
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
