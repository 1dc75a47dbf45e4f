//! `dfsd key create|ls|revoke`: access keys (admin key needed); a new key's secret is
//! printed once.

use std::io::Write;

use super::args::KeyCommand;
use crate::client::Client;
use crate::model::{KeyInfo, Timestamp};
use crate::path::DfsPath;
use crate::security::keys::KeyRole;
use crate::units::format_time;

fn key_json(k: &KeyInfo) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.key_id,
        "name": k.name,
        "role": k.role.as_str(),
        "prefix": k.prefix.as_str(),
        "created_ms": k.created.as_ms(),
        "revoked_ms": k.revoked.map(Timestamp::as_ms),
    })
}

/// `dfsd key create|ls|revoke`.
pub async fn command(client: &Client, cmd: KeyCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        KeyCommand::Create {
            name,
            role,
            prefix,
            json,
        } => {
            let role = KeyRole::parse(&role).map_err(anyhow::Error::msg)?;
            // Strict, as the coordinator has always taken a prefix; empty is everything.
            let prefix = if prefix.is_empty() {
                DfsPath::root()
            } else {
                DfsPath::parse(&prefix)?
            };
            let (k, secret) = client.create_key(&name, role, &prefix).await?;
            if json {
                let mut v = key_json(&k);
                v["secret"] = secret.into();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(out, "DFSD_ACCESS_KEY={}", k.key_id)?;
                writeln!(out, "DFSD_SECRET_KEY={secret}")?;
                eprintln!(
                    "created {} key {:?} for {}; the secret is shown only now",
                    k.role.as_str(),
                    k.name,
                    k.prefix
                );
            }
        }
        KeyCommand::Ls { json } => {
            let keys = client.list_keys().await?;
            if json {
                let v: Vec<_> = keys.iter().map(key_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<20} {:<10} {:<9} {:<22} {:<30} NAME",
                "KEY", "ROLE", "STATE", "CREATED", "PREFIX"
            )?;
            for k in keys {
                writeln!(
                    out,
                    "{:<20} {:<10} {:<9} {:<22} {:<30} {}",
                    k.key_id,
                    k.role.as_str(),
                    if k.revoked.is_none() {
                        "valid"
                    } else {
                        "revoked"
                    },
                    format_time(k.created.as_ms()),
                    k.prefix,
                    k.name
                )?;
            }
        }
        KeyCommand::Revoke { key_id } => {
            let k = client.revoke_key(&key_id).await?;
            eprintln!("{}: revoked", k.key_id);
        }
    }
    Ok(())
}
