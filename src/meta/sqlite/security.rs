//! Access keys, revoked certificates, the fingerprints of the secrets file's keys, and
//! the cluster secrets older versions kept here (and their rotation out).

use rusqlite::{params, Connection, OptionalExtension};

use crate::meta::{MetaError, Reseal, Result};
use crate::model::{Resealed, RevokedCert};
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

fn revoked_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<RevokedCert> {
    Ok(RevokedCert {
        fingerprint: r.get(0)?,
        role: r.get(1)?,
        note: r.get(2)?,
        revoked_ms: r.get(3)?,
    })
}

/// Records a revocation. Returns the record on file, and whether it was there already
/// (then the first record is kept).
pub fn revoke_cert(conn: &Connection, rec: &RevokedCert) -> Result<(RevokedCert, bool)> {
    let n = conn.execute(
        "INSERT INTO revoked_certs (fingerprint, role, note, revoked_ms) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (fingerprint) DO NOTHING",
        params![rec.fingerprint, rec.role, rec.note, rec.revoked_ms],
    )?;
    let stored = conn.query_row(
        "SELECT fingerprint, role, note, revoked_ms FROM revoked_certs WHERE fingerprint = ?1",
        params![rec.fingerprint],
        revoked_from_row,
    )?;
    Ok((stored, n == 0))
}

/// Every revoked certificate, oldest revocation first.
pub fn list_revoked_certs(conn: &Connection) -> Result<Vec<RevokedCert>> {
    let mut stmt = conn.prepare_cached(
        "SELECT fingerprint, role, note, revoked_ms FROM revoked_certs
         ORDER BY revoked_ms, fingerprint",
    )?;
    let rows = stmt.query_map([], revoked_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Cluster secrets kept in the database by dfsd versions before issue 12 (they now live
/// in the coordinator's secrets file).
pub fn legacy_cluster_secrets(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stmt = conn.prepare("SELECT name, value FROM cluster_secrets ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Fingerprints of the keys of the secrets file this database was used with, by key
/// name (none in a database older than them).
pub fn secret_fingerprints(conn: &Connection) -> Result<Vec<(String, Vec<u8>)>> {
    let mut stmt =
        conn.prepare("SELECT name, fingerprint FROM secret_fingerprints ORDER BY name")?;
    let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

fn replace_fingerprints(conn: &Connection, prints: &[(&str, Vec<u8>)]) -> Result<()> {
    conn.execute("DELETE FROM secret_fingerprints", [])?;
    for (name, print) in prints {
        conn.execute(
            "INSERT INTO secret_fingerprints (name, fingerprint) VALUES (?1, ?2)",
            params![name, print],
        )?;
    }
    Ok(())
}

/// Records the fingerprints of the secrets file's keys (replacing any), in one
/// transaction.
pub fn record_secret_fingerprints(conn: &mut Connection, prints: &[(&str, Vec<u8>)]) -> Result<()> {
    let tx = conn.transaction()?;
    replace_fingerprints(&tx, prints)?;
    tx.commit()?;
    Ok(())
}

/// Moves the database onto new cluster keys in one transaction: every sealed S3 secret
/// is replaced by what `reseal(key id, blob)` makes of it (`None`: left as it is), the
/// legacy `cluster_secrets` rows are deleted and `prints` become the fingerprints on
/// record. No byte of the old rows or blobs stays in the database file or its WAL:
/// `secure_delete` overwrites deleted and replaced content with zeros, and a TRUNCATE
/// checkpoint copies the zeroed pages into the database file and empties the WAL, which
/// held older copies of those pages.
pub fn rotate_cluster_secrets(
    conn: &mut Connection,
    reseal: &mut Reseal<'_>,
    prints: &[(&str, Vec<u8>)],
) -> Result<Resealed> {
    conn.pragma_update(None, "secure_delete", "ON")?;
    let rotated = (|| {
        let tx = conn.transaction()?;
        let sealed: Vec<(String, Vec<u8>)> = {
            let mut stmt = tx.prepare(
                "SELECT id, s3_secret_sealed FROM access_keys
                 WHERE s3_secret_sealed IS NOT NULL ORDER BY id",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<rusqlite::Result<_>>()?
        };
        let mut done = Resealed::default();
        for (id, blob) in sealed {
            match reseal(&id, &blob) {
                Some(new) => {
                    tx.execute(
                        "UPDATE access_keys SET s3_secret_sealed = ?2 WHERE id = ?1",
                        params![id, new],
                    )?;
                    done.resealed += 1;
                }
                None => done.left += 1,
            }
        }
        tx.execute("DELETE FROM cluster_secrets", [])?;
        replace_fingerprints(&tx, prints)?;
        tx.commit()?;
        Ok(done)
    })();
    let done = rotated.and_then(|d| checkpoint_truncate(conn).map(|()| d));
    // Later deletions need no such care: back to the default.
    conn.pragma_update(None, "secure_delete", "OFF")?;
    done
}

/// Copies the whole WAL into the database file and empties it, so no older copy of a
/// page (one that held a secret before it was erased) stays in the WAL.
pub fn checkpoint_truncate(conn: &Connection) -> Result<()> {
    let busy: i64 = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
    if busy != 0 {
        return Err(MetaError::Invalid(
            "could not checkpoint the database after erasing the old cluster secrets \
             (another process has it open?)"
                .into(),
        ));
    }
    Ok(())
}

/// What a database of a version before issue 12 held, for tests of the rotation.
#[cfg(test)]
impl super::SqliteStore {
    /// Adds a row of the legacy `cluster_secrets` table.
    pub(crate) fn insert_legacy_secret(&self, name: &str, value: &[u8]) {
        self.with_writer(|c| {
            c.execute(
                "INSERT INTO cluster_secrets (name, value) VALUES (?1, ?2)",
                params![name, value],
            )?;
            Ok(())
        })
        .unwrap();
    }

    /// Forgets the secrets file's fingerprints, as a database from before them.
    pub(crate) fn forget_secret_fingerprints(&self) {
        self.with_writer(|c| Ok(c.execute("DELETE FROM secret_fingerprints", [])?))
            .unwrap();
    }
}
