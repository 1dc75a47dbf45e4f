//! Who may do what: TLS identities of cluster members, access keys of clients, and the
//! chunk tokens datanodes demand.
//!
//! - `certs.rs`: `dfsd cert init` / `dfsd cert issue` (a cluster CA and its certificates).
//! - `keys.rs`: access keys (id + secret, only a salted hash stored) and permissions.
//! - `seal.rs`: S3 secrets sealed (AEAD) under a cluster key, for S3 gateways.
//! - `token.rs`: short-lived HMAC tokens naming an operation and the chunk ids it covers.
//! - `join.rs`: the join secret datanodes prove on a cluster without TLS.
//! - `revoke.rs`: the deny-list of revoked certificates, checked on every call.
//! - `files.rs`: private data directories and files (0700 / 0600), checked at start-up.
//!
//! Members (coordinator, datanodes) authenticate each other by mutual TLS: the role a
//! certificate was issued for is a DNS name in its subject alternative names, checked
//! here, so a datanode cannot give coordinator orders and a client certificate cannot
//! join. Clients authenticate with access keys on every coordinator call, and reach
//! datanodes only with tokens the coordinator signed for the chunks they may touch.
//! S3 gateways have a certificate role of their own: it lets them read the sealed S3
//! secrets of access keys and make calls on behalf of the key that signed an S3 request.

pub mod certs;
pub mod files;
pub mod join;
pub mod keys;
pub mod revoke;
pub mod seal;
pub mod token;

/// Why the security layer turned a call away. [`crate::wire_error`] maps it onto the wire.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    /// The caller could not be identified: no, malformed, unknown, expired or wrong
    /// credentials (a certificate, an access key, a chunk token).
    #[error("{0}")]
    Unauthenticated(String),
    /// The caller is known but may not do this (role, prefix, the chunks a token covers,
    /// a revoked certificate).
    #[error("{0}")]
    Forbidden(String),
}

use std::path::Path;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tonic::transport::{Certificate, ClientTlsConfig, Identity, ServerTlsConfig};
use tonic::Request;

use crate::config::TlsConfig;

/// What a certificate was issued for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Coordinator,
    Node,
    Client,
    /// An S3 gateway: reads S3 secrets and acts on behalf of S3 callers.
    Gateway,
}

impl Role {
    /// The subject alternative name that marks a certificate of this role. Connections
    /// to a member verify this name, not the address dialled.
    pub fn dns_name(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator.dfsd.internal",
            Role::Node => "node.dfsd.internal",
            Role::Client => "client.dfsd.internal",
            Role::Gateway => "gateway.dfsd.internal",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Coordinator => "coordinator",
            Role::Node => "node",
            Role::Client => "client",
            Role::Gateway => "gateway",
        }
    }
}

/// TLS material of this process, loaded from the `[tls]` settings.
#[derive(Clone)]
pub struct Tls {
    ca: Certificate,
    identity: Option<Identity>,
    /// Our own certificate (DER), so a coordinator can refuse to revoke it.
    own_cert: Option<Vec<u8>>,
}

impl Tls {
    /// `None` when no CA is configured (plaintext).
    pub fn load(cfg: &TlsConfig) -> anyhow::Result<Option<Tls>> {
        if cfg.ca.is_empty() {
            if !cfg.cert.is_empty() || !cfg.key.is_empty() {
                anyhow::bail!("config: tls.cert and tls.key need tls.ca as well");
            }
            return Ok(None);
        }
        let ca = read_pem(Path::new(&cfg.ca), "tls.ca")?;
        let (identity, own_cert) = match (cfg.cert.is_empty(), cfg.key.is_empty()) {
            (true, true) => (None, None),
            (false, false) => {
                let cert = read_pem(Path::new(&cfg.cert), "tls.cert")?;
                let der = CertificateDer::from_pem_slice(&cert)
                    .map(|d| d.to_vec())
                    .ok();
                let key = read_pem(Path::new(&cfg.key), "tls.key")?;
                (Some(Identity::from_pem(cert, key)), der)
            }
            _ => anyhow::bail!("config: tls.cert and tls.key go together"),
        };
        Ok(Some(Tls {
            ca: Certificate::from_pem(ca),
            identity,
            own_cert,
        }))
    }

