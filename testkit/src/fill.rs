//! Fills a stopped coordinator's metadata database with many files at once, written
//! straight into its SQLite file, for tests that need a big namespace without uploading
//! it. (A load generator that goes through the API is a later issue's; this is the quick
//! way to 100k rows.)
//!
//! The rows are what commits would leave: `dirs` directories under `/fill` with
//! `per_dir` files each, every file one chunk of its own with a replica on each of three
//! datanodes. The datanodes are made up and long silent (dead), so nothing ever asks them
//! for those chunks: the chunks count as unrecoverable, and the cluster's real nodes keep
//! serving as before.

use std::path::Path;

use sha2::{Digest, Sha256};

/// Ids of the made-up datanodes that hold the filled chunks.
pub const FILL_NODES: [&str; 3] = ["dn-fill-0", "dn-fill-1", "dn-fill-2"];

/// Adds `dirs` x `per_dir` one-chunk files under `/fill` to the database at `db` (the
/// coordinator must be stopped); returns the number of files added.
pub fn fill_files(db: &Path, dirs: usize, per_dir: usize) -> usize {
    let mut conn = rusqlite::Connection::open(db).unwrap();
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    let tx = conn.transaction().unwrap();
    let now = 1_700_000_000_000i64;
    for n in FILL_NODES {
        tx.execute(
            "INSERT OR IGNORE INTO nodes (id, addr, capacity_bytes, used_bytes, free_bytes,
                 chunk_count, registered_ms, last_seen_ms, draining)
             VALUES (?1, 'http://127.0.0.1:9', 0, 0, 0, 0, ?2, ?2, 0)",
            rusqlite::params![n, now],
        )
        .unwrap();
    }
    tx.execute(
        "INSERT INTO inodes (parent, name, kind, mtime_ms) VALUES (1, 'fill', 1, ?1)",
        [now],
    )
    .unwrap();
    let top = tx.last_insert_rowid();
    {
        let mut dir = tx
            .prepare("INSERT INTO inodes (parent, name, kind, mtime_ms) VALUES (?1, ?2, 1, ?3)")
            .unwrap();
        let mut file = tx
            .prepare(
                "INSERT INTO inodes (parent, name, kind, size, mtime_ms, version, replication)
                 VALUES (?1, ?2, 2, ?3, ?4, 1, 3)",
            )
            .unwrap();
        let mut chunk = tx
            .prepare(
                "INSERT INTO chunks (id, size, created_ms, last_used_ms) VALUES (?1, ?2, ?3, ?3)",
            )
            .unwrap();
        let mut file_chunk = tx
            .prepare("INSERT INTO file_chunks (inode, idx, chunk_id, size) VALUES (?1, 0, ?2, ?3)")
            .unwrap();
        let mut replica = tx
            .prepare("INSERT INTO replicas (chunk_id, node_id, recorded_ms) VALUES (?1, ?2, ?3)")
            .unwrap();
        for d in 0..dirs {
            dir.execute(rusqlite::params![top, format!("d{d:04}"), now])
                .unwrap();
            let parent = tx.last_insert_rowid();
            for f in 0..per_dir {
                let size = 1000 + (f as i64 % 7) * 100;
                file.execute(rusqlite::params![parent, format!("f{f:05}"), size, now])
                    .unwrap();
                let inode = tx.last_insert_rowid();
                let id = hex::encode(Sha256::digest(format!("fill {d} {f}").as_bytes()));
                chunk.execute(rusqlite::params![id, size, now]).unwrap();
                file_chunk
                    .execute(rusqlite::params![inode, id, size])
                    .unwrap();
                for n in FILL_NODES {
                    replica.execute(rusqlite::params![id, n, now]).unwrap();
                }
            }
        }
    }
    tx.commit().unwrap();
    dirs * per_dir
}
