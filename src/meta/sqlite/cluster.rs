//! Datanodes, chunks and replica locations. A replica is recorded only on the word of the
//! datanode that holds it (invariant 4).

use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use crate::chunk::ChunkId;
use crate::meta::{MetaError, Result};
use crate::model::{NodeRecord, NodeStatsRecord};

const NODE_SELECT: &str =
    "SELECT n.id, n.addr, n.capacity_bytes, n.used_bytes, n.free_bytes, n.chunk_count,
        n.registered_ms, n.last_seen_ms, n.draining,
        (SELECT count(*) FROM replicas r WHERE r.node_id = n.id), n.public_addr
 FROM nodes n";

fn node_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        id: r.get(0)?,
        addr: r.get(1)?,
        public_addr: r.get(10)?,
        stats: NodeStatsRecord {
            capacity_bytes: r.get::<_, i64>(2)? as u64,
            used_bytes: r.get::<_, i64>(3)? as u64,
            free_bytes: r.get::<_, i64>(4)? as u64,
            chunk_count: r.get::<_, i64>(5)? as u64,
        },
        registered_ms: r.get(6)?,
        last_seen_ms: r.get(7)?,
        draining: r.get::<_, i64>(8)? != 0,
        replicas: r.get::<_, i64>(9)? as u64,
    })
}

pub fn upsert_node(
    conn: &Connection,
    id: &str,
    addr: &str,
    public_addr: &str,
    stats: NodeStatsRecord,
    now: i64,
) -> Result<()> {
    conn.prepare_cached(
        "INSERT INTO nodes (id, addr, capacity_bytes, used_bytes, free_bytes, chunk_count, registered_ms, last_seen_ms, public_addr)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7, ?8)
         ON CONFLICT(id) DO UPDATE SET addr = ?2, capacity_bytes = ?3, used_bytes = ?4, free_bytes = ?5,
             chunk_count = ?6, last_seen_ms = ?7, public_addr = ?8",
    )?
    .execute(params![
        id,
        addr,
        stats.capacity_bytes as i64,
        stats.used_bytes as i64,
        stats.free_bytes as i64,
        stats.chunk_count as i64,
        now,
        public_addr
    ])?;
    Ok(())
}

/// Returns false when the node is unknown.
pub fn update_node_stats(
    conn: &Connection,
    id: &str,
    stats: NodeStatsRecord,
    now: i64,
) -> Result<bool> {
    let n = conn
        .prepare_cached(
            "UPDATE nodes SET capacity_bytes = ?2, used_bytes = ?3, free_bytes = ?4, chunk_count = ?5, last_seen_ms = ?6
             WHERE id = ?1",
        )?
        .execute(params![
            id,
            stats.capacity_bytes as i64,
            stats.used_bytes as i64,
            stats.free_bytes as i64,
            stats.chunk_count as i64,
            now
        ])?;
    Ok(n == 1)
}

pub fn list_nodes(conn: &Connection) -> Result<Vec<NodeRecord>> {
    // Counting each node's replicas walks the replica index.
    super::scanned("list_nodes");
    let sql = format!("{NODE_SELECT} ORDER BY n.id");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([], node_from_row)?;
    Ok(rows.collect::<rusqlite::Result<_>>()?)
}

pub fn delete_node(conn: &Connection, id: &str) -> Result<bool> {
    Ok(conn.execute("DELETE FROM nodes WHERE id = ?1", params![id])? == 1)
}

/// Records that `node` durably holds `chunks`. Creates the chunk rows as needed.
pub fn record_replicas(
    conn: &mut Connection,
    node: &str,
    chunks: &[(ChunkId, u64)],
    now: i64,
) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let known: bool = tx
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM nodes WHERE id = ?1)")?
        .query_row(params![node], |r| r.get(0))?;
    if !known {
        return Err(MetaError::UnknownNode(node.to_string()));
    }
    {
        let mut chunk_ins = tx.prepare_cached(
            // A chunk just stored is in use: an upload is about to commit it (see gc_claim).
            "INSERT INTO chunks (id, size, created_ms, last_used_ms) VALUES (?1, ?2, ?3, ?3)
             ON CONFLICT(id) DO UPDATE SET last_used_ms = max(last_used_ms, excluded.last_used_ms)",
        )?;
        let mut size_of = tx.prepare_cached("SELECT size FROM chunks WHERE id = ?1")?;
        let mut rep_ins = tx.prepare_cached(
            "INSERT OR IGNORE INTO replicas (chunk_id, node_id, recorded_ms) VALUES (?1, ?2, ?3)",
        )?;
        for (id, size) in chunks {
            let hex = id.to_hex();
            chunk_ins.execute(params![hex, *size as i64, now])?;
            let known_size: i64 = size_of.query_row(params![hex], |r| r.get(0))?;
            if known_size as u64 != *size {
                return Err(MetaError::Invalid(format!(
                    "chunk {id}: node {node} reports {size} bytes, {known_size} on record"
                )));
            }
            rep_ins.execute(params![hex, node, now])?;
        }
    }
    tx.commit()?;
    Ok(())
}

/// Forgets (chunk, node) replica records, in one transaction.
pub fn remove_replicas(conn: &mut Connection, replicas: &[(ChunkId, String)]) -> Result<()> {
    let tx = conn.transaction()?;
    for (chunk, node) in replicas {
        remove_replica(&tx, chunk, node)?;
    }
    tx.commit()?;
    Ok(())
}

fn remove_replica(conn: &Connection, chunk: &ChunkId, node: &str) -> Result<bool> {
    let n = conn
        .prepare_cached("DELETE FROM replicas WHERE chunk_id = ?1 AND node_id = ?2")?
        .execute(params![chunk.to_hex(), node])?;
    Ok(n == 1)
}

/// Nodes on record as holding each chunk (all states; callers filter by liveness).
pub fn replicas_of(conn: &Connection, ids: &[ChunkId]) -> Result<HashMap<ChunkId, Vec<String>>> {
    let mut out: HashMap<ChunkId, Vec<String>> = HashMap::new();
    let mut stmt = conn.prepare_cached("SELECT node_id FROM replicas WHERE chunk_id = ?1")?;
    for id in ids {
        if out.contains_key(id) {
            continue;
        }
        let nodes = stmt
            .query_map(params![id.to_hex()], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        out.insert(*id, nodes);
    }
    Ok(out)
}

/// Sizes of the chunks on record, by id.
pub fn chunk_sizes(conn: &Connection, ids: &[ChunkId]) -> Result<HashMap<ChunkId, u64>> {
    let mut out = HashMap::new();
    let mut stmt = conn.prepare_cached("SELECT size FROM chunks WHERE id = ?1")?;
    for id in ids {
        if let Some(s) = stmt
            .query_row(params![id.to_hex()], |r| r.get::<_, i64>(0))
            .optional()?
        {
            out.insert(*id, s as u64);
        }
    }
    Ok(out)
}
