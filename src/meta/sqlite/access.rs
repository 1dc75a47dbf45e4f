//! Which chunks a caller may use because a file it may read holds them (dedup without
//! leaks, invariant 9): knowing a chunk's id is not having its content, but reading a file
//! that holds the chunk is.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension};

use super::namespace::resolve;
use super::ROOT_INODE;
use crate::chunk::ChunkId;
use crate::meta::Result;
use crate::path::DfsPath;

/// Files looked at per chunk before giving up: a chunk held by many files outside the
/// caller's subtree is then simply uploaded again (correct, only slower).
const REFERENCES_CHECKED: i64 = 16;
/// Parent lookups one call may make in all, so that no batch of chunk ids (repeated ids,
/// chunks held by many deep files) can keep a reader busy: past it, the remaining chunks
/// count as not readable and are uploaded.
const WALK_BUDGET: usize = 20_000;

/// The chunks of `ids` that some committed file inside `scope` holds (`None`: anywhere).
/// The answer only says what the caller could read anyway. Each distinct id is looked up
/// once, and each directory's verdict (inside `scope` or not) is found once per call.
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
            Ok(None) | Err(crate::meta::MetaError::NotADirectory(_)) => return Ok(out),
            Err(e) => return Err(e),
        },
    };
    let mut holders =
        conn.prepare_cached("SELECT DISTINCT inode FROM file_chunks WHERE chunk_id = ?1 LIMIT ?2")?;
    let mut parent_of = conn.prepare_cached("SELECT parent FROM inodes WHERE id = ?1")?;
    let mut seen = HashSet::new();
    // Inodes already judged: inside the scope or not.
    let mut verdict: HashMap<i64, bool> = HashMap::new();
    let mut budget = WALK_BUDGET;
    for id in ids {
        if !seen.insert(*id) {
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
                for file in files {
                    match inside(file, top, &mut verdict, &mut budget, &mut parent_of)? {
                        Some(true) => {
                            found = true;
                            break;
                        }
                        Some(false) => {}
                        None => break, // out of budget
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

/// Whether `inode` is `top` or below it, walking up through parents and remembering the
/// verdict of every inode on the way. `None` when the budget ran out.
fn inside(
    inode: i64,
    top: i64,
    verdict: &mut HashMap<i64, bool>,
    budget: &mut usize,
    parent_of: &mut rusqlite::CachedStatement<'_>,
) -> Result<Option<bool>> {
    let mut path = Vec::new();
    let mut cur = inode;
    let answer = loop {
        if cur == top {
            break true;
        }
        if let Some(&v) = verdict.get(&cur) {
            break v;
        }
        if cur == ROOT_INODE || path.len() > MAX_DEPTH {
            break false;
        }
        if *budget == 0 {
            return Ok(None);
        }
        *budget -= 1;
        path.push(cur);
        match parent_of
            .query_row(params![cur], |r| r.get::<_, Option<i64>>(0))
            .optional()?
            .flatten()
        {
            Some(p) => cur = p,
            None => break false,
        }
    };
    for p in path {
        verdict.insert(p, answer);
    }
    Ok(Some(answer))
}

/// Deepest path the namespace allows, plus the root.
const MAX_DEPTH: usize = 257;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::sqlite::namespace::commit_file;
    use crate::meta::SqliteStore as Store;
    use crate::model::CommitRequest;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).unwrap()
    }

    #[test]
    fn a_chunk_is_readable_only_through_a_file_inside_the_scope() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("m.db"), "normal").unwrap();
        let (a, b, shared) = (ChunkId::of(b"a"), ChunkId::of(b"b"), ChunkId::of(b"s"));
        store
            .with_writer(|c| {
                c.execute("INSERT INTO nodes (id, addr, registered_ms, last_seen_ms) VALUES ('n', 'x', 0, 0)", [])?;
                crate::meta::sqlite::cluster::record_replicas(c, "n", &[(a, 1), (b, 1), (shared, 1)], 0)?;
                for (path, chunks) in [
                    ("/t1/deep/er/f", vec![(a, 1), (shared, 1)]),
                    ("/t2/g", vec![(b, 1), (shared, 1)]),
                ] {
                    let req = CommitRequest {
                        path: p(path),
                        size: chunks.len() as u64,
                        chunks,
                        replication: 1,
                        write_quorum: 1,
                        no_clobber: false,
                        expected_version: None,
                        live_nodes: ["n".to_string()].into(),
                        attrs: Default::default(),
                    };
                    commit_file(c, &req, 0)?;
                }
                Ok(())
            })
            .unwrap();
        let ghost = ChunkId::of(b"ghost");
        let ids = [a, b, shared, ghost, a, a];
        store
            .with_writer(|c| {
                let t1 = readable_chunks(c, &ids, Some(&p("/t1")))?;
                assert_eq!(t1, [a, shared].into());
                let deep = readable_chunks(c, &ids, Some(&p("/t1/deep/er/f")))?;
                assert_eq!(deep, [a, shared].into());
                let t2 = readable_chunks(c, &ids, Some(&p("/t2")))?;
                assert_eq!(t2, [b, shared].into());
                assert!(readable_chunks(c, &ids, Some(&p("/nope")))?.is_empty());
                assert!(readable_chunks(c, &ids, Some(&p("/t2/g/x")))?.is_empty());
                let all = readable_chunks(c, &ids, None)?;
                assert_eq!(all, [a, b, shared].into());
                Ok(())
            })
            .unwrap();
    }
}
