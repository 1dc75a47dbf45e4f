//! Who is calling, and the S3 secrets gateways may read.
//!
//! Every Coordinator call passes [`State::authenticate`] (an interceptor) before a handler
//! runs. A caller is one of:
//!
//! - an access key (`x-dfsd-key-id` + `x-dfsd-secret`): the usual case;
//! - a gateway acting for the key that signed an S3 request: `x-dfsd-on-behalf-of: KEYID`
//!   makes the call run with that key's role and prefix, so every check of the handlers
//!   applies to the S3 caller, not to the gateway. Honoured only from a gateway certificate
//!   or, in plaintext mode where there is no certificate to check, from an admin key;
//!   anyone else sending it is refused. The named key must exist and not be revoked, and
//!   it is looked up on every call, so a revocation applies to the next one;
//!   `anonymous:BUCKET` stands for an anonymous S3 caller of a public-read bucket: a
//!   read-only principal confined to that bucket, while it is public (`buckets.rs`);
//! - a gateway certificate without a key: no principal. GetS3Credential and GetBucket
//!   accept that; every other handler refuses it as unauthenticated.
//!
//! GetS3Credential ([`State::s3_credential`]) opens a key's sealed secret for a gateway,
//! which needs it to verify SigV4 signatures.

use crate::sync::ReadWriteLocked;
use anyhow::Context;

use super::State;
use crate::config::CoordinatorConfig;
use crate::meta::MetaStore;
use crate::model::now_ms;
use crate::path::DfsPath;
use crate::security::keys::{self, AccessKey, KeyRole, Principal, ON_BEHALF_HEADER};
use crate::security::seal::SealKey;
use crate::security::Denied;

/// What a call says about its caller, read off the call by the server's transport (the
/// interceptor in `mod.rs`) or by the status page: empty headers count as absent.
#[derive(Debug, Default, Clone, Copy)]
pub struct Credentials<'a> {
    /// `x-dfsd-key-id`.
    pub key_id: Option<&'a str>,
    /// `x-dfsd-secret`.
    pub secret: Option<&'a str>,
    /// `x-dfsd-on-behalf-of`.
    pub on_behalf_of: Option<&'a str>,
    /// The caller presented a gateway certificate (only with TLS).
    pub gateway_cert: bool,
}

/// Why GetS3Credential refused a key.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("{0}")]
    BadKeyId(Denied),
    #[error("access key {0} does not exist")]
    NoSuchKey(String),
    #[error("access key {0} has been revoked")]
    Revoked(String),
    #[error(
        "access key {0} was created before S3 support and cannot sign S3 requests: \
         create a new key (`dfsd key create`) and revoke this one"
    )]
    NoS3Secret(String),
    #[error("the S3 secret of access key {key}: {cause}")]
    Unsealable { key: String, cause: String },
}

/// What GetS3Credential hands a gateway.
pub struct S3Credential {
    pub secret: String,
    pub role: KeyRole,
    pub prefix: DfsPath,
}

impl State {
    /// Who is calling, from the call's metadata and TLS peer (see the module docs).
    /// `None`: a gateway certificate and nothing else.
    pub fn authenticate(&self, c: Credentials<'_>) -> Result<Option<Principal>, Denied> {
        let tls_on = self.tls.is_some();
        let gateway = tls_on && c.gateway_cert;
        let sent_key = c.key_id.is_some() || c.secret.is_some();
        // A key is checked whenever one is sent; a gateway certificate needs none.
        let own = if gateway && !sent_key && self.cfg.auth {
            None
        } else {
            Some(self.key_principal(&c)?)
        };
        let Some(target) = c.on_behalf_of else {
            return Ok(own);
        };
        if tls_on && !gateway {
            return Err(Denied::Forbidden(format!(
                "{ON_BEHALF_HEADER} is honoured only from a gateway certificate"
            )));
        }
        if !tls_on {
            // No certificate to check: delegation takes an admin key.
            let admin = own.as_ref().is_some_and(|p| p.role == KeyRole::Admin);
            if !admin {
                return Err(Denied::Forbidden(format!(
                    "{ON_BEHALF_HEADER} needs an admin key when the cluster runs without TLS"
                )));
            }
        }
        self.delegate(target).map(Some)
    }