    /// Server side: our certificate, and client certificates verified against the CA
    /// when presented (clients of the public API may come without one).
    pub fn server(&self) -> anyhow::Result<ServerTlsConfig> {
        let identity = self.identity.clone().context(
            "config: a server needs its own certificate: set tls.cert and tls.key \
             (`dfsd cert issue --node NAME` or `--coordinator NAME`)",
        )?;
        Ok(ServerTlsConfig::new()
            .identity(identity)
            .client_ca_root(self.ca.clone())
            .client_auth_optional(true))
    }

    /// The fingerprint of our own certificate (see `revoke.rs`), if we have one.
    pub fn own_fingerprint(&self) -> Option<revoke::Fingerprint> {
        self.own_cert.as_deref().map(revoke::fingerprint)
    }

    /// Client side, for a connection to a server of role `expect`.
    pub fn client(&self, expect: Role) -> ClientTlsConfig {
        let cfg = ClientTlsConfig::new()
            .ca_certificate(self.ca.clone())
            .domain_name(expect.dns_name());
        match &self.identity {
            Some(id) => cfg.identity(id.clone()),
            None => cfg,
        }
    }
}

fn read_pem(path: &Path, key: &str) -> anyhow::Result<Vec<u8>> {
    let bytes =
        std::fs::read(path).with_context(|| format!("config: {key}: read {}", path.display()))?;
    if !bytes.starts_with(b"-----BEGIN") && !String::from_utf8_lossy(&bytes).contains("-----BEGIN")
    {
        anyhow::bail!("config: {key}: {} is not a PEM file", path.display());
    }
    Ok(bytes)
}

/// The role of the certificate the caller presented, if any. Only meaningful on a TLS
/// server, where the handshake has already checked the chain against the cluster CA.
pub fn peer_role<T>(req: &Request<T>) -> Option<Role> {
    let certs = req.peer_certs()?;
    let leaf = certs.first()?;
    role_of(leaf)
}

/// The dfsd role a certificate (DER) was issued for, if any.
pub fn role_of(der: &CertificateDer<'_>) -> Option<Role> {
    let cert = webpki::EndEntityCert::try_from(der).ok()?;
    [Role::Coordinator, Role::Node, Role::Client, Role::Gateway]
        .into_iter()
        .find(|r| {
            ServerName::try_from(r.dns_name())
                .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok())
        })
}

/// Lets the call through only if it comes with a certificate of one of `allowed` roles.
/// Without TLS (`tls_on` false) there is no certificate to check and everything passes:
/// the cluster API then demands the join secret instead (`coordinator::trust`), and
/// datanode orders still need a token signed with a key a stranger cannot get.
pub fn require_role<T>(
    tls_on: bool,
    req: &Request<T>,
    allowed: &[Role],
    what: &str,
) -> Result<(), Denied> {
    if !tls_on {
        return Ok(());
    }
    let names = || {
        allowed
            .iter()
            .map(|r| r.as_str())
            .collect::<Vec<_>>()
            .join(" or ")
    };
    if req.peer_certs().is_none_or(|c| c.is_empty()) {
        return Err(Denied::Unauthenticated(format!(
            "{what} needs a {} certificate from the cluster CA",
            names()
        )));
    }
    match peer_role(req) {
        Some(r) if allowed.contains(&r) => Ok(()),
        Some(r) => Err(Denied::Forbidden(format!(
            "{what} is for the {} only, not a {} certificate",
            names(),
            r.as_str()
        ))),
        None => Err(Denied::Forbidden(format!(
            "{what}: the certificate names no dfsd role"
        ))),
    }
}
