//! The namespace: directories and files as rows of `inodes`, each file's committed chunk
//! list in `file_chunks`. A directory rename is one row update; a commit swaps a file's
//! chunk list in one transaction, so readers see the old version or the new one.

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, Transaction, TransactionBehavior};

use super::ROOT_INODE;
use crate::chunk::ChunkId;
use crate::meta::{MetaError, Result};
use crate::model::{
    Attrs, CommitRequest, ComposeRequest, EntryInfo, FileChunk, Inode, Kind, MkdirOptions,
};
use crate::path::DfsPath;

/// A kind as stored in `inodes.kind`.
fn kind_to_sql(k: Kind) -> i64 {
    match k {
        Kind::Dir => 1,
        Kind::File => 2,
    }
}

fn kind_from_sql(v: i64) -> Kind {
    if v == 1 {
        Kind::Dir
    } else {
        Kind::File
    }
}

const INODE_COLS: &str = "id, kind, size, mtime_ms, version, replication, attrs";

/// Attributes as stored: NULL or a JSON object of strings.
fn attrs_from_sql(v: Option<String>) -> Attrs {
    v.and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or_default()
}

fn attrs_to_sql(a: &Attrs) -> Option<String> {
    (!a.is_empty()).then(|| serde_json::to_string(a).expect("a string map serialises"))
}

fn inode_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Inode> {
    Ok(Inode {
        id: r.get(0)?,
        kind: kind_from_sql(r.get(1)?),
        size: r.get::<_, i64>(2)? as u64,
        mtime_ms: r.get(3)?,
        version: r.get::<_, i64>(4)? as u64,
        replication: r.get::<_, i64>(5)? as u32,
        attrs: attrs_from_sql(r.get(6)?),
    })
}

fn lookup(conn: &Connection, parent: i64, name: &str) -> Result<Option<Inode>> {
    let sql = format!("SELECT {INODE_COLS} FROM inodes WHERE parent = ?1 AND name = ?2");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![parent, name], inode_from_row)
        .optional()?)
}

fn inode_by_id(conn: &Connection, id: i64) -> Result<Inode> {
    let sql = format!("SELECT {INODE_COLS} FROM inodes WHERE id = ?1");
    Ok(conn
        .prepare_cached(&sql)?
        .query_row(params![id], inode_from_row)?)
}

/// Walks `path` from the root. `Ok(None)` when the last segment (or an ancestor) is missing;
/// `NotADirectory` when an ancestor is a file.
pub fn resolve(conn: &Connection, path: &DfsPath) -> Result<Option<Inode>> {
    let mut cur = inode_by_id(conn, ROOT_INODE)?;
    let mut walked = DfsPath::root();
    for seg in path.segments() {
        if cur.kind != Kind::Dir {
            return Err(MetaError::NotADirectory(walked));
        }
        match lookup(conn, cur.id, seg)? {
            Some(next) => cur = next,
            None => return Ok(None),
        }
        walked = walked
            .join(seg)
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
    }
    Ok(Some(cur))
}

fn resolve_existing(conn: &Connection, path: &DfsPath) -> Result<Inode> {
    resolve(conn, path)?.ok_or_else(|| MetaError::NotFound(path.clone()))
}

fn chunk_count(conn: &Connection, inode: &Inode) -> Result<u64> {
    if inode.kind != Kind::File {
        return Ok(0);
    }
    let n: i64 = conn
        .prepare_cached("SELECT count(*) FROM file_chunks WHERE inode = ?1")?
        .query_row(params![inode.id], |r| r.get(0))?;
    Ok(n as u64)
}

fn info(conn: &Connection, path: DfsPath, inode: Inode) -> Result<EntryInfo> {
    let chunk_count = chunk_count(conn, &inode)?;
    Ok(EntryInfo {
        path,
        inode,
        chunk_count,
    })
}

pub fn stat(conn: &Connection, path: &DfsPath) -> Result<EntryInfo> {
    let inode = resolve_existing(conn, path)?;
    info(conn, path.clone(), inode)
}

