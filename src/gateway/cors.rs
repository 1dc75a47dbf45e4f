//! CORS: a bucket's rules (Put/Get/DeleteBucketCors) are stored by the coordinator with
//! the bucket (SetBucket, as JSON of [`Rule`]); preflight `OPTIONS` requests are answered
//! from them, and actual requests that carry an `Origin` get the `Access-Control-*`
//! headers of the first rule that matches, as S3 does. The gateway reads the rules with
//! its own identity: a preflight is unsigned.

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use s3s::dto::{CORSConfiguration, CORSRule};
use s3s::{s3_error, HttpResponse, S3Result};
use serde::{Deserialize, Serialize};

use super::response::error_response;
use crate::client::Client;

/// Most rules in a configuration (S3's limit).
const MAX_RULES: usize = 100;

/// One CORS rule as stored.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    pub allowed_origins: Vec<String>,
    pub allowed_methods: Vec<String>,
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    #[serde(default)]
    pub expose_headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<i32>,
}

const METHODS: [&str; 5] = ["GET", "PUT", "HEAD", "POST", "DELETE"];

/// The stored form of a PutBucketCors body, refusing what S3 refuses.
pub fn to_json(cfg: &CORSConfiguration) -> S3Result<String> {
    if cfg.cors_rules.is_empty() || cfg.cors_rules.len() > MAX_RULES {
        return Err(s3_error!(
            MalformedXML,
            "a CORS configuration has 1 to {MAX_RULES} rules"
        ));
    }
    let mut rules = Vec::with_capacity(cfg.cors_rules.len());
    for r in &cfg.cors_rules {
        if let Some(m) = r
            .allowed_methods
            .iter()
            .find(|m| !METHODS.contains(&m.as_str()))
        {
            return Err(s3_error!(
                InvalidRequest,
                "Found unsupported HTTP method in CORS config. Unsupported method is {m}"
            ));
        }
        if r.allowed_origins.iter().any(|o| o.matches('*').count() > 1) {
            return Err(s3_error!(
                InvalidRequest,
                "an AllowedOrigin can have at most one '*' wildcard"
            ));
        }
        rules.push(Rule {
            id: r.id.clone(),
            allowed_origins: r.allowed_origins.clone(),
            allowed_methods: r.allowed_methods.clone(),
            allowed_headers: r.allowed_headers.clone().unwrap_or_default(),
            expose_headers: r.expose_headers.clone().unwrap_or_default(),
            max_age_seconds: r.max_age_seconds,
        });
    }
    serde_json::to_string(&rules).map_err(|e| s3_error!(InternalError, "{e}"))
}

/// The S3 form of stored rules.
pub fn from_json(text: &str) -> Vec<CORSRule> {
    parse(text)
        .into_iter()
        .map(|r| CORSRule {
            id: r.id,
            allowed_origins: r.allowed_origins,
            allowed_methods: r.allowed_methods,
            allowed_headers: (!r.allowed_headers.is_empty()).then_some(r.allowed_headers),
            expose_headers: (!r.expose_headers.is_empty()).then_some(r.expose_headers),
            max_age_seconds: r.max_age_seconds,
        })
        .collect()
}

fn parse(text: &str) -> Vec<Rule> {
    serde_json::from_str(text).unwrap_or_default()
}

/// `pattern` (at most one `*`) matches `value`, ignoring ASCII case when `fold`.
fn wildcard(pattern: &str, value: &str, fold: bool) -> bool {
    let (p, v) = if fold {
        (pattern.to_ascii_lowercase(), value.to_ascii_lowercase())
    } else {
        (pattern.to_string(), value.to_string())
    };
    match p.split_once('*') {
        None => p == v,
        Some((a, b)) => v.len() >= a.len() + b.len() && v.starts_with(a) && v.ends_with(b),
    }
}

/// The first rule allowing `origin`, `method` and every header of `headers`.
fn matching<'a>(
    rules: &'a [Rule],
    origin: &str,
    method: &str,
    headers: &[&str],
) -> Option<&'a Rule> {
    rules.iter().find(|r| {
        r.allowed_origins.iter().any(|o| wildcard(o, origin, false))
            && r.allowed_methods.iter().any(|m| m == method)
            && headers
                .iter()
                .all(|h| r.allowed_headers.iter().any(|a| wildcard(a, h, true)))
    })
}

