//! Access-key management behind the admin calls: creating a key (its S3 secret sealed),
//! revoking one (never the last valid admin key), with the in-memory copy kept current.

use thiserror::Error;

use super::State;
use crate::meta::MetaError;
use crate::model::now_ms;
use crate::path::DfsPath;
use crate::security::keys::{self, AccessKey, KeyRole};

/// Why a key could not be created or revoked.
#[derive(Debug, Error)]
pub enum KeyError {
    #[error("key name: 1 to 64 characters, no control characters")]
    BadName,
    #[error("{0} is the last valid admin key: create another admin key first")]
    LastAdmin(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl State {
    /// Creates a key named `name` (trimmed): returns it and its secret, shown only now.
    pub async fn create_key(
        &self,
        name: &str,
        role: KeyRole,
        prefix: DfsPath,
    ) -> Result<(AccessKey, String), KeyError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
            return Err(KeyError::BadName);
        }
        let (id, secret, salt, secret_hash) = keys::generate();
        let key = AccessKey {
            s3_secret_sealed: Some(self.s3_seal.seal(&id, &secret)),
            id,
            name,
            role,
            prefix,
            salt,
            secret_hash,
            created_ms: now_ms(),
            revoked_ms: None,
        };
        self.store.insert_key(&key).await?;
        tracing::info!(key = %key.id, name = %key.name, role = key.role.as_str(),
            prefix = %key.prefix, "access key created");
        self.cache_key(key.clone());
        Ok((key, secret))
    }

    /// Revokes key `id` (a valid id), unless it is the last valid admin key of a cluster
    /// with authentication on.
    pub async fn revoke_key(&self, id: &str) -> Result<AccessKey, KeyError> {
        if self.cfg.auth && self.other_admin_keys(id) == 0 {
            return Err(KeyError::LastAdmin(id.to_string()));
        }
        let key = self.store.revoke_key(id, now_ms()).await?;
        tracing::info!(key = %key.id, "access key revoked");
        self.cache_key(key.clone());
        Ok(key)
    }
}
