//! What every S3 request passes through around s3s: a request id (the one dfsd traces:
//! the gateway's coordinator calls carry it), returned as `x-amz-request-id` and as
//! `<RequestId>` in error bodies; presigned URLs' expiry checked as S3 checks it (s3s
//! accepts any); CORS preflight (`OPTIONS`) answered from the bucket's rules, and the
//! `Access-Control-*` headers of actual cross-origin responses.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, StatusCode};
use s3s::service::S3Service;
use s3s::{HttpError, HttpRequest, HttpResponse};

use super::cors;
use super::response::{error_response, xml_escape};
use crate::client::Client;
use crate::grpc_layer::{new_request_id, with_request_id};

/// S3's longest presigned URL lifetime: 7 days.
const MAX_PRESIGN_SECS: i64 = 604_800;

/// The S3 service with what surrounds it. Cheap to clone.
#[derive(Clone)]
pub struct Front {
    inner: Arc<Inner>,
}

struct Inner {
    s3: S3Service,
    /// The gateway's own client (bucket CORS rules for unsigned preflights).
    client: Client,
}

impl Front {
    pub fn new(s3: S3Service, client: Client) -> Front {
        Front {
            inner: Arc::new(Inner { s3, client }),
        }
    }

    pub async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let id = new_request_id();
        // A HEAD answer has no body to carry the id (HTTP/2 refuses one outright).
        let head = req.method() == Method::HEAD;
        let mut resp = with_request_id(id.clone(), self.handle(req)).await?;
        if let Ok(v) = HeaderValue::from_str(&id) {
            resp.headers_mut().insert("x-amz-request-id", v);
        }
        if head {
            // s3s gives HEAD errors an XML body; an HTTP/2 peer takes DATA on a HEAD
            // answer as a protocol error (curl: "stream error"), so none is sent.
            *resp.body_mut() = s3s::Body::empty();
        } else if resp.status().as_u16() >= 400 {
            add_request_id(&mut resp, &id);
        }
        Ok(resp)
    }

    async fn handle(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        if let Some(refusal) = presign_refusal(req.uri().query().unwrap_or("")) {
            return Ok(refusal);
        }
        if anonymous_write(&req) {
            // Refused here, after reading (a bounded part of) the body: answering an
            // HTTP/2 request before its body arrived makes clients such as curl drop the
            // answer as a stream error. s3s's access check (`acl::AnonymousAccess`) would
            // refuse it too.
            drain(req.into_body()).await;
            return Ok(error_response(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Access Denied",
            ));
        }
        let bucket = bucket_of(req.uri().path());
        if req.method() == Method::OPTIONS {
            return Ok(cors::preflight(&self.inner.client, bucket.as_deref(), req.headers()).await);
        }
        let origin = req.headers().get(http::header::ORIGIN).cloned();
        let method = req.method().clone();
        let mut resp = self.inner.s3.call(req).await?;
        if let (Some(origin), Some(bucket)) = (origin, bucket) {
            cors::decorate(&self.inner.client, &bucket, &origin, &method, &mut resp).await;
        }
        Ok(resp)
    }
}

/// Most of an anonymous write's body read before it is refused.
const DRAIN_BYTES: usize = 1024 * 1024;

/// An unsigned request that is no read: anonymous callers may only read (public-read
/// buckets, `acl.rs`). Browser POST uploads (a signed form) are left to s3s.
fn anonymous_write(req: &HttpRequest) -> bool {
    let read = matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let q = req.uri().query().unwrap_or("");
    let signed = req.headers().contains_key(http::header::AUTHORIZATION)
        || q.contains("X-Amz-Signature=")
        || q.contains("Signature=");
    let form = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("multipart/form-data"));
    !read && !signed && !form
}

async fn drain(mut body: s3s::Body) {
    use futures::StreamExt;
    let mut read = 0;
    while let Some(Ok(chunk)) = body.next().await {
        read += chunk.len();
        if read >= DRAIN_BYTES {
            break;
        }
    }
}

/// The bucket of a path-style request (`/BUCKET/...`), if any.
fn bucket_of(path: &str) -> Option<String> {
    let b = path.trim_start_matches('/').split('/').next()?;
    (!b.is_empty()).then(|| b.to_string())
}

/// 403 AuthorizationQueryParametersError for a presigned URL whose `X-Amz-Expires` is
/// not a whole number of seconds from 0 to 7 days, as S3 answers.
fn presign_refusal(query: &str) -> Option<HttpResponse> {
    let raw = query.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        k.eq_ignore_ascii_case("X-Amz-Expires").then_some(v)
    })?;
    let message = match raw.parse::<i64>() {
        Ok(n) if n < 0 => "X-Amz-Expires must be non-negative",
        Ok(n) if n > MAX_PRESIGN_SECS => {
            "X-Amz-Expires must be less than a week (in seconds) that is 604800"
        }
        Ok(_) => return None,
        Err(_) => "X-Amz-Expires should be a number",
    };
    Some(error_response(
        StatusCode::FORBIDDEN,
        "AuthorizationQueryParametersError",
        message,
    ))
}

/// Puts `<RequestId>` into an error body that has none.
fn add_request_id(resp: &mut HttpResponse, id: &str) {
    let Some(body) = resp.body().bytes() else {
        return;
    };
    let text = String::from_utf8_lossy(&body);
    if text.contains("<RequestId>") {
        return;
    }
    let Some(at) = text.rfind("</Error>") else {
        return;
    };
    let new = format!(
        "{}<RequestId>{}</RequestId>{}",
        &text[..at],
        xml_escape(id),
        &text[at..]
    );
    let len = new.len();
    *resp.body_mut() = s3s::Body::from(Bytes::from(new));
    if resp.headers().contains_key(http::header::CONTENT_LENGTH) {
        resp.headers_mut()
            .insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presigned_expiry_within_a_week() {
        for ok in ["X-Amz-Expires=0", "a=b&X-Amz-Expires=604800", "x=1"] {
            assert!(presign_refusal(ok).is_none(), "{ok}");
        }
        for bad in [
            "X-Amz-Expires=-1",
            "X-Amz-Expires=604801",
            "X-Amz-Expires=soon",
        ] {
            let r = presign_refusal(bad).unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{bad}");
        }
    }

    #[test]
    fn request_ids_go_into_error_bodies() {
        let mut r = error_response(StatusCode::NOT_FOUND, "NoSuchKey", "gone <x>");
        add_request_id(&mut r, "abc123");
        let body = String::from_utf8(r.body().bytes().unwrap().to_vec()).unwrap();
        assert!(
            body.ends_with(
                "<Message>gone &lt;x&gt;</Message><RequestId>abc123</RequestId></Error>"
            ),
            "{body}"
        );
        assert_eq!(bucket_of("/bkt/a/b").as_deref(), Some("bkt"));
        assert_eq!(bucket_of("/"), None);
    }
}
