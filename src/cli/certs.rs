//! `dfsd cert`: the cluster CA and the certificates it signs (`init`, `issue`: local files
//! only), and revocation (`revoke`, `revoked`: admin calls to the coordinator).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use super::args::CertCommand;
use crate::client::Client;
use crate::units::rfc3339_ms;

/// `dfsd cert init|issue`: local files only, no cluster needed.
pub fn local(cmd: CertCommand) -> anyhow::Result<()> {
    use crate::security::{certs, Role};
    match cmd {
        CertCommand::Init { dir, years } => {
            let w = certs::init_ca(&dir, years)?;
            println!("CA certificate: {}", w.cert.display());
            println!(
                "CA key:         {} (keep it offline; it signs every certificate)",
                w.key.display()
            );
            println!("valid until:    {}", w.not_after);
        }
        CertCommand::Issue {
            dir,
            node,
            coord,
            client,
            gateway,
            san,
            years,
            days,
        } => {
            let (role, name) = match (node, coord, client, gateway) {
                (Some(n), None, None, None) => (Role::Node, n),
                (None, Some(n), None, None) => (Role::Coordinator, n),
                (None, None, Some(n), None) => (Role::Client, n),
                (None, None, None, Some(n)) => (Role::Gateway, n),
                _ => anyhow::bail!(
                    "cert issue: give exactly one of --node, --coord, --client or --gateway NAME"
                ),
            };
            let w = match (years, days) {
                (Some(y), _) => certs::issue(&dir, role, &name, &san, y)?,
                (None, Some(d)) => certs::issue_for(
                    &dir,
                    role,
                    &name,
                    &san,
                    std::time::Duration::from_secs(u64::from(d) * 86_400),
                )?,
                (None, None) => {
                    certs::issue_for(&dir, role, &name, &san, certs::default_validity(role))?
                }
            };
            println!("{} certificate: {}", role.as_str(), w.cert.display());
            println!("{} key:         {}", role.as_str(), w.key.display());
            println!("valid until:    {}", w.not_after);
            println!("fingerprint:    {}", w.fingerprint);
        }
        CertCommand::Revoke { .. } | CertCommand::Revoked { .. } => {
            anyhow::bail!("cert revoke and cert revoked need the coordinator")
        }
    }
    Ok(())
}

/// The certificate in a PEM file, as DER.
fn read_cert(path: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    let der = CertificateDer::from_pem_slice(&pem)
        .with_context(|| format!("{}: no PEM certificate in it", path.display()))?;
    Ok(der.to_vec())
}

/// `dfsd cert revoke` and `dfsd cert revoked`.
pub async fn remote(client: &Client, cmd: CertCommand) -> anyhow::Result<()> {
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
                    rfc3339_ms(c.revoked_ms),
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
