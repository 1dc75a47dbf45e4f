//! Queries behind self-healing: chunk health (targets and replicas), garbage collection,
//! inventory reconciliation, drain and node removal, and the cluster summary.

use std::collections::{HashMap, HashSet};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::chunk::ChunkId;
use crate::meta::{MetaError, Result};
use crate::model::{ChunkHealth, Doomed, FileReport, InventoryItem, Reconciled, StoreCounts};
use crate::path::DfsPath;

fn parse_id(s: &str) -> Result<ChunkId> {
    s.parse()
        .map_err(|e: crate::chunk::InvalidChunkId| MetaError::Invalid(e.to_string()))
}

/// Every referenced chunk with its target and replica records.
pub fn chunk_health(conn: &Connection) -> Result<Vec<ChunkHealth>> {
    super::scanned("chunk_health");
    let mut replicas: HashMap<String, Vec<String>> = HashMap::new();
    {
        let mut stmt = conn.prepare_cached("SELECT chunk_id, node_id FROM replicas")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?;
        for row in rows {
            let (c, n) = row?;
            replicas.entry(c).or_default().push(n);
        }
    }
    let mut stmt = conn.prepare_cached(
        "SELECT c.id, c.size, t.target FROM
           (SELECT fc.chunk_id AS chunk_id, max(i.replication) AS target
              FROM file_chunks fc JOIN inodes i ON i.id = fc.inode GROUP BY fc.chunk_id) t
         JOIN chunks c ON c.id = t.chunk_id",
    )?;
    let rows = stmt.query_map([], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
        ))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (id, size, target) = row?;
        let nodes = replicas.remove(&id).unwrap_or_default();
        out.push(ChunkHealth {
            id: parse_id(&id)?,
            size: size as u64,
            target: target.max(1) as u32,
            nodes,
        });
    }
    Ok(out)
}

