//! The cluster event log: a bounded table of recent events (node states, repairs,
//! corruption, GC, file changes), so a late reader of `dfsd events` sees history.

use rusqlite::{params, Connection};

use crate::meta::Result;
use crate::model::EventRecord;

/// Appends `events` in order (their `id`s are ignored) and prunes all but the latest
/// `keep`, in one transaction. Returns the new ids.
pub fn insert_events(conn: &mut Connection, events: &[EventRecord], keep: u32) -> Result<Vec<u64>> {
    let tx = conn.transaction()?;
    let mut ids = Vec::with_capacity(events.len());
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO events (time_ms, kind, node_id, path, chunk_id, bytes, count, detail)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for ev in events {
            stmt.execute(params![
                ev.time_ms,
                ev.kind,
                ev.node_id,
                ev.path,
                ev.chunk_id,
                ev.bytes as i64,
                ev.count as i64,
                ev.detail
            ])?;
            ids.push(tx.last_insert_rowid() as u64);
        }
    }
    if let Some(last) = ids.last() {
        tx.execute(
            "DELETE FROM events WHERE id <= ?1",
            params![*last as i64 - i64::from(keep)],
        )?;
    }
    tx.commit()?;
    Ok(ids)
}

/// Kept events with an id above `after_id` and a time at or after `since_ms`, oldest
/// first, at most `limit`.
pub fn list_events(
    conn: &Connection,
    after_id: u64,
    since_ms: i64,
    limit: usize,
) -> Result<Vec<EventRecord>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, time_ms, kind, node_id, path, chunk_id, bytes, count, detail FROM events
         WHERE id > ?1 AND time_ms >= ?2 ORDER BY id LIMIT ?3",
    )?;
    let rows = stmt.query_map(params![after_id as i64, since_ms, limit as i64], |r| {
        Ok(EventRecord {
            id: r.get::<_, i64>(0)? as u64,
            time_ms: r.get(1)?,
            kind: r.get(2)?,
            node_id: r.get(3)?,
            path: r.get(4)?,
            chunk_id: r.get(5)?,
            bytes: r.get::<_, i64>(6)? as u64,
            count: r.get::<_, i64>(7)? as u64,
            detail: r.get(8)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// The latest `n` events, oldest first (for the status page).
pub fn recent_events(conn: &Connection, n: usize) -> Result<Vec<EventRecord>> {
    let max: i64 = conn.query_row("SELECT coalesce(max(id), 0) FROM events", [], |r| r.get(0))?;
    list_events(conn, (max - n as i64).max(0) as u64, 0, n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_bounded_ordered_and_resumable() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::meta::SqliteStore::open(&dir.path().join("m.db"), "normal").unwrap();
        store
            .with_writer(|c| {
                for i in 0..10 {
                    let ev = EventRecord {
                        time_ms: 1000 + i,
                        kind: format!("k{i}"),
                        ..Default::default()
                    };
                    assert_eq!(insert_events(c, &[ev], 4)?, [i as u64 + 1]);
                }
                let all = list_events(c, 0, 0, 100)?;
                let kinds: Vec<_> = all.iter().map(|e| e.kind.as_str()).collect();
                assert_eq!(kinds, ["k6", "k7", "k8", "k9"]);
                assert_eq!(list_events(c, 8, 0, 100)?.len(), 2);
                assert_eq!(list_events(c, 0, 1009, 100)?.len(), 1);
                assert_eq!(recent_events(c, 2)?.len(), 2);
                Ok(())
            })
            .unwrap();
    }
}
