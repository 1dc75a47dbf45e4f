//! The metadata store: every SQL statement of dfsd lives in this module.
//!
//! One SQLite file in WAL mode with foreign keys on and `synchronous=FULL` by default. A
//! single writer connection serialises mutations (each one SQLite transaction); a pool of
//! reader connections serves reads concurrently with it and with each other, which WAL
//! allows, so one slow reader (a big fsck, a long listing) does not hold up the others.
//! All functions are blocking: async callers go through [`Store::write`] /
//! [`Store::read`] on the blocking pool.

mod access;
mod buckets;
mod cluster;
mod events;
mod maintenance;
mod migrate;
mod namespace;
mod security;

use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use rusqlite::Connection;

use crate::chunk::ChunkId;
use crate::path::DfsPath;

pub use cluster::{NodeRecord, NodeStatsRecord};
pub use events::{insert_events, list_events, recent_events, EventRecord};
pub use migrate::MIGRATIONS;
pub use namespace::{CommitRequest, ComposeRequest, FileChunk};

/// Per-file attributes set with each committed version (S3 keeps its ETag, Content-Type
/// and user metadata here). Stored as a JSON object; small, checked by the coordinator.
pub type Attrs = std::collections::BTreeMap<String, String>;

/// Id of the root directory's row.
pub const ROOT_INODE: i64 = 1;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

impl Kind {
    fn to_sql(self) -> i64 {
        match self {
            Kind::Dir => 1,
            Kind::File => 2,
        }
    }

    fn from_sql(v: i64) -> Kind {
        if v == 1 {
            Kind::Dir
        } else {
            Kind::File
        }
    }
}

/// One namespace entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub id: i64,
    pub kind: Kind,
    pub size: u64,
    pub mtime_ms: i64,
    pub version: u64,
    pub replication: u32,
    /// Empty for directories and for files committed without attributes.
    pub attrs: Attrs,
}

