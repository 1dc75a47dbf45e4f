//! Who may call the gateway: S3 callers sign with dfsd access keys. The S3 access key id
//! is the dfsd key id and the S3 secret is the key's secret; the key's role decides what
//! the caller may do (admin and readwrite: read and write; readonly: read).
//!
//! SigV4 verification needs the secret itself, so [`S3Keys`] asks the coordinator for it
//! (GetS3Credential, which answers only a gateway certificate, or an admin key without
//! TLS) and keeps the answers for a short while:
//!
//! - a secret for `ttl` (30 s by default), so a revoked key can still sign requests for up
//!   to that long; calls made on the caller's behalf (`Client::on_behalf_of`) are refused
//!   by the coordinator at once;
//! - a refusal (unknown or revoked key, or one made before S3 support) for at most
//!   [`REFUSAL_TTL`], so a flood of requests with unknown ids costs the coordinator one
//!   call per id every few seconds; at most [`MAX_LOOKUPS`] lookups run at a time, and
//!   ids that are not dfsd key ids are refused without asking;
//! - at most [`MAX_ENTRIES`] entries: expired ones are dropped first, then the oldest.
//!
//! An unreachable coordinator is a ServiceUnavailable (503), never a 403, and is not
//! remembered.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};
use tokio::sync::Semaphore;

use crate::client::{Client, ClientError};
use crate::security::keys::{check_key_id, KeyRole};

/// Longest a refusal is remembered.
pub const REFUSAL_TTL: Duration = Duration::from_secs(5);
/// Most keys remembered.
pub const MAX_ENTRIES: usize = 10_000;
/// Most coordinator lookups in flight.
pub const MAX_LOOKUPS: usize = 8;

/// What an S3 key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Role {
    ReadWrite,
    ReadOnly,
}

impl S3Role {
    fn of(role: KeyRole) -> S3Role {
        match role {
            KeyRole::Admin | KeyRole::ReadWrite => S3Role::ReadWrite,
            KeyRole::ReadOnly => S3Role::ReadOnly,
        }
    }
}

#[derive(Clone)]
enum Answer {
    Key {
        secret: SecretKey,
        role: S3Role,
    },
    /// The coordinator refused the id; its message.
    Refused(String),
}

struct Cached {
    at: Instant,
    answer: Answer,
}

struct Inner {
    /// The gateway's own client (its certificate, or its admin key without TLS).
    client: Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, Cached>>,
    lookups: Semaphore,
}

/// The S3 credentials the gateway accepts: dfsd access keys, looked up at the
/// coordinator and cached. Cheap to clone (the clones share the cache).
#[derive(Clone)]
pub struct S3Keys {
    inner: Arc<Inner>,
}

impl S3Keys {
    /// Looks keys up through `client` (the gateway's own), keeping secrets for `ttl`.
    pub fn new(client: Client, ttl: Duration) -> S3Keys {
        S3Keys {
            inner: Arc::new(Inner {
                client,
                ttl,
                cache: Mutex::new(HashMap::new()),
                lookups: Semaphore::new(MAX_LOOKUPS),
            }),
        }
    }

    /// The role of an authenticated key (`None`: unknown or refused key). s3s asks for the
    /// secret (refreshing a stale entry) before a request reaches a handler, so this is the
    /// role the coordinator gave within the last `ttl`.
    pub fn role(&self, access_key: &str) -> Option<S3Role> {
        match self.lock().get(access_key).map(|c| &c.answer) {
            Some(Answer::Key { role, .. }) => Some(*role),
            _ => None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.inner.cache.locked()
    }

    fn lifetime(&self, a: &Answer) -> Duration {
        match a {
            Answer::Key { .. } => self.inner.ttl,
            Answer::Refused(_) => self.inner.ttl.min(REFUSAL_TTL),
        }
    }

    /// The cached answer for `id`, unless it is too old.
    fn fresh(&self, id: &str) -> Option<Answer> {
        let cache = self.lock();
        let c = cache.get(id)?;
        (c.at.elapsed() < self.lifetime(&c.answer)).then(|| c.answer.clone())
    }

    fn remember(&self, id: &str, answer: Answer) {
        let mut cache = self.lock();
        if cache.len() >= MAX_ENTRIES && !cache.contains_key(id) {
            cache.retain(|_, c| c.at.elapsed() < self.lifetime(&c.answer));
            if cache.len() >= MAX_ENTRIES {
                let oldest = cache
                    .iter()
                    .min_by_key(|(_, c)| c.at)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    cache.remove(&k);
                }
            }
        }
        cache.insert(
            id.to_string(),
            Cached {
                at: Instant::now(),
                answer,
            },
        );
    }

