//! The routes the coordinator adds to its admin endpoint beside `/metrics`: the status
//! page, for anonymous viewers or for an admin key presented with HTTP Basic.

use std::sync::Arc;

use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use base64::Engine;

use super::access::Credentials;
use super::status_page::{self, Viewer};
use super::State;
use crate::security::keys::KeyRole;

/// Why a viewer is turned away.
enum Refusal {
    /// 401 with a Basic challenge: missing, malformed or wrong credentials.
    Challenge(String),
    /// 403: a valid key that is not an admin key.
    NotAdmin(String),
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Challenge(why) => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Basic realm=\"dfsd admin\"")],
                format!("{why}: sign in with an admin access key (key id and secret)\n"),
            )
                .into_response(),
            Refusal::NotAdmin(id) => (
                StatusCode::FORBIDDEN,
                format!("access key {id} is not an admin key\n"),
            )
                .into_response(),
        }
    }
}

/// The viewer of a request, from HTTP Basic credentials (admin key id as the user name,
/// its secret as the password), checked as gRPC keys are. No credentials: anonymous,
/// unless `login` asks for them.
fn viewer(state: &State, headers: &HeaderMap, login: bool) -> Result<Viewer, Refusal> {
    if state.cfg.status_page_paths || !state.cfg.auth {
        return Ok(Viewer::Admin);
    }
    let challenge = |why: &str| Refusal::Challenge(why.to_string());
    let Some(value) = headers.get(header::AUTHORIZATION) else {
        return if login {
            Err(challenge("no credentials"))
        } else {
            Ok(Viewer::Anonymous)
        };
    };
    let creds = value
        .to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Basic "))
        .and_then(|b| {
            base64::engine::general_purpose::STANDARD
                .decode(b.trim())
                .ok()
        })
        .and_then(|b| String::from_utf8(b).ok());
    let Some((id, secret)) = creds.as_deref().and_then(|c| c.split_once(':')) else {
        return Err(challenge("malformed Authorization header"));
    };
    let creds = Credentials {
        key_id: Some(id),
        secret: Some(secret),
        ..Credentials::default()
    };
    match state.authenticate(creds) {
        Ok(Some(p)) if p.role == KeyRole::Admin => Ok(Viewer::Admin),
        Ok(_) => Err(Refusal::NotAdmin(id.to_string())),
        Err(e) => Err(challenge(&e.to_string())),
    }
}

/// Routes the coordinator adds to its admin endpoint: the status page at `/`. `/?login`
/// asks the browser for credentials.
pub fn routes(state: Arc<State>) -> Router {
    Router::new().route(
        "/",
        axum::routing::get(move |headers: HeaderMap, query: axum::extract::RawQuery| {
            let state = state.clone();
            async move {
                let login = query.0.is_some_and(|q| q.split('&').any(|p| p == "login"));
                match viewer(&state, &headers, login) {
                    Ok(v) => Html(status_page::render(&state, v).await).into_response(),
                    Err(r) => r.into_response(),
                }
            }
        }),
    )
}