/// An entry with its path and chunk count, as returned to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: DfsPath,
    pub inode: Inode,
    pub chunk_count: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("{0}: no such file or directory")]
    NotFound(DfsPath),
    #[error("{0}: already exists")]
    AlreadyExists(DfsPath),
    #[error("{0}: not a directory")]
    NotADirectory(DfsPath),
    #[error("{0}: is a directory")]
    IsADirectory(DfsPath),
    #[error("{0}: directory not empty (delete recursively, e.g. rm -r)")]
    NotEmpty(DfsPath),
    #[error("{path}: version is {actual}, expected {expected}")]
    VersionMismatch {
        path: DfsPath,
        expected: u64,
        actual: u64,
    },
    #[error("chunk {chunk}: {have} durable replica(s) on record, write quorum is {need}")]
    QuorumNotMet {
        chunk: ChunkId,
        have: usize,
        need: usize,
    },
    #[error("unknown datanode {0:?}: register first")]
    UnknownNode(String),
    #[error("access key {0}: no such key")]
    NoSuchKey(String),
    #[error("access key {0}: already exists")]
    KeyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("metadata store: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reader connections of [`Store::open`].
pub const DEFAULT_READERS: usize = 4;

#[derive(Clone)]
pub struct Store {
    writer: Arc<Mutex<Connection>>,
    readers: Arc<ReaderPool>,
}

/// Idle reader connections; a read takes one (waiting while all are busy) and puts it back.
struct ReaderPool {
    idle: Mutex<Vec<Connection>>,
    returned: Condvar,
}

impl ReaderPool {
    /// Runs `f` on an idle connection, waiting for one if every reader is busy.
    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> T) -> T {
        let conn = {
            let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
            loop {
                if let Some(c) = idle.pop() {
                    break c;
                }
                idle = self.returned.wait(idle).unwrap_or_else(|p| p.into_inner());
            }
        };
        // Put back even if `f` panics, or the pool would shrink for good.
        struct Return<'a>(&'a ReaderPool, Option<Connection>);
        impl Drop for Return<'_> {
            fn drop(&mut self) {
                if let Some(c) = self.1.take() {
                    self.0
                        .idle
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(c);
                    self.0.returned.notify_one();
                }
            }
        }
        let mut guard = Return(self, Some(conn));
        f(guard.1.as_mut().expect("taken only on drop"))
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path` with [`DEFAULT_READERS`] reader
    /// connections and applies pending migrations.
    pub fn open(path: &Path, synchronous: &str) -> Result<Store> {
        Store::open_with_readers(path, synchronous, DEFAULT_READERS)
    }

    /// As [`Store::open`], with `readers` reader connections (at least one).
    pub fn open_with_readers(path: &Path, synchronous: &str, readers: usize) -> Result<Store> {
        let sync = match synchronous {
            "full" => "FULL",
            "normal" => "NORMAL",
            "extra" => "EXTRA",
            other => {
                return Err(MetaError::Invalid(format!(
                    "unknown sqlite synchronous mode {other:?}"
                )))
            }
        };
        let open = || -> Result<Connection> {
            let conn = Connection::open(path)?;
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", sync)?;
            conn.pragma_update(None, "foreign_keys", "ON")?;
            Ok(conn)
        };
        let mut writer = open()?;
        migrate::apply(&mut writer)?;
        let readers = (0..readers.max(1))
            .map(|_| open())
            .collect::<Result<Vec<_>>>()?;
        Ok(Store {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(readers),
                returned: Condvar::new(),
            }),
        })
    }

    /// Runs `f` on the writer connection on the blocking pool.
    pub async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.writer.clone();
        run_blocking(move || {
            let mut conn = conn.lock().unwrap_or_else(|p| p.into_inner());
            timed("write", || f(&mut conn))
        })
        .await
    }

    /// Runs `f` on one of the reader connections on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        run_blocking(move || pool.with(|conn| timed("read", || f(conn)))).await
    }

    /// Synchronous access for tests and start-up code.
    pub fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.writer.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// Counts one query that scans a whole table (or index) in
/// `dfsd_metadata_scans_total{kind}`, so a test can tell who runs them and how often.
fn scanned(kind: &str) {
    crate::metrics::coordinator()
        .metadata_scans
        .get_or_create(&crate::metrics::kind(kind))
        .inc();
}

/// Runs one metadata transaction, recording its time (lock wait excluded).
fn timed<T>(kind: &str, f: impl FnOnce() -> T) -> T {
    let started = std::time::Instant::now();
    let out = f();
    crate::metrics::coordinator()
        .sqlite_duration
        .get_or_create(&crate::metrics::kind(kind))
        .observe(started.elapsed().as_secs_f64());
    out
}

async fn run_blocking<T, F>(f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(r) => r,
        Err(e) => Err(MetaError::Invalid(format!("metadata task failed: {e}"))),
    }
}

// Re-export the operations so callers write `meta::stat(conn, ..)`.
pub use access::readable_chunks;
pub use buckets::{get_bucket, public_buckets, set_bucket, BucketRecord};
pub use cluster::{
    chunk_sizes, delete_node, get_node, list_nodes, record_replicas, remove_replica, replicas_of,
    update_node_stats, upsert_node,
};
pub use maintenance::{
    chunk_health, chunks_on_node, files_under, gc_backlog, gc_claim, namespace_counts,
    reconcile_inventory, replica_counts, set_draining, touch_chunks_checked, ChunkHealth, Doomed,
    FileReport, InventoryItem, Reconciled,
};
pub use namespace::{
    commit_file, compose, delete, file_chunks, list, mkdir, rename, resolve, stat, MkdirOptions,
};
pub use security::{
    checkpoint_truncate, insert_key, legacy_cluster_secrets, list_keys, list_revoked_certs,
    record_secret_fingerprints, revoke_cert, revoke_key, rotate_cluster_secrets,
    secret_fingerprints, Resealed, RevokedCert,
};

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader held up (a big fsck, a long listing) leaves the other readers serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_reader_does_not_stall_other_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_with_readers(&dir.path().join("m.db"), "normal", 2).unwrap();
        let (release, held) = std::sync::mpsc::channel::<()>();
        let (started_tx, started) = tokio::sync::oneshot::channel();
        let slow = tokio::spawn({
            let store = store.clone();
            async move {
                store
                    .read(move |c| {
                        let _ = started_tx.send(());
                        held.recv().unwrap();
                        Ok(c.query_row("SELECT count(*) FROM inodes", [], |r| r.get::<_, i64>(0))?)
                    })
                    .await
            }
        });
        started.await.unwrap();
        for _ in 0..10 {
            let root = tokio::time::timeout(
                std::time::Duration::from_secs(10),
                store.read(|c| stat(c, &DfsPath::root())),
            )
            .await
            .expect("a read waited for the slow one")
            .unwrap();
            assert_eq!(root.inode.id, ROOT_INODE);
        }
        release.send(()).unwrap();
        assert_eq!(slow.await.unwrap().unwrap(), 1);
    }
}
