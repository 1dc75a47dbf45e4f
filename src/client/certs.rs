//! Certificate revocation from the client side: the SDK calls and `dfsd cert revoke` /
//! `dfsd cert revoked` (admin key needed; the coordinator keeps the deny-list).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::{Client, ClientError, Result};
use crate::cli::CertCommand;
use crate::proto::pb;

impl Client {
    /// Puts a certificate on the deny-list, given as DER or by fingerprint. Returns the
    /// record and whether it was revoked already.
    pub async fn revoke_certificate(
        &self,
        certificate: Option<Vec<u8>>,
        fingerprint: &str,
        note: &str,
    ) -> Result<(pb::RevokedCertificate, bool)> {
        let r = self
            .coordinator
            .clone()
            .revoke_certificate(self.request(pb::RevokeCertificateRequest {
                fingerprint: fingerprint.to_string(),
                certificate: certificate.unwrap_or_default().into(),
                note: note.to_string(),
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        let cert = r
            .cert
            .ok_or_else(|| ClientError::Invalid("empty revocation response".into()))?;
        Ok((cert, r.already))
    }

    /// The deny-list, oldest revocation first.
    pub async fn revoked_certificates(&self) -> Result<Vec<pb::RevokedCertificate>> {
        let r = self
            .coordinator
            .clone()
            .list_revoked_certificates(self.request(pb::ListRevokedCertificatesRequest {}))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner().certs)
    }
}

/// The certificate in a PEM file, as DER.
fn read_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let der = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: no PEM certificate in it", path.display()))?;
    Ok(der.to_vec())
}

/// `dfsd cert revoke` and `dfsd cert revoked`.
pub async fn command(client: &Client, cmd: CertCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        CertCommand::Revoke {
            cert,
            fingerprint,
            note,
        } => {
            let der = cert.as_deref().map(read_cert).transpose()?;
            let note = note
                .or_else(|| {
                    cert.as_deref()
                        .and_then(|p| p.file_name())
                        .map(|n| n.to_string_lossy().into_owned())
                })
                .unwrap_or_default();
            let (c, already) = client
                .revoke_certificate(der, fingerprint.as_deref().unwrap_or(""), &note)
                .await?;
            writeln!(out, "{}", c.fingerprint)?;
            let role = if c.role.is_empty() {
                "certificate"
            } else {
                &c.role
            };
            if already {
                eprintln!("{role} {}: already revoked", c.fingerprint);
            } else {
                eprintln!(
                    "{role} {}: revoked; datanodes refuse it from their next heartbeat",
                    c.fingerprint
                );
            }
        }
        CertCommand::Revoked { json } => {
            let list = client.revoked_certificates().await?;
            if json {
                let v: Vec<_> = list
                    .iter()
                    .map(|c| {
                        serde_json::json!({
                            "fingerprint": c.fingerprint,
                            "role": c.role,
                            "note": c.note,
                            "revoked_ms": c.revoked_ms,
                        })
                    })
                    .collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<64} {:<11} {:<24} NOTE",
                "FINGERPRINT", "ROLE", "REVOKED"
            )?;
            for c in list {
                writeln!(
                    out,
                    "{:<64} {:<11} {:<24} {}",
                    c.fingerprint,
                    if c.role.is_empty() { "-" } else { &c.role },
                    crate::units::rfc3339_ms(c.revoked_ms),
                    c.note
                )?;
            }
        }
        CertCommand::Init { .. } | CertCommand::Issue { .. } => {
            anyhow::bail!("cert init and cert issue work on local files")
        }
    }
    Ok(())
}