async fn rules_of(c: &Client, bucket: &str) -> Vec<Rule> {
    match c.get_bucket(&format!("/{bucket}")).await {
        Ok(b) => parse(b.cors.as_deref().unwrap_or_default()),
        Err(e) => {
            tracing::debug!(bucket, error = %e, "no CORS rules");
            Vec::new()
        }
    }
}

fn set(h: &mut HeaderMap, name: &'static str, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        h.insert(name, v);
    }
}

/// The headers a matching rule grants `origin`.
fn grant(h: &mut HeaderMap, r: &Rule, origin: &str) {
    let any = r.allowed_origins.iter().any(|o| o == "*");
    set(
        h,
        "access-control-allow-origin",
        if any { "*" } else { origin },
    );
    if !any {
        set(h, "access-control-allow-credentials", "true");
    }
    set(
        h,
        "access-control-allow-methods",
        &r.allowed_methods.join(", "),
    );
    if !r.expose_headers.is_empty() {
        set(
            h,
            "access-control-expose-headers",
            &r.expose_headers.join(", "),
        );
    }
    if let Some(age) = r.max_age_seconds {
        set(h, "access-control-max-age", &age.to_string());
    }
    set(
        h,
        "vary",
        "Origin, Access-Control-Request-Headers, Access-Control-Request-Method",
    );
}

/// Answers a preflight `OPTIONS` request for `bucket`.
pub async fn preflight(c: &Client, bucket: Option<&str>, req: &HeaderMap) -> HttpResponse {
    let get = |n: &str| req.get(n).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(bucket), Some(origin), Some(method)) =
        (bucket, get("origin"), get("access-control-request-method"))
    else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "Insufficient information. Origin request header needed.",
        );
    };
    let asked = get("access-control-request-headers").unwrap_or_default();
    let headers: Vec<&str> = asked
        .split(',')
        .map(str::trim)
        .filter(|h| !h.is_empty())
        .collect();
    let rules = rules_of(c, bucket).await;
    let Some(rule) = matching(&rules, &origin, &method, &headers) else {
        return error_response(
            StatusCode::FORBIDDEN,
            "AccessForbidden",
            "CORSResponse: This CORS request is not allowed. This is usually because the \
             evalution of Origin, request method / Access-Control-Request-Method or \
             Access-Control-Request-Headers are not whitelisted by the resource's CORS spec.",
        );
    };
    let mut resp = HttpResponse::new(s3s::Body::empty());
    grant(resp.headers_mut(), rule, &origin);
    if !headers.is_empty() {
        set(
            resp.headers_mut(),
            "access-control-allow-headers",
            &headers.join(", "),
        );
    }
    resp
}

/// Adds the `Access-Control-*` headers to an actual response for a request from `origin`.
pub async fn decorate(
    c: &Client,
    bucket: &str,
    origin: &HeaderValue,
    method: &Method,
    resp: &mut HttpResponse,
) {
    let Ok(origin) = origin.to_str() else { return };
    let rules = rules_of(c, bucket).await;
    if let Some(rule) = matching(&rules, origin, method.as_str(), &[]) {
        grant(resp.headers_mut(), rule, origin);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_origins_methods_and_headers() {
        let rules = vec![Rule {
            allowed_origins: vec!["https://*.example.com".into()],
            allowed_methods: vec!["GET".into(), "PUT".into()],
            allowed_headers: vec!["x-amz-*".into(), "Content-Type".into()],
            ..Default::default()
        }];
        let ok = matching(
            &rules,
            "https://app.example.com",
            "PUT",
            &["content-type", "X-Amz-Date"],
        );
        assert!(ok.is_some());
        assert!(matching(&rules, "https://evil.com", "GET", &[]).is_none());
        assert!(matching(&rules, "https://app.example.com", "DELETE", &[]).is_none());
        assert!(matching(&rules, "https://app.example.com", "GET", &["authorization"]).is_none());
        assert!(wildcard("*", "anything", false));
    }
}
