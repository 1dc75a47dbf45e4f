//! Numbered schema migrations from migrations/, applied in order at start-up. The applied
//! version is `PRAGMA user_version`; each migration runs in its own transaction and is also
//! recorded in `schema_migrations` for humans.

use rusqlite::{params, Connection};

use crate::meta::{MetaError, Result};
use crate::model::now_ms;

/// (version, name, SQL). Never edit an entry once released: add a new one.
pub const MIGRATIONS: &[(u32, &str, &str)] = &[
    (
        1,
        "001_initial",
        include_str!("../../../migrations/001_initial.sql"),
    ),
    (
        2,
        "002_security",
        include_str!("../../../migrations/002_security.sql"),
    ),
    (
        3,
        "003_events",
        include_str!("../../../migrations/003_events.sql"),
    ),
    (4, "004_s3", include_str!("../../../migrations/004_s3.sql")),
    (
        5,
        "005_revoked_certs",
        include_str!("../../../migrations/005_revoked_certs.sql"),
    ),
    (
        6,
        "006_secret_fingerprints",
        include_str!("../../../migrations/006_secret_fingerprints.sql"),
    ),
    (
        7,
        "007_buckets",
        include_str!("../../../migrations/007_buckets.sql"),
    ),
    (
        8,
        "008_public_addr",
        include_str!("../../../migrations/008_public_addr.sql"),
    ),
];

pub fn apply(conn: &mut Connection) -> Result<()> {
    let current: u32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let latest = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if current > latest {
        return Err(MetaError::Invalid(format!(
            "database schema version {current} is newer than this dfsd ({latest}): upgrade dfsd"
        )));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_ms) VALUES (?1, ?2, ?3)",
            params![version, name, now_ms()],
        )?;
        tx.pragma_update(None, "user_version", version)?;
        tx.commit()?;
        tracing::info!(version, name, "applied schema migration");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrations_are_numbered_in_order_and_apply_once() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.0 as usize, i + 1, "migration {} out of order", m.1);
        }
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("m.db")).unwrap();
        apply(&mut conn).unwrap();
        apply(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, MIGRATIONS.len());
    }

    #[test]
    fn refuses_a_newer_schema() {
        let dir = tempfile::tempdir().unwrap();
        let mut conn = Connection::open(dir.path().join("m.db")).unwrap();
        conn.pragma_update(None, "user_version", 999).unwrap();
        assert!(apply(&mut conn).unwrap_err().to_string().contains("newer"));
    }
}