/// Unreferenced chunks: (count, bytes) and how many are past `cutoff_ms`.
fn gc_backlog(conn: &Connection) -> Result<(u64, u64)> {
    super::scanned("gc_backlog");
    let (n, bytes): (i64, i64) = conn.query_row(
        "SELECT count(*), coalesce(sum(size), 0) FROM chunks c
         WHERE NOT EXISTS (SELECT 1 FROM file_chunks f WHERE f.chunk_id = c.id)",
        [],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    Ok((n as u64, bytes as u64))
}

/// Claims up to `limit` chunks that no committed file references and no upload has used
/// since `cutoff_ms`, in one transaction: their replica and chunk records are removed, so
/// a racing upload either bumped `last_used_ms` first (and the chunk is skipped) or finds
/// the chunk gone and stores it afresh. Chunks an upload in flight has proven
/// (`protected`) are skipped too.
pub fn gc_claim(
    conn: &mut Connection,
    cutoff_ms: i64,
    limit: usize,
    protected: &HashSet<ChunkId>,
) -> Result<Vec<Doomed>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let candidates: Vec<(String, i64)> = {
        let mut stmt = tx.prepare_cached(
            "SELECT c.id, c.size FROM chunks c
             WHERE c.last_used_ms < ?1 AND NOT EXISTS (SELECT 1 FROM file_chunks f WHERE f.chunk_id = c.id)
             LIMIT ?2",
        )?;
        let rows = stmt.query_map(params![cutoff_ms, limit as i64], |r| {
            Ok((r.get::<_, String>(0)?, r.get(1)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (id, size) = row?;
            if !protected.contains(&parse_id(&id)?) {
                out.push((id, size));
            }
        }
        out
    };
    let mut out = Vec::with_capacity(candidates.len());
    {
        let mut nodes_of = tx.prepare_cached("SELECT node_id FROM replicas WHERE chunk_id = ?1")?;
        let mut del_rep = tx.prepare_cached("DELETE FROM replicas WHERE chunk_id = ?1")?;
        let mut del_chunk = tx.prepare_cached("DELETE FROM chunks WHERE id = ?1")?;
        for (id, size) in candidates {
            let nodes = nodes_of
                .query_map(params![id], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            del_rep.execute(params![id])?;
            del_chunk.execute(params![id])?;
            out.push(Doomed {
                id: parse_id(&id)?,
                size: size as u64,
                nodes,
            });
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Marks chunks as just used by an upload. Returns the ids that are no longer on record
/// (collected meanwhile), which the caller must place afresh.
pub fn touch_chunks_checked(
    conn: &mut Connection,
    ids: &[ChunkId],
    now: i64,
) -> Result<HashSet<ChunkId>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut gone = HashSet::new();
    {
        let mut stmt = tx.prepare_cached(
            "UPDATE chunks SET last_used_ms = max(last_used_ms, ?2) WHERE id = ?1",
        )?;
        for id in ids {
            if stmt.execute(params![id.to_hex(), now])? == 0 {
                gone.insert(*id);
            }
        }
    }
    tx.commit()?;
    Ok(gone)
}

/// Reconciles a node's full inventory with the replica records, both ways. Records made
/// after `started_ms` (writes racing the inventory walk) are left alone.
pub fn reconcile_inventory(
    conn: &mut Connection,
    node: &str,
    inventory: &HashMap<ChunkId, InventoryItem>,
    started_ms: i64,
    grace_secs: u64,
    now: i64,
) -> Result<Reconciled> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM nodes WHERE id = ?1)",
        params![node],
        |r| r.get(0),
    )?;
    if !known {
        return Err(MetaError::UnknownNode(node.to_string()));
    }
    let mut out = Reconciled::default();
    let recorded: Vec<(String, i64)> = {
        let mut stmt =
            tx.prepare_cached("SELECT chunk_id, recorded_ms FROM replicas WHERE node_id = ?1")?;
        let rows = stmt.query_map(params![node], |r| Ok((r.get(0)?, r.get(1)?)))?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let mut on_record = HashSet::with_capacity(recorded.len());
    {
        let mut del =
            tx.prepare_cached("DELETE FROM replicas WHERE chunk_id = ?1 AND node_id = ?2")?;
        for (hex, recorded_ms) in recorded {
            let id = parse_id(&hex)?;
            on_record.insert(id);
            if !inventory.contains_key(&id) && recorded_ms < started_ms {
                del.execute(params![hex, node])?;
                out.lost.push(id);
            }
        }
    }
    {
        let mut size_of = tx.prepare_cached("SELECT size FROM chunks WHERE id = ?1")?;
        let mut add = tx.prepare_cached(
            "INSERT OR IGNORE INTO replicas (chunk_id, node_id, recorded_ms) VALUES (?1, ?2, ?3)",
        )?;
        for (id, item) in inventory {
            if on_record.contains(id) {
                continue;
            }
            let hex = id.to_hex();
            match size_of
                .query_row(params![hex], |r| r.get::<_, i64>(0))
                .optional()?
            {
                Some(size) if size as u64 == item.size => {
                    add.execute(params![hex, node, now])?;
                    out.added += 1;
                }
                Some(_) => out.orphans.push(*id), // wrong size: a damaged copy
                None if item.age_secs >= grace_secs => out.orphans.push(*id),
                None => {} // probably a write whose report is still in flight
            }
        }
    }
    tx.commit()?;
    Ok(out)
}

/// Replica records per node.
pub fn replica_counts(conn: &Connection) -> Result<HashMap<String, u64>> {
    super::scanned("replica_counts");
    let mut stmt =
        conn.prepare_cached("SELECT node_id, count(*) FROM replicas GROUP BY node_id")?;
    let rows = stmt.query_map([], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64))
    })?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

/// Chunks on record for one node.
pub fn chunks_on_node(conn: &Connection, node: &str) -> Result<Vec<ChunkId>> {
    let mut stmt = conn.prepare_cached("SELECT chunk_id FROM replicas WHERE node_id = ?1")?;
    let rows = stmt.query_map(params![node], |r| r.get::<_, String>(0))?;
    rows.map(|r| parse_id(&r?)).collect()
}

pub fn set_draining(conn: &Connection, node: &str, draining: bool) -> Result<bool> {
    Ok(conn.execute(
        "UPDATE nodes SET draining = ?2 WHERE id = ?1",
        params![node, draining as i64],
    )? == 1)
}

/// The counted figures of `dfsd status`: the namespace and the garbage backlog.
pub fn counts(conn: &Connection) -> Result<StoreCounts> {
    let (files, directories, logical_bytes, chunks) = namespace_counts(conn)?;
    let (gc_backlog_chunks, gc_backlog_bytes) = gc_backlog(conn)?;
    Ok(StoreCounts {
        files,
        directories,
        logical_bytes,
        chunks,
        gc_backlog_chunks,
        gc_backlog_bytes,
    })
}

/// Namespace figures: (files, directories, logical bytes, chunks on record).
fn namespace_counts(conn: &Connection) -> Result<(u64, u64, u64, u64)> {
    super::scanned("namespace_counts");
    let (files, dirs, bytes): (i64, i64, i64) = conn.query_row(
        "SELECT coalesce(sum(kind = 2), 0), coalesce(sum(kind = 1), 0) - 1, coalesce(sum(CASE WHEN kind = 2 THEN size END), 0) FROM inodes",
        [],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let chunks: i64 = conn.query_row("SELECT count(*) FROM chunks", [], |r| r.get(0))?;
    Ok((
        files as u64,
        dirs.max(0) as u64,
        bytes as u64,
        chunks as u64,
    ))
}

/// Every file at or below `path` (up to `limit`), with each chunk's replica records.
pub fn files_under(
    conn: &Connection,
    path: &DfsPath,
    limit: usize,
) -> Result<(Vec<FileReport>, bool)> {
    let root =
        super::namespace::resolve(conn, path)?.ok_or_else(|| MetaError::NotFound(path.clone()))?;
    let base = if path.is_root() {
        String::new()
    } else {
        path.to_string()
    };
    let files: Vec<(i64, String, i64, i64)> = {
        let mut stmt = conn.prepare_cached(
            "WITH RECURSIVE sub(id, path, kind, size, replication) AS (
                 SELECT id, ?2, kind, size, replication FROM inodes WHERE id = ?1
                 UNION ALL
                 SELECT i.id, sub.path || '/' || i.name, i.kind, i.size, i.replication
                 FROM inodes i JOIN sub ON i.parent = sub.id)
             SELECT id, path, size, replication FROM sub WHERE kind = 2 ORDER BY path LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![root.id, base, (limit + 1) as i64], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
        })?;
        rows.collect::<rusqlite::Result<_>>()?
    };
    let truncated = files.len() > limit;
    let mut chunks_of =
        conn.prepare_cached("SELECT chunk_id FROM file_chunks WHERE inode = ?1 ORDER BY idx")?;
    let mut nodes_of = conn.prepare_cached("SELECT node_id FROM replicas WHERE chunk_id = ?1")?;
    let mut out = Vec::new();
    for (id, p, size, replication) in files.into_iter().take(limit) {
        let ids = chunks_of
            .query_map(params![id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        let mut chunks = Vec::with_capacity(ids.len());
        for hex in ids {
            let nodes = nodes_of
                .query_map(params![hex], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            chunks.push((parse_id(&hex)?, nodes));
        }
        out.push(FileReport {
            path: if p.is_empty() { "/".into() } else { p },
            size: size as u64,
            replication: replication as u32,
            chunks,
        });
    }
    Ok((out, truncated))
}
