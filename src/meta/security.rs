//! Access keys and cluster secrets.

use rusqlite::{params, Connection, OptionalExtension};

use super::{MetaError, Result};
use crate::path::DfsPath;
use crate::security::keys::{AccessKey, KeyRole};

fn key_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<(AccessKey, String, String)> {
    Ok((
        AccessKey {
            id: r.get(0)?,
            name: r.get(1)?,
            role: KeyRole::ReadOnly,
            prefix: DfsPath::root(),
            salt: r.get(4)?,
            secret_hash: r.get(5)?,
            created_ms: r.get(6)?,
            revoked_ms: r.get(7)?,
            s3_secret_sealed: r.get(8)?,
        },
        r.get(2)?,
        r.get(3)?,
    ))
}

fn finish((mut k, role, prefix): (AccessKey, String, String)) -> Result<AccessKey> {
    k.role = KeyRole::parse(&role).map_err(MetaError::Invalid)?;
    k.prefix = DfsPath::parse(&prefix).map_err(|e| MetaError::Invalid(e.to_string()))?;
    Ok(k)
}

const COLUMNS: &str =
    "id, name, role, prefix, salt, secret_hash, created_ms, revoked_ms, s3_secret_sealed";

pub fn insert_key(conn: &Connection, k: &AccessKey) -> Result<()> {
    let n = conn.execute(
        "INSERT INTO access_keys (id, name, role, prefix, salt, secret_hash, created_ms,
                                  revoked_ms, s3_secret_sealed)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING",
        params![
            k.id,
            k.name,
            k.role.as_str(),
            k.prefix.as_str(),
            k.salt,
            k.secret_hash,
            k.created_ms,
            k.revoked_ms,
            k.s3_secret_sealed
        ],
    )?;
    if n == 0 {
        return Err(MetaError::KeyExists(k.id.clone()));
    }
    Ok(())
}

/// Every key, revoked ones included, oldest first.
pub fn list_keys(conn: &Connection) -> Result<Vec<AccessKey>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM access_keys ORDER BY created_ms, id"
    ))?;
    let rows = stmt.query_map([], key_from_row)?;
    rows.map(|r| finish(r?)).collect()
}

/// Marks a key revoked (idempotent) and returns it.
pub fn revoke_key(conn: &Connection, id: &str, now_ms: i64) -> Result<AccessKey> {
    conn.execute(
        "UPDATE access_keys SET revoked_ms = ?2 WHERE id = ?1 AND revoked_ms IS NULL",
        params![id, now_ms],
    )?;
    let row = conn
        .query_row(
            &format!("SELECT {COLUMNS} FROM access_keys WHERE id = ?1"),
            params![id],
            key_from_row,
        )
        .optional()?;
    match row {
        Some(r) => finish(r),
        None => Err(MetaError::NoSuchKey(id.to_string())),
    }
}

/// The secret called `name`, created by `make` the first time it is asked for.
pub fn cluster_secret(
    conn: &mut Connection,
    name: &str,
    make: impl FnOnce() -> Vec<u8>,
) -> Result<Vec<u8>> {
    let tx = conn.transaction()?;
    let existing: Option<Vec<u8>> = tx
        .query_row(
            "SELECT value FROM cluster_secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )
        .optional()?;
    let value = match existing {
        Some(v) => v,
        None => {
            let v = make();
            tx.execute(
                "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2)",
                params![name, v],
            )?;
            v
        }
    };
    tx.commit()?;
    Ok(value)
}
