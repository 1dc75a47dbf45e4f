//! Which chunks a caller may use because a file it may read holds them (dedup without
//! leaks, invariant 9): knowing a chunk's id is not having its content, but reading a file
//! that holds the chunk is.

use std::collections::HashSet;

use rusqlite::{params, Connection, OptionalExtension};

use super::namespace::resolve;
use super::{Result, ROOT_INODE};
use crate::chunk::ChunkId;
use crate::path::DfsPath;

/// Files looked at per chunk before giving up: a chunk held by many files outside the
/// caller's subtree is then simply uploaded again (correct, only slower).
const REFERENCES_CHECKED: i64 = 64;
/// Deepest path the namespace allows, plus the root.
const MAX_DEPTH: usize = 257;

/// The chunks of `ids` that some committed file inside `scope` holds (`None`: anywhere).
/// The answer only says what the caller could read anyway.
pub fn readable_chunks(
    conn: &Connection,
    ids: &[ChunkId],
    scope: Option<&DfsPath>,
) -> Result<HashSet<ChunkId>> {
    let mut out = HashSet::new();
    let top = match scope {
        None => None,
        Some(p) if p.is_root() => None,
        Some(p) => match resolve(conn, p) {
            Ok(Some(inode)) => Some(inode.id),
            // A prefix that does not exist (or crosses a file) holds nothing.
            Ok(None) | Err(super::MetaError::NotADirectory(_)) => return Ok(out),
            Err(e) => return Err(e),
        },
    };
    let mut holders =
        conn.prepare_cached("SELECT DISTINCT inode FROM file_chunks WHERE chunk_id = ?1 LIMIT ?2")?;
    let mut parent_of = conn.prepare_cached("SELECT parent FROM inodes WHERE id = ?1")?;
    for id in ids {
        if out.contains(id) {
            continue;
        }
        let files = holders
            .query_map(params![id.to_hex(), REFERENCES_CHECKED], |r| {
                r.get::<_, i64>(0)
            })?
            .collect::<rusqlite::Result<Vec<i64>>>()?;
        let readable = match top {
            None => !files.is_empty(),
            Some(top) => {
                let mut found = false;
                'files: for file in files {
                    let mut cur = file;
                    for _ in 0..MAX_DEPTH {
                        if cur == top {
                            found = true;
                            break 'files;
                        }
                        if cur == ROOT_INODE {
                            break;
                        }
                        match parent_of
                            .query_row(params![cur], |r| r.get::<_, Option<i64>>(0))
                            .optional()?
                            .flatten()
                        {
                            Some(p) => cur = p,
                            None => break,
                        }
                    }
                }
                found
            }
        };
        if readable {
            out.insert(*id);
        }
    }
    Ok(out)
}