    /// The principal of the access key in the call's metadata.
    fn key_principal(&self, c: &Credentials<'_>) -> Result<Principal, Denied> {
        if !self.cfg.auth {
            return Ok(Principal::open());
        }
        let (Some(id), Some(secret)) = (c.key_id, c.secret) else {
            return Err(Denied::Unauthenticated(
                "no access key: set DFSD_ACCESS_KEY and DFSD_SECRET_KEY (see `dfsd key create`)"
                    .into(),
            ));
        };
        keys::check_key_id(id)?;
        let keys = self.keys.read_locked();
        let Some(key) = keys.get(id) else {
            return Err(Denied::Unauthenticated(format!("unknown access key {id}")));
        };
        if key.revoked_ms.is_some() {
            return Err(Denied::Unauthenticated(format!(
                "access key {id} has been revoked"
            )));
        }
        if !key.secret_matches(secret) {
            return Err(Denied::Unauthenticated(format!(
                "wrong secret for access key {id}"
            )));
        }
        Ok(Principal::of(key))
    }

    /// The principal of the key a gateway acts for: it must exist and be valid now.
    fn delegate(&self, id: &str) -> Result<Principal, Denied> {
        if let Some(bucket) = id.strip_prefix(super::buckets::ANONYMOUS_PREFIX) {
            return self.anonymous(bucket);
        }
        keys::check_key_id(id)
            .map_err(|d| Denied::Unauthenticated(format!("{ON_BEHALF_HEADER}: {d}")))?;
        let keys = self.keys.read_locked();
        match keys.get(id) {
            None => Err(Denied::Unauthenticated(format!(
                "{ON_BEHALF_HEADER}: unknown access key {id}"
            ))),
            Some(k) if k.revoked_ms.is_some() => Err(Denied::Unauthenticated(format!(
                "access key {id} has been revoked"
            ))),
            Some(k) => Ok(Principal::of(k)),
        }
    }

    /// The S3 secret, role and prefix of the key `id`, for a gateway (the caller has been
    /// checked). Nothing secret is logged.
    pub fn s3_credential(&self, id: &str) -> Result<S3Credential, CredentialError> {
        keys::check_key_id(id).map_err(CredentialError::BadKeyId)?;
        let key = self.keys.read_locked().get(id).cloned();
        let Some(key) = key else {
            return Err(CredentialError::NoSuchKey(id.into()));
        };
        if key.revoked_ms.is_some() {
            return Err(CredentialError::Revoked(id.into()));
        }
        let Some(sealed) = &key.s3_secret_sealed else {
            return Err(CredentialError::NoS3Secret(id.into()));
        };
        let secret = self.s3_seal.open(id, sealed).map_err(|e| {
            tracing::error!(key = %id, error = %e, "cannot open the sealed S3 secret");
            CredentialError::Unsealable {
                key: id.into(),
                cause: e.to_string(),
            }
        })?;
        Ok(S3Credential {
            secret,
            role: key.role,
            prefix: key.prefix,
        })
    }
}

