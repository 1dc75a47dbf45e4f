//! A tower layer on every gRPC server: counts requests by method and final status code,
//! times them to the end of their response stream, and runs each request in a tracing
//! span that carries its method and request id.
//!
//! Request ids: a server takes the caller's `x-request-id` (or makes one up) and keeps it
//! for the handler in a task-local, so calls the handler makes (a datanode forwarding a
//! write down its pipeline) carry the same id; [`tag`] puts it on an outgoing request. A
//! client process uses one id for all its calls (`DFSD_REQUEST_ID`, or a random one), so
//! one CLI command can be followed through the coordinator's and every datanode's logs.
//!
//! The status of a gRPC call is known only at its end: in the response headers for an
//! immediate error ("trailers-only"), otherwise in the trailers after the last message.
//! So the response body is wrapped, and the call is recorded when the trailers pass (or
//! when the body is dropped early, as `cancelled`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use pin_project_lite::pin_project;
use tracing::Instrument;

use crate::metrics::{self, GrpcLabels, MethodLabels};

/// Header clients may set to tie their logs to the servers'; generated when absent.
pub const REQUEST_ID_HEADER: &str = "x-request-id";

tokio::task_local! {
    static REQUEST_ID: String;
}

/// This process's request id for calls it starts itself: `DFSD_REQUEST_ID` if set (and
/// sane), else a random one.
fn process_request_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        std::env::var("DFSD_REQUEST_ID")
            .ok()
            .filter(|id| valid_id(id))
            .unwrap_or_else(new_request_id)
    })
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// Runs `fut` as the handling of request `id`: calls it makes carry that id (see [`tag`]).
pub async fn with_request_id<F: std::future::Future>(id: String, fut: F) -> F::Output {
    REQUEST_ID.scope(id, fut).await
}

/// The id of the request being served by this task, if any.
pub fn current_request_id() -> Option<String> {
    REQUEST_ID.try_with(|id| id.clone()).ok()
}

/// Puts the request id on an outgoing call: the id of the request being served (for calls
/// made on its behalf), else this process's.
pub fn tag<T>(req: &mut tonic::Request<T>) {
    let id = current_request_id().unwrap_or_else(|| process_request_id().to_string());
    if let Ok(v) = id.parse() {
        req.metadata_mut().insert(REQUEST_ID_HEADER, v);
    }
}

/// Names the namespace path a request is about in its span (and so in every line it logs).
pub fn record_path(path: &str) {
    tracing::Span::current().record("path", tracing::field::display(path));
}

/// Names the chunk a request is about in its span.
pub fn record_chunk(id: &crate::chunk::ChunkId) {
    tracing::Span::current().record("chunk", tracing::field::display(id));
}

/// The layer; `node` (a datanode's id) goes into every request span.
#[derive(Clone, Debug, Default)]
pub struct GrpcMetricsLayer {
    node: Option<String>,
}

impl GrpcMetricsLayer {
    pub fn for_node(node: &str) -> Self {
        GrpcMetricsLayer {
            node: Some(node.to_string()),
        }
    }
}