/// Immediate children of a directory, in name order, after `start_after`. Listing a file
/// returns the file itself. The bool is true when more entries follow.
pub fn list(
    conn: &Connection,
    path: &DfsPath,
    start_after: &str,
    limit: usize,
) -> Result<(Vec<EntryInfo>, bool)> {
    let dir = resolve_existing(conn, path)?;
    if dir.kind == Kind::File {
        return Ok((vec![info(conn, path.clone(), dir)?], false));
    }
    let mut stmt = conn.prepare_cached(
        "SELECT i.id, i.kind, i.size, i.mtime_ms, i.version, i.replication, i.attrs, i.name,
                (SELECT count(*) FROM file_chunks f WHERE f.inode = i.id)
         FROM inodes i WHERE i.parent = ?1 AND i.name > ?2 ORDER BY i.name LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![dir.id, start_after, (limit + 1) as i64], |r| {
        Ok((
            inode_from_row(r)?,
            r.get::<_, String>(7)?,
            r.get::<_, i64>(8)? as u64,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (inode, name, chunk_count) = row?;
        let child = path
            .join(&name)
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
        out.push(EntryInfo {
            path: child,
            inode,
            chunk_count,
        });
    }
    let truncated = out.len() > limit;
    out.truncate(limit);
    Ok((out, truncated))
}

fn insert_dir(tx: &Transaction<'_>, parent: i64, name: &str, now: i64) -> Result<Inode> {
    tx.prepare_cached("INSERT INTO inodes (parent, name, kind, mtime_ms) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![parent, name, kind_to_sql(Kind::Dir), now])?;
    inode_by_id(tx, tx.last_insert_rowid())
}

/// Creates every missing directory on the way to `path`'s parent and returns the parent.
fn ensure_parent(tx: &Transaction<'_>, path: &DfsPath, create: bool, now: i64) -> Result<Inode> {
    let parent_path = path
        .parent()
        .ok_or_else(|| MetaError::Invalid("the root has no parent".into()))?;
    let mut cur = inode_by_id(tx, ROOT_INODE)?;
    let mut walked = DfsPath::root();
    for seg in parent_path.segments() {
        walked = walked
            .join(seg)
            .map_err(|e| MetaError::Invalid(e.to_string()))?;
        cur = match lookup(tx, cur.id, seg)? {
            Some(n) if n.kind == Kind::Dir => n,
            Some(_) => return Err(MetaError::NotADirectory(walked)),
            None if create => insert_dir(tx, cur.id, seg, now)?,
            None => return Err(MetaError::NotFound(walked)),
        };
    }
    Ok(cur)
}

pub fn mkdir(
    conn: &mut Connection,
    path: &DfsPath,
    o: &MkdirOptions,
    now: i64,
) -> Result<EntryInfo> {
    if path.is_root() {
        return if o.parents && o.attrs.is_none() {
            stat(conn, path)
        } else {
            Err(MetaError::AlreadyExists(path.clone()))
        };
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let parent = ensure_parent(&tx, path, o.parents, now)?;
    let mut inode = match lookup(&tx, parent.id, path.name())? {
        Some(existing) if existing.kind == Kind::Dir && o.parents => existing,
        Some(existing) if existing.kind == Kind::File => {
            return Err(MetaError::NotADirectory(path.clone()))
        }
        Some(_) => return Err(MetaError::AlreadyExists(path.clone())),
        None => {
            let dir = insert_dir(&tx, parent.id, path.name(), now)?;
            if parent.id == ROOT_INODE {
                record_owner(&tx, dir.id, &o.owner)?;
            }
            dir
        }
    };
    if let Some(attrs) = &o.attrs {
        tx.prepare_cached("UPDATE inodes SET attrs = ?1 WHERE id = ?2")?
            .execute(params![attrs_to_sql(attrs), inode.id])?;
        inode.attrs = attrs.clone();
    }
    tx.commit()?;
    Ok(EntryInfo {
        path: path.clone(),
        inode,
        chunk_count: 0,
    })
}

/// Records `owner` for the new top-level directory `inode` (a bucket; see `buckets.rs`),
/// inside the mkdir's transaction.
fn record_owner(tx: &Transaction<'_>, inode: i64, owner: &str) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO buckets (inode, owner) VALUES (?1, ?2)")?
        .execute(params![inode, owner])?;
    Ok(())
}

/// Deletes a file, an empty directory, or with `recursive` a whole tree, if its version is
/// `expected_version` (when given). Returns the number of files and directories removed.
pub fn delete(
    conn: &mut Connection,
    path: &DfsPath,
    recursive: bool,
    expected_version: Option<u64>,
) -> Result<(u64, u64)> {
    if path.is_root() {
        return Err(MetaError::Invalid(
            "cannot delete the root directory".into(),
        ));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inode = resolve_existing(&tx, path)?;
    if let Some(expected) = expected_version.filter(|v| *v != inode.version) {
        return Err(MetaError::VersionMismatch {
            path: path.clone(),
            expected,
            actual: inode.version,
        });
    }
    if inode.kind == Kind::Dir && !recursive {
        let has_child: bool = tx
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM inodes WHERE parent = ?1)")?
            .query_row(params![inode.id], |r| r.get(0))?;
        if has_child {
            return Err(MetaError::NotEmpty(path.clone()));
        }
    }
    let (files, dirs): (i64, i64) = tx.query_row(
        "WITH RECURSIVE sub(id, kind) AS (
             SELECT id, kind FROM inodes WHERE id = ?1
             UNION ALL SELECT i.id, i.kind FROM inodes i JOIN sub ON i.parent = sub.id)
         SELECT coalesce(sum(kind = 2), 0), coalesce(sum(kind = 1), 0) FROM sub",
        params![inode.id],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    // ON DELETE CASCADE removes the subtree and the files' chunk lists.
    tx.execute("DELETE FROM inodes WHERE id = ?1", params![inode.id])?;
    tx.commit()?;
    Ok((files as u64, dirs as u64))
}

/// Moves `src` to `dst` (one row update, whatever the size of the tree). `dst` must not
/// exist and its parent must be a directory.
pub fn rename(conn: &mut Connection, src: &DfsPath, dst: &DfsPath, now: i64) -> Result<EntryInfo> {
    if src.is_root() || dst.is_root() {
        return Err(MetaError::Invalid("cannot move the root directory".into()));
    }
    if dst.starts_with(src) {
        return Err(MetaError::Invalid(format!(
            "cannot move {src} into itself ({dst})"
        )));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let inode = resolve_existing(&tx, src)?;
    let parent = ensure_parent(&tx, dst, false, now)?;
    if lookup(&tx, parent.id, dst.name())?.is_some() {
        return Err(MetaError::AlreadyExists(dst.clone()));
    }
    tx.execute(
        "UPDATE inodes SET parent = ?1, name = ?2 WHERE id = ?3",
        params![parent.id, dst.name(), inode.id],
    )?;
    let moved = inode_by_id(&tx, inode.id)?;
    let out = info(&tx, dst.clone(), moved)?;
    tx.commit()?;
    Ok(out)
}

/// Commits a file version: checks every chunk's durable replicas on record against the
/// write quorum, creates missing parent directories, and swaps the chunk list, all in one
/// transaction.
pub fn commit_file(conn: &mut Connection, req: &CommitRequest, now: i64) -> Result<EntryInfo> {
    let total: u64 = req.chunks.iter().map(|c| c.1).sum();
    if total != req.size {
        return Err(MetaError::Invalid(format!(
            "{}: size {} does not match its chunks ({total} bytes)",
            req.path, req.size
        )));
    }
    if req.path.is_root() {
        return Err(MetaError::IsADirectory(req.path.clone()));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;

    let mut checked: HashMap<ChunkId, u64> = HashMap::new();
    for (id, size) in &req.chunks {
        if let Some(known) = checked.get(id) {
            if known != size {
                return Err(MetaError::Invalid(format!(
                    "chunk {id}: listed with two sizes"
                )));
            }
            continue;
        }
        let on_record: Option<i64> = tx
            .prepare_cached("SELECT size FROM chunks WHERE id = ?1")?
            .query_row(params![id.to_hex()], |r| r.get(0))
            .optional()?;
        match on_record {
            None => {
                return Err(MetaError::QuorumNotMet {
                    chunk: *id,
                    have: 0,
                    need: req.write_quorum as usize,
                })
            }
            Some(s) if s as u64 != *size => {
                return Err(MetaError::Invalid(format!(
                    "chunk {id}: size {s} on record, {size} in commit"
                )))
            }
            Some(_) => {}
        }
        let mut stmt = tx.prepare_cached("SELECT node_id FROM replicas WHERE chunk_id = ?1")?;
        let holders = stmt.query_map(params![id.to_hex()], |r| r.get::<_, String>(0))?;
        let mut have = 0;
        for h in holders {
            if req.live_nodes.contains(&h?) {
                have += 1;
            }
        }
        if have < req.write_quorum as usize {
            return Err(MetaError::QuorumNotMet {
                chunk: *id,
                have,
                need: req.write_quorum as usize,
            });
        }
        checked.insert(*id, *size);
    }

    let version = NewVersion {
        path: &req.path,
        chunks: &req.chunks,
        size: req.size,
        replication: req.replication,
        no_clobber: req.no_clobber,
        expected_version: req.expected_version,
        attrs: &req.attrs,
    };
    let inode_id = install(&tx, &version, now)?;
    let inode = inode_by_id(&tx, inode_id)?;
    tx.commit()?;
    Ok(EntryInfo {
        path: req.path.clone(),
        inode,
        chunk_count: req.chunks.len() as u64,
    })
}

/// What [`install`] writes.
struct NewVersion<'a> {
    path: &'a DfsPath,
    chunks: &'a [(ChunkId, u64)],
    size: u64,
    replication: u32,
    no_clobber: bool,
    expected_version: Option<u64>,
    attrs: &'a Attrs,
}

/// Makes `v` the current version of its path, inside the caller's transaction: creates
/// missing parent directories, checks the write conditions, swaps the chunk list.
/// Returns the file's inode id.
fn install(tx: &Transaction<'_>, v: &NewVersion<'_>, now: i64) -> Result<i64> {
    let parent = ensure_parent(tx, v.path, true, now)?;
    let attrs = attrs_to_sql(v.attrs);
    let inode_id = match lookup(tx, parent.id, v.path.name())? {
        Some(existing) if existing.kind == Kind::Dir => {
            return Err(MetaError::IsADirectory(v.path.clone()))
        }
        Some(_) if v.no_clobber => return Err(MetaError::AlreadyExists(v.path.clone())),
        Some(existing) => {
            if let Some(expected) = v.expected_version {
                if expected != existing.version {
                    return Err(MetaError::VersionMismatch {
                        path: v.path.clone(),
                        expected,
                        actual: existing.version,
                    });
                }
            }
            tx.prepare_cached("DELETE FROM file_chunks WHERE inode = ?1")?
                .execute(params![existing.id])?;
            tx.prepare_cached(
                "UPDATE inodes SET size = ?1, mtime_ms = ?2, version = version + 1, replication = ?3,
                 attrs = ?4 WHERE id = ?5",
            )?
            .execute(params![v.size as i64, now, v.replication, attrs, existing.id])?;
            existing.id
        }
        None => {
            if let Some(expected) = v.expected_version.filter(|e| *e != 0) {
                return Err(MetaError::VersionMismatch {
                    path: v.path.clone(),
                    expected,
                    actual: 0,
                });
            }
            tx.prepare_cached(
                "INSERT INTO inodes (parent, name, kind, size, mtime_ms, version, replication, attrs)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
            )?
            .execute(params![
                parent.id,
                v.path.name(),
                kind_to_sql(Kind::File),
                v.size as i64,
                now,
                v.replication,
                attrs
            ])?;
            tx.last_insert_rowid()
        }
    };
    let mut ins = tx.prepare_cached(
        "INSERT INTO file_chunks (inode, idx, chunk_id, size) VALUES (?1, ?2, ?3, ?4)",
    )?;
    for (idx, (id, size)) in v.chunks.iter().enumerate() {
        ins.execute(params![inode_id, idx as i64, id.to_hex(), *size as i64])?;
    }
    Ok(inode_id)
}

/// Commits a file made of other files' chunks (see [`ComposeRequest`]), and deletes
/// `delete_after`, all in one transaction.
pub fn compose(conn: &mut Connection, req: &ComposeRequest, now: i64) -> Result<EntryInfo> {
    if req.dst.is_root() {
        return Err(MetaError::IsADirectory(req.dst.clone()));
    }
    for d in &req.delete_after {
        if d.is_root() || req.dst.starts_with(d) {
            return Err(MetaError::Invalid(format!(
                "compose: cannot delete {d}, it holds the destination {}",
                req.dst
            )));
        }
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut chunks = Vec::new();
    for (src, want) in &req.sources {
        let inode = resolve_existing(&tx, src)?;
        if inode.kind == Kind::Dir {
            return Err(MetaError::IsADirectory(src.clone()));
        }
        if let Some(expected) = want {
            if *expected != inode.version {
                return Err(MetaError::VersionMismatch {
                    path: src.clone(),
                    expected: *expected,
                    actual: inode.version,
                });
            }
        }
        chunks.extend(chunk_list(&tx, inode.id)?);
    }
    let size = chunks.iter().map(|c| c.1).sum();
    let version = NewVersion {
        path: &req.dst,
        chunks: &chunks,
        size,
        replication: req.replication,
        no_clobber: req.no_clobber,
        expected_version: req.expected_version,
        attrs: &req.attrs,
    };
    let inode_id = install(&tx, &version, now)?;
    for d in &req.delete_after {
        if let Some(gone) = resolve(&tx, d)? {
            // ON DELETE CASCADE removes the subtree and the files' chunk lists.
            tx.execute("DELETE FROM inodes WHERE id = ?1", params![gone.id])?;
        }
    }
    let inode = inode_by_id(&tx, inode_id)?;
    tx.commit()?;
    Ok(EntryInfo {
        path: req.dst.clone(),
        inode,
        chunk_count: chunks.len() as u64,
    })
}

/// A file's chunk ids and sizes, in order.
fn chunk_list(conn: &Connection, inode: i64) -> Result<Vec<(ChunkId, u64)>> {
    let mut stmt = conn
        .prepare_cached("SELECT chunk_id, size FROM file_chunks WHERE inode = ?1 ORDER BY idx")?;
    let rows = stmt.query_map(params![inode], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, size) = row?;
        let id = id
            .parse()
            .map_err(|e: crate::chunk::InvalidChunkId| MetaError::Invalid(e.to_string()))?;
        out.push((id, size));
    }
    Ok(out)
}

/// A file's entry and its ordered chunk list with offsets.
pub fn file_chunks(conn: &Connection, path: &DfsPath) -> Result<(EntryInfo, Vec<FileChunk>)> {
    // One snapshot for the entry and its chunk list: in WAL mode each statement outside a
    // transaction reads its own, and a commit between the two would pair one version's
    // size with another's chunks (a reader then got a mix of versions).
    let tx = conn.unchecked_transaction()?;
    let conn = &*tx;
    let inode = resolve_existing(conn, path)?;
    if inode.kind == Kind::Dir {
        return Err(MetaError::IsADirectory(path.clone()));
    }
    let mut chunks = Vec::new();
    let mut offset = 0;
    for (chunk_id, size) in chunk_list(conn, inode.id)? {
        chunks.push(FileChunk {
            chunk_id,
            size,
            offset,
        });
        offset += size;
    }
    let entry = EntryInfo {
        path: path.clone(),
        inode,
        chunk_count: chunks.len() as u64,
    };
    Ok((entry, chunks))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::SqliteStore as Store;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).unwrap()
    }

    /// A store with one live node holding chunks `ids` (sizes 10, 20, 30, ...).
    fn store_with_chunks(dir: &std::path::Path, ids: &[ChunkId]) -> Store {
        let store = Store::open(&dir.join("meta.db"), "normal").unwrap();
        store
            .with_writer(|c| {
                c.execute(
                    "INSERT INTO nodes (id, addr, registered_ms, last_seen_ms) VALUES ('n1', 'a', 0, 0)",
                    [],
                )?;
                for (i, id) in ids.iter().enumerate() {
                    let size = 10 * (i as i64 + 1);
                    c.execute(
                        "INSERT INTO chunks (id, size, created_ms, last_used_ms) VALUES (?1, ?2, 0, 0)",
                        params![id.to_hex(), size],
                    )?;
                    c.execute(
                        "INSERT INTO replicas (chunk_id, node_id, recorded_ms) VALUES (?1, 'n1', 0)",
                        params![id.to_hex()],
                    )?;
                }
                Ok(())
            })
            .unwrap();
        store
    }

    fn commit(store: &Store, path: &str, chunks: &[(ChunkId, u64)], attrs: &[(&str, &str)]) {
        let req = CommitRequest {
            path: p(path),
            chunks: chunks.to_vec(),
            size: chunks.iter().map(|c| c.1).sum(),
            replication: 1,
            write_quorum: 1,
            no_clobber: false,
            expected_version: None,
            live_nodes: ["n1".to_string()].into(),
            attrs: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        };
        store.with_writer(|c| commit_file(c, &req, 5)).unwrap();
    }

    #[test]
    fn compose_joins_chunk_lists_keeps_attrs_and_deletes_sources_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<ChunkId> = (0u8..3).map(|i| ChunkId::of(&[i])).collect();
        let store = store_with_chunks(dir.path(), &ids);
        commit(
            &store,
            "/b/.up/1",
            &[(ids[0], 10), (ids[1], 20)],
            &[("etag", "one")],
        );
        commit(&store, "/b/.up/2", &[(ids[2], 30)], &[]);
        let stat_of = |s: &str| store.with_writer(|c| stat(c, &p(s)));
        assert_eq!(stat_of("/b/.up/1").unwrap().inode.attrs["etag"], "one");

        let mut req = ComposeRequest {
            sources: vec![(p("/b/.up/1"), Some(1)), (p("/b/.up/2"), Some(1))],
            dst: p("/b/obj"),
            replication: 1,
            no_clobber: true,
            expected_version: None,
            attrs: [("etag".to_string(), "x-2".to_string())].into(),
            delete_after: vec![p("/b/.up")],
        };
        // A source that moved on refuses the whole compose and changes nothing.
        req.sources[1].1 = Some(7);
        let err = store.with_writer(|c| compose(c, &req, 9)).unwrap_err();
        assert!(
            matches!(err, MetaError::VersionMismatch { actual: 1, .. }),
            "{err}"
        );
        assert!(matches!(stat_of("/b/obj"), Err(MetaError::NotFound(_))));
        assert!(stat_of("/b/.up/2").is_ok());

        req.sources[1].1 = Some(1);
        let info = store.with_writer(|c| compose(c, &req, 9)).unwrap();
        assert_eq!(
            (info.inode.size, info.chunk_count, info.inode.version),
            (60, 3, 1)
        );
        let (entry, chunks) = store.with_writer(|c| file_chunks(c, &p("/b/obj"))).unwrap();
        assert_eq!(entry.inode.attrs["etag"], "x-2");
        let got: Vec<(ChunkId, u64, u64)> = chunks
            .iter()
            .map(|c| (c.chunk_id, c.size, c.offset))
            .collect();
        assert_eq!(
            got,
            vec![(ids[0], 10, 0), (ids[1], 20, 10), (ids[2], 30, 30)]
        );
        assert!(matches!(stat_of("/b/.up"), Err(MetaError::NotFound(_))));
        // The chunks are referenced once each, by the new file only.
        let refs: i64 = store
            .with_writer(|c| Ok(c.query_row("SELECT count(*) FROM file_chunks", [], |r| r.get(0))?))
            .unwrap();
        assert_eq!(refs, 3);

        // Copy (one source): shared references; the destination exists, so no_clobber refuses.
        req.sources = vec![(p("/b/obj"), None)];
        req.delete_after.clear();
        let err = store.with_writer(|c| compose(c, &req, 10)).unwrap_err();
        assert!(matches!(err, MetaError::AlreadyExists(_)), "{err}");
        req.dst = p("/b/copy");
        store.with_writer(|c| compose(c, &req, 10)).unwrap();
        let (_, copied) = store
            .with_writer(|c| file_chunks(c, &p("/b/copy")))
            .unwrap();
        assert_eq!(copied, chunks);

        // A deletion that would take the destination with it is refused.
        req.dst = p("/b/d/x");
        req.delete_after = vec![p("/b/d")];
        let err = store.with_writer(|c| compose(c, &req, 11)).unwrap_err();
        assert!(matches!(err, MetaError::Invalid(_)), "{err}");
    }
}