/// Loads the access keys, creating the first admin key when there is none yet: the one
/// configured, or a new one printed once on standard output. Its secret is sealed for S3
/// like any key's.
pub(super) async fn bootstrap_keys(
    store: &dyn MetaStore,
    cfg: &CoordinatorConfig,
    seal: &SealKey,
) -> anyhow::Result<Vec<AccessKey>> {
    let existing = store.list_keys().await.context("load access keys")?;
    if !existing.is_empty() || !cfg.auth {
        return Ok(existing);
    }
    let (id, secret, salt, hash, generated) = if cfg.admin_key_id.is_empty() {
        let (id, secret, salt, hash) = keys::generate();
        (id, secret, salt, hash, true)
    } else {
        let (_, _, salt, _) = keys::generate();
        let hash = keys::hash_secret(&salt, &cfg.admin_secret);
        (
            cfg.admin_key_id.clone(),
            cfg.admin_secret.clone(),
            salt,
            hash,
            false,
        )
    };
    let key = AccessKey {
        id: id.clone(),
        name: "admin".into(),
        role: KeyRole::Admin,
        prefix: DfsPath::root(),
        salt,
        secret_hash: hash,
        created_ms: now_ms(),
        revoked_ms: None,
        s3_secret_sealed: Some(seal.seal(&id, &secret)),
    };
    store
        .insert_key(&key)
        .await
        .context("store the first admin key")?;
    if generated {
        // Shown once: only a hash and the sealed copy are kept.
        println!(
            "dfsd: created the first admin access key; it is shown only now:\n\
             DFSD_ACCESS_KEY={id}\nDFSD_SECRET_KEY={secret}"
        );
    }
    tracing::info!(key = %id, generated, "first admin access key created");
    Ok(vec![key])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::security::keys::{KEY_ID_HEADER, SECRET_HEADER};
    use std::sync::Arc;

    const ADMIN: (&str, &str) = ("DKADMIN0000000000000", "admin-secret-0123456789");

    /// A plaintext coordinator state with authentication on and the admin key above.
    async fn state(dir: &std::path::Path) -> Arc<State> {
        let cfg = CoordinatorConfig {
            data_dir: dir.to_path_buf(),
            admin_key_id: ADMIN.0.into(),
            admin_secret: ADMIN.1.into(),
            ..CoordinatorConfig::default()
        };
        State::open(cfg, None).await.unwrap()
    }

    /// Adds a key (with a sealed S3 secret unless `sealed` is false, as for keys made
    /// before migration 004) and returns its secret.
    fn add_key(st: &State, id: &str, role: KeyRole, prefix: &str, sealed: bool) -> String {
        let (_, secret, salt, hash) = keys::generate();
        st.cache_key(AccessKey {
            id: id.into(),
            name: id.into(),
            role,
            prefix: DfsPath::parse(prefix).unwrap(),
            salt,
            secret_hash: hash,
            created_ms: 0,
            revoked_ms: None,
            s3_secret_sealed: sealed.then(|| st.s3_seal.seal(id, &secret)),
        });
        secret
    }

    fn req<'a>(headers: &[(&'static str, &'a str)]) -> Credentials<'a> {
        let get = |name: &str| headers.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
        Credentials {
            key_id: get(KEY_ID_HEADER),
            secret: get(SECRET_HEADER),
            on_behalf_of: get(ON_BEHALF_HEADER),
            gateway_cert: false,
        }
    }

    #[tokio::test]
    async fn without_tls_only_an_admin_key_may_act_for_another_key() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path()).await;
        add_key(
            &st,
            "DKREADER000000000000",
            KeyRole::ReadOnly,
            "/photos",
            true,
        );
        let admin = [(KEY_ID_HEADER, ADMIN.0), (SECRET_HEADER, ADMIN.1)];

        let p = st.authenticate(req(&admin)).unwrap().unwrap();
        assert_eq!((p.key_id.as_str(), p.role), (ADMIN.0, KeyRole::Admin));
        // The admin key acting for the reader: the reader's permissions.
        let mut h = admin.to_vec();
        h.push((ON_BEHALF_HEADER, "DKREADER000000000000"));
        let p = st.authenticate(req(&h)).unwrap().unwrap();
        assert_eq!(p.key_id, "DKREADER000000000000");
        assert_eq!(p.role, KeyRole::ReadOnly);
        assert_eq!(p.prefix.as_str(), "/photos");
        // Unknown target.
        h[2] = (ON_BEHALF_HEADER, "DKNOSUCHKEY000000000");
        let e = st.authenticate(req(&h)).unwrap_err();
        assert!(matches!(e, Denied::Unauthenticated(_)), "{e:?}");
        // No key, or a key that is not admin: refused.
        let e = st
            .authenticate(req(&[(ON_BEHALF_HEADER, "DKREADER000000000000")]))
            .unwrap_err();
        assert!(matches!(e, Denied::Unauthenticated(_)), "{e:?}");
        let secret = add_key(&st, "DKWRITER000000000000", KeyRole::ReadWrite, "/", true);
        let e = st
            .authenticate(req(&[
                (KEY_ID_HEADER, "DKWRITER000000000000"),
                (SECRET_HEADER, &secret),
                (ON_BEHALF_HEADER, "DKREADER000000000000"),
            ]))
            .unwrap_err();
        assert!(matches!(e, Denied::Forbidden(_)), "{e:?}");
        // Without TLS there is no gateway certificate: no key, no principal.
        let e = st.authenticate(req(&[])).unwrap_err();
        assert!(matches!(e, Denied::Unauthenticated(_)), "{e:?}");
    }

    #[tokio::test]
    async fn s3_credentials_name_the_key_and_why_not() {
        let dir = tempfile::tempdir().unwrap();
        let st = state(dir.path()).await;
        // The configured first admin key is sealed at bootstrap.
        let c = st.s3_credential(ADMIN.0).unwrap();
        assert_eq!((c.secret.as_str(), c.role), (ADMIN.1, KeyRole::Admin));
        let e = st.s3_credential("DKNOSUCHKEY000000000").err().unwrap();
        assert!(matches!(e, CredentialError::NoSuchKey(_)), "{e:?}");
        assert!(e.to_string().contains("DKNOSUCHKEY000000000"));
        let e = st.s3_credential("short").err().unwrap();
        assert!(matches!(e, CredentialError::BadKeyId(_)), "{e:?}");
        // A key from before migration 004.
        add_key(&st, "DKOLDKEY000000000000", KeyRole::ReadWrite, "/", false);
        let e = st.s3_credential("DKOLDKEY000000000000").err().unwrap();
        assert!(matches!(e, CredentialError::NoS3Secret(_)), "{e:?}");
        assert!(e.to_string().contains("DKOLDKEY000000000000"));
        // The seal key survives a restart: the admin key still opens.
        drop(st);
        let st = state(dir.path()).await;
        assert_eq!(st.s3_credential(ADMIN.0).unwrap().secret, ADMIN.1);
    }
}
