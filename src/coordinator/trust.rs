//! Who may use the cluster API, and the certificate deny-list.
//!
//! The Cluster service (datanodes' calls) admits a caller with a node certificate when
//! the coordinator serves TLS; without TLS and with access keys on, one that proves the
//! join secret (`security::join`); with neither (`dfsd dev`, authentication off), anyone.
//! In the plaintext case the token key handed out at registration is sealed under the
//! join secret.
//!
//! Revoked certificates (`dfsd cert revoke`) are refused on every call of both services
//! before anything else, and datanodes get the list at registration and whenever it
//! changes (heartbeats carry the digest of the list a node has).

use bytes::Bytes;
use rustls_pki_types::CertificateDer;
use tonic::{Request, Status};

use super::events::{event, EventKind};
use super::State;
use crate::meta::{MetaError, MetaStore};
use crate::model::{now_ms, EventRecord, RevokedCert};
use crate::proto::pb;
use crate::security::join::JoinGuard;
use crate::security::revoke::{self, Fingerprint, Revoked};
use crate::security::token::TokenKey;
use crate::security::{require_role, role_of, Role, Tls};

/// Longest note kept with a revocation.
const NOTE_MAX: usize = 200;

/// Why a certificate revocation was refused.
#[derive(Debug, thiserror::Error)]
pub enum RevokeError {
    #[error("give the certificate or its fingerprint (SHA-256 of the DER, hex)")]
    NothingGiven,
    #[error("{0}")]
    BadFingerprint(String),
    #[error("the certificate given is not one (DER): {0}")]
    NotACertificate(String),
    #[error("the fingerprint given is not the certificate's")]
    FingerprintMismatch,
    #[error("note: at most {NOTE_MAX} characters, no control characters")]
    BadNote,
    #[error(
        "certificate {0} is this coordinator's own: issue it a new one, restart it \
         with that, then revoke this one"
    )]
    OwnCertificate(String),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

pub struct Trust {
    /// The deny-list, as every call is checked against it.
    pub revoked: Revoked,
    /// Serving TLS: cluster callers need a node certificate.
    tls_on: bool,
    /// Plaintext with access keys on: cluster callers prove the join secret.
    join: Option<JoinGuard>,
    /// Our own certificate, which may not be revoked.
    own: Option<Fingerprint>,
}

impl Trust {
    pub async fn new(
        store: &dyn MetaStore,
        tls: Option<&Tls>,
        auth: bool,
        join_secret: Option<&str>,
    ) -> anyhow::Result<Trust> {
        let list = store.list_revoked_certs().await?;
        let mut set = Vec::with_capacity(list.len());
        for r in &list {
            set.push(revoke::parse_fingerprint(&r.fingerprint).map_err(anyhow::Error::msg)?);
        }
        let join = match (tls, auth, join_secret) {
            (None, true, Some(s)) => Some(JoinGuard::new(s)),
            // `secrets::load` always provides one when it is needed.
            (None, true, None) => anyhow::bail!(
                "a coordinator without TLS and with access keys needs a join secret \
                 (coordinator.join_secret)"
            ),
            _ => None,
        };
        Ok(Trust {
            revoked: Revoked::new(set),
            tls_on: tls.is_some(),
            join,
            own: tls.and_then(Tls::own_fingerprint),
        })
    }

    /// The check of every Cluster call, before any handler runs.
    pub fn check_cluster_caller(&self, req: &Request<()>) -> Result<(), Status> {
        self.revoked.check(req)?;
        if self.tls_on {
            return Ok(require_role(true, req, &[Role::Node], "the cluster API")?);
        }
        match &self.join {
            Some(guard) => guard.check(req.metadata()),
            None => Ok(()),
        }
    }

    /// The token key for a registering node: in clear over TLS or without
    /// authentication, else sealed under the join secret. (clear, sealed)
    pub fn token_key_for(&self, node_id: &str, key: &TokenKey) -> (Bytes, Bytes) {
        match &self.join {
            Some(g) => (
                Bytes::new(),
                g.secret().seal_token_key(node_id, key.as_bytes()).into(),
            ),
            None => (Bytes::copy_from_slice(key.as_bytes()), Bytes::new()),
        }
    }

    /// The deny-list for a node.
    pub fn revoked_pb(&self) -> pb::RevokedCertificates {
        pb::RevokedCertificates {
            fingerprints: self.revoked.to_hex(),
            digest: self.revoked.digest().into(),
        }
    }

    /// The deny-list, if the node's copy (named by `digest`) is not the current one.
    pub fn revoked_update(&self, digest: &[u8]) -> Option<pb::RevokedCertificates> {
        (self.revoked.digest() != digest).then(|| self.revoked_pb())
    }
}

/// RevokeCertificate (the caller is an admin): records the certificate, refuses it from
/// now on, and tells datanodes with their next heartbeat.
pub async fn revoke(
    state: &State,
    req: pb::RevokeCertificateRequest,
) -> Result<pb::RevokeCertificateResponse, RevokeError> {
    let (f, role) = if req.certificate.is_empty() {
        if req.fingerprint.is_empty() {
            return Err(RevokeError::NothingGiven);
        }
        let f = revoke::parse_fingerprint(&req.fingerprint).map_err(RevokeError::BadFingerprint)?;
        (f, String::new())
    } else {
        let der = CertificateDer::from(req.certificate.as_ref());
        webpki::EndEntityCert::try_from(&der)
            .map_err(|e| RevokeError::NotACertificate(e.to_string()))?;
        let f = revoke::fingerprint(&der);
        if !req.fingerprint.is_empty()
            && revoke::parse_fingerprint(&req.fingerprint).ok() != Some(f)
        {
            return Err(RevokeError::FingerprintMismatch);
        }
        (
            f,
            role_of(&der)
                .map(|r| r.as_str().to_string())
                .unwrap_or_default(),
        )
    };
    let note = req.note.trim().to_string();
    if note.chars().count() > NOTE_MAX || note.chars().any(char::is_control) {
        return Err(RevokeError::BadNote);
    }
    let hex = hex::encode(f);
    if state.trust.own == Some(f) {
        return Err(RevokeError::OwnCertificate(hex));
    }
    let rec = RevokedCert {
        fingerprint: hex.clone(),
        role,
        note,
        revoked_ms: now_ms(),
    };
    let (stored, already) = state.store.revoke_cert(&rec).await?;
    state.trust.revoked.insert(f);
    if !already {
        tracing::info!(fingerprint = %hex, role = %stored.role, note = %stored.note,
            "certificate revoked");
        let detail = [hex.as_str(), &stored.role, &stored.note]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join(" ");
        state.events.emit(EventRecord {
            detail,
            ..event(EventKind::CertRevoked)
        });
    }
    Ok(pb::RevokeCertificateResponse {
        cert: Some(stored.into()),
        already,
    })
}

/// ListRevokedCertificates (the caller is an admin).
pub async fn list(state: &State) -> Result<pb::ListRevokedCertificatesResponse, MetaError> {
    let list = state.store.list_revoked_certs().await?;
    Ok(pb::ListRevokedCertificatesResponse {
        certs: list.into_iter().map(Into::into).collect(),
    })
}