    /// Asks the coordinator; remembers keys and refusals, not failures.
    async fn look_up(&self, id: &str) -> S3Result<Answer> {
        let refused = |e: &ClientError| match e {
            ClientError::NotFound(m)
            | ClientError::PermissionDenied(m)
            | ClientError::Precondition(m) => m.clone(),
            other => other.to_string(),
        };
        let answer = match self.inner.client.s3_credential(id).await {
            // An unknown role fails to decode (`ClientError::Malformed`): InternalError below.
            Ok(c) => Answer::Key {
                secret: SecretKey::from(c.secret),
                role: S3Role::of(c.role),
            },
            Err(e) => match e {
                ClientError::NotFound(_)
                | ClientError::PermissionDenied(_)
                | ClientError::Precondition(_) => Answer::Refused(refused(&e)),
                ClientError::Unavailable(_)
                | ClientError::Unreachable { .. }
                | ClientError::LimitExceeded(_) => {
                    tracing::warn!(error = %e, "coordinator unavailable for an S3 key lookup");
                    return Err(s3_error!(
                        ServiceUnavailable,
                        "the cluster is not reachable; try again"
                    ));
                }
                _ => {
                    tracing::error!(key = %id, error = %e, "S3 key lookup failed");
                    return Err(s3_error!(InternalError, "the S3 key lookup failed"));
                }
            },
        };
        self.remember(id, answer.clone());
        Ok(answer)
    }
}

impl Answer {
    fn into_result(self) -> S3Result<SecretKey> {
        match self {
            Answer::Key { secret, .. } => Ok(secret),
            Answer::Refused(why) => Err(s3_error!(InvalidAccessKeyId, "{why}")),
        }
    }
}

#[async_trait::async_trait]
impl S3Auth for S3Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        if check_key_id(access_key).is_err() {
            return Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            ));
        }
        if let Some(a) = self.fresh(access_key) {
            return a.into_result();
        }
        let _permit = self
            .inner
            .lookups
            .acquire()
            .await
            .map_err(|_| s3_error!(ServiceUnavailable, "the gateway is shutting down"))?;
        // Another request may have looked the key up while this one waited.
        if let Some(a) = self.fresh(access_key) {
            return a.into_result();
        }
        self.look_up(access_key).await?.into_result()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClientConfig;

    /// A client aimed at a closed port: every lookup fails as unreachable.
    fn keys(ttl: Duration) -> S3Keys {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let cfg = ClientConfig {
            coordinator: format!("127.0.0.1:{port}"),
            connect_timeout: Duration::from_millis(500),
            ..ClientConfig::default()
        };
        S3Keys::new(Client::new(&cfg).unwrap(), ttl)
    }

    const ID: &str = "DKAAAAAAAAAAAAAAAAAA";

    #[tokio::test]
    async fn ids_that_are_not_dfsd_keys_are_refused_without_a_lookup() {
        let k = keys(Duration::from_secs(30));
        let e = k.get_secret_key("AKIDEXAMPLE").await.unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidAccessKeyId);
    }

    #[tokio::test]
    async fn an_unreachable_coordinator_is_service_unavailable_and_not_remembered() {
        let k = keys(Duration::from_secs(30));
        let e = k.get_secret_key(ID).await.unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::ServiceUnavailable);
        assert!(k.lock().is_empty());
        assert_eq!(k.role(ID), None);
    }

    #[tokio::test]
    async fn answers_are_served_from_the_cache_until_they_expire() {
        let k = keys(Duration::from_secs(30));
        k.remember(
            ID,
            Answer::Key {
                secret: SecretKey::from("s3cret"),
                role: S3Role::ReadOnly,
            },
        );
        assert_eq!(k.get_secret_key(ID).await.unwrap().expose(), "s3cret");
        assert_eq!(k.role(ID), Some(S3Role::ReadOnly));
        let other = "DKBBBBBBBBBBBBBBBBBB";
        k.remember(
            other,
            Answer::Refused("access key DKB... has been revoked".into()),
        );
        let e = k.get_secret_key(other).await.unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::InvalidAccessKeyId);
        assert!(e.message().unwrap().contains("revoked"));
        assert_eq!(k.role(other), None);
        // Expired: asked again (and the coordinator is unreachable here).
        k.lock().get_mut(ID).unwrap().at -= Duration::from_secs(31);
        let e = k.get_secret_key(ID).await.unwrap_err();
        assert_eq!(e.code(), &s3s::S3ErrorCode::ServiceUnavailable);
        // The role of a key that signed a request stays known until it is replaced.
        assert_eq!(k.role(ID), Some(S3Role::ReadOnly));
        // Refusals are kept for REFUSAL_TTL at most.
        k.lock().get_mut(other).unwrap().at -= REFUSAL_TTL;
        assert!(k.fresh(other).is_none());
    }

    #[test]
    fn the_cache_is_bounded() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let _guard = rt.enter();
        let k = keys(Duration::from_secs(30));
        for i in 0..MAX_ENTRIES + 10 {
            k.remember(&format!("DK{i:018}"), Answer::Refused(String::new()));
        }
        assert_eq!(k.lock().len(), MAX_ENTRIES);
        // The newest is kept.
        assert!(k.fresh(&format!("DK{:018}", MAX_ENTRIES + 9)).is_some());
    }
}