impl<S> tower::Layer<S> for GrpcMetricsLayer {
    type Service = GrpcMetrics<S>;
    fn layer(&self, inner: S) -> Self::Service {
        GrpcMetrics {
            inner,
            node: self.node.clone(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct GrpcMetrics<S> {
    inner: S,
    node: Option<String>,
}

/// "/dfs.v1.Coordinator/Stat" -> ("Coordinator", "Stat").
fn split_path(path: &str) -> (String, String) {
    let mut parts = path.trim_start_matches('/').splitn(2, '/');
    let service = parts.next().unwrap_or_default();
    let service = service.rsplit('.').next().unwrap_or(service);
    let method = parts.next().unwrap_or_default();
    if method.is_empty() {
        ("unknown".into(), "unknown".into())
    } else {
        (service.to_string(), method.to_string())
    }
}

/// The textual name of a gRPC status code ("OK", "NotFound", ...).
fn code_name(value: &[u8]) -> String {
    match tonic::Code::from_bytes(value) {
        tonic::Code::Ok => "OK".into(),
        c => format!("{c:?}"),
    }
}

/// A fresh request id (16 hex digits).
pub fn new_request_id() -> String {
    format!("{:016x}", rand::random::<u64>())
}

struct Call {
    service: String,
    method: String,
    started: Instant,
    done: bool,
    span: tracing::Span,
}

impl Call {
    fn finish(&mut self, code: String) {
        if self.done {
            return;
        }
        self.done = true;
        // The method comes from the request path, which any client can make up: only
        // methods the server knows get series of their own, so label sets stay bounded.
        if code == "Unimplemented" {
            self.service = "unknown".into();
            self.method = "unknown".into();
        }
        let secs = self.started.elapsed().as_secs_f64();
        tracing::debug!(parent: &self.span, code = %code, ms = (secs * 1000.0) as u64, "request served");
        let m = metrics::common();
        m.grpc_requests
            .get_or_create(&GrpcLabels {
                service: self.service.clone(),
                method: self.method.clone(),
                code,
            })
            .inc();
        m.grpc_duration
            .get_or_create(&MethodLabels {
                service: self.service.clone(),
                method: self.method.clone(),
            })
            .observe(secs);
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.finish("Cancelled".into());
    }
}

impl<S, ReqBody, ResBody> tower::Service<http::Request<ReqBody>> for GrpcMetrics<S>
where
    S: tower::Service<http::Request<ReqBody>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
{
    type Response = http::Response<MeteredBody<ResBody>>;
    type Error = S::Error;
    type Future =
        Pin<Box<dyn std::future::Future<Output = Result<Self::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<ReqBody>) -> Self::Future {
        let (service, method) = split_path(req.uri().path());
        let request_id = match req
            .headers()
            .get(REQUEST_ID_HEADER)
            .and_then(|v| v.to_str().ok())
        {
            Some(id) if valid_id(id) => id.to_string(),
            _ => {
                let id = new_request_id();
                if let Ok(v) = http::HeaderValue::from_str(&id) {
                    req.headers_mut().insert(REQUEST_ID_HEADER, v);
                }
                id
            }
        };
        // `path` and `chunk` are filled in by the handler once it has parsed them.
        let span = match &self.node {
            Some(node) => tracing::info_span!(
                "grpc",
                node = %node,
                method = %method,
                request_id = %request_id,
                path = tracing::field::Empty,
                chunk = tracing::field::Empty
            ),
            None => tracing::info_span!(
                "grpc",
                method = %method,
                request_id = %request_id,
                path = tracing::field::Empty,
                chunk = tracing::field::Empty
            ),
        };
        let mut call = Call {
            service,
            method,
            started: Instant::now(),
            done: false,
            span: span.clone(),
        };
        // The clone that was made ready is the one to call (tower's contract).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        Box::pin(
            async move {
                let resp = REQUEST_ID.scope(request_id, inner.call(req)).await?;
                // An immediate error carries its status in the headers.
                if let Some(code) = resp.headers().get("grpc-status") {
                    call.finish(code_name(code.as_bytes()));
                }
                Ok(resp.map(|body| MeteredBody { body, call }))
            }
            .instrument(span),
        )
    }
}

pin_project! {
    /// A response body that records its call when the trailers pass or it is dropped.
    pub struct MeteredBody<B> {
        #[pin]
        body: B,
        call: Call,
    }
}

impl<B: Body> Body for MeteredBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = self.project();
        let polled = this.body.poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(|t| t.get("grpc-status")) {
                    this.call.finish(code_name(code.as_bytes()));
                }
            }
            Poll::Ready(Some(Err(_))) => this.call.finish("Internal".into()),
            Poll::Ready(None) => this.call.finish("OK".into()),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn made_up_methods_share_one_series() {
        let call = |path: &str, code: &str| {
            let (service, method) = split_path(path);
            let mut c = Call {
                service,
                method,
                started: Instant::now(),
                done: false,
                span: tracing::Span::none(),
            };
            c.finish(code.into());
        };
        call("/dfs.v1.Coordinator/NoSuchCall1", "Unimplemented");
        call("/dfs.v1.Coordinator/NoSuchCall2", "Unimplemented");
        call("/dfs.v1.Coordinator/Stat", "NotFound");
        let text = metrics::encode();
        assert!(!text.contains("NoSuchCall"), "{text}");
        assert!(text.contains(
            "dfsd_grpc_requests_total{service=\"unknown\",method=\"unknown\",code=\"Unimplemented\"} 2"
        ));
        assert!(text.contains("service=\"Coordinator\",method=\"Stat\",code=\"NotFound\"}"));
    }

    #[test]
    fn paths_split_into_service_and_method() {
        assert_eq!(
            split_path("/dfs.v1.Coordinator/Stat"),
            ("Coordinator".into(), "Stat".into())
        );
        assert_eq!(split_path("/x"), ("unknown".into(), "unknown".into()));
        assert_eq!(code_name(b"0"), "OK");
        assert_eq!(code_name(b"5"), "NotFound");
        assert!(valid_id("put-42.a:b_c"));
        assert!(!valid_id("bad id") && !valid_id("") && !valid_id(&"x".repeat(65)));
    }
}
