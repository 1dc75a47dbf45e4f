//! Bucket settings (migration 007): who created a top-level directory, whether anonymous
//! S3 callers may read it, its CORS rules. One row per top-level directory that has any,
//! keyed by the directory's inode, so it goes with the directory (deleted with it, kept
//! through a rename).

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::ROOT_INODE;
use crate::meta::{MetaError, Result};
use crate::model::{BucketRecord, Kind};
use crate::path::DfsPath;

/// The inode of bucket `path`: a directory directly below the root.
fn bucket_inode(conn: &Connection, path: &DfsPath) -> Result<i64> {
    if path.segments().count() != 1 {
        return Err(MetaError::Invalid(format!(
            "{path}: a bucket is a top-level directory"
        )));
    }
    let inode =
        super::namespace::resolve(conn, path)?.ok_or_else(|| MetaError::NotFound(path.clone()))?;
    if inode.kind != Kind::Dir {
        return Err(MetaError::NotADirectory(path.clone()));
    }
    Ok(inode.id)
}

fn read(conn: &Connection, path: &DfsPath, inode: i64) -> Result<BucketRecord> {
    let row = conn
        .prepare_cached("SELECT owner, public_read, cors FROM buckets WHERE inode = ?1")?
        .query_row(params![inode], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)? == 1,
                r.get::<_, Option<String>>(2)?,
            ))
        })
        .optional()?;
    let (owner, public_read, cors) = row.unwrap_or_default();
    Ok(BucketRecord {
        path: path.clone(),
        owner,
        public_read,
        cors,
    })
}

pub fn get_bucket(conn: &Connection, path: &DfsPath) -> Result<BucketRecord> {
    let inode = bucket_inode(conn, path)?;
    read(conn, path, inode)
}

/// Changes what is given (`cors: Some(None)` removes the rules), in one transaction.
pub fn set_bucket(
    conn: &mut Connection,
    path: &DfsPath,
    public_read: Option<bool>,
    cors: Option<Option<String>>,
) -> Result<BucketRecord> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inode = bucket_inode(&tx, path)?;
    tx.prepare_cached("INSERT OR IGNORE INTO buckets (inode) VALUES (?1)")?
        .execute(params![inode])?;
    if let Some(p) = public_read {
        tx.prepare_cached("UPDATE buckets SET public_read = ?1 WHERE inode = ?2")?
            .execute(params![p as i64, inode])?;
    }
    if let Some(c) = cors {
        tx.prepare_cached("UPDATE buckets SET cors = ?1 WHERE inode = ?2")?
            .execute(params![c, inode])?;
    }
    let out = read(&tx, path, inode)?;
    tx.commit()?;
    Ok(out)
}

/// The names of the top-level directories anonymous S3 callers may read.
pub fn public_buckets(conn: &Connection) -> Result<HashSet<String>> {
    let mut stmt = conn.prepare_cached(
        "SELECT i.name FROM buckets b JOIN inodes i ON i.id = b.inode
         WHERE b.public_read = 1 AND i.parent = ?1 AND i.kind = 1",
    )?;
    let names = stmt.query_map(params![ROOT_INODE], |r| r.get::<_, String>(0))?;
    Ok(names.collect::<rusqlite::Result<_>>()?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::sqlite::namespace::{delete, mkdir, rename};
    use crate::meta::SqliteStore as Store;
    use crate::model::MkdirOptions;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).unwrap()
    }

    #[test]
    fn settings_follow_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db"), "normal").unwrap();
        store
            .with_writer(|c| {
                let o = MkdirOptions {
                    owner: "DKOWNER".into(),
                    ..Default::default()
                };
                mkdir(c, &p("/pub"), &o, 1)?;
                assert_eq!(get_bucket(c, &p("/pub"))?.owner, "DKOWNER");
                assert!(public_buckets(c)?.is_empty());
                let b = set_bucket(c, &p("/pub"), Some(true), Some(Some("[]".into())))?;
                assert!(b.public_read && b.cors.as_deref() == Some("[]"));
                assert_eq!(public_buckets(c)?, HashSet::from(["pub".to_string()]));
                // A rename keeps the settings; a delete drops them with the directory.
                rename(c, &p("/pub"), &p("/moved"), 2)?;
                assert_eq!(public_buckets(c)?, HashSet::from(["moved".to_string()]));
                delete(c, &p("/moved"), false, None)?;
                mkdir(c, &p("/moved"), &MkdirOptions::default(), 3)?;
                let fresh = get_bucket(c, &p("/moved"))?;
                assert!(!fresh.public_read && fresh.cors.is_none() && fresh.owner.is_empty());
                assert!(public_buckets(c)?.is_empty());
                // Only top-level directories are buckets.
                mkdir(c, &p("/moved/sub"), &MkdirOptions::default(), 4)?;
                assert!(get_bucket(c, &p("/moved/sub")).is_err());
                Ok(())
            })
            .unwrap();
    }
}
