//! The SQLite backend of the metadata seam: [`SqliteStore`] implements
//! [`MetaStore`](crate::meta::MetaStore), and every SQL statement of dfsd lives in this
//! directory.
//!
//! One SQLite file in WAL mode with foreign keys on and `synchronous=FULL` by default. A
//! single writer connection serialises mutations (each one SQLite transaction); a pool of
//! reader connections serves reads concurrently with it and with each other, which WAL
//! allows, so one slow reader (a big fsck, a long listing) does not hold up the others.
//! The statements are blocking functions over a `Connection` in the files below;
//! `ops.rs` runs each operation on the right connection on the blocking pool.
//!
//! - `namespace.rs`: inodes, listing, mkdir, delete, rename, commit, compose, chunk lists.
//! - `cluster.rs`: nodes, chunks, replicas. `maintenance.rs`: chunk health, GC claims,
//!   inventory reconciliation, the fsck walk, counts.
//! - `events.rs`, `security.rs`, `access.rs`, `buckets.rs`, `migrate.rs`.

mod access;
mod buckets;
mod cluster;
mod events;
mod maintenance;
mod migrate;
mod namespace;
mod ops;
mod security;

use crate::sync::Locked;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};

use rusqlite::Connection;

use crate::meta::{MetaError, Result};

pub use migrate::MIGRATIONS;

/// Id of the root directory's row.
const ROOT_INODE: i64 = 1;

impl From<rusqlite::Error> for MetaError {
    fn from(e: rusqlite::Error) -> MetaError {
        MetaError::Backend(Box::new(e))
    }
}

/// Reader connections of [`SqliteStore::open`].
pub const DEFAULT_READERS: usize = 4;

/// The SQLite metadata store: one writer connection and a pool of readers.
#[derive(Clone)]
pub struct SqliteStore {
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
            let mut idle = self.idle.locked();
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
                    self.0.idle.locked().push(c);
                    self.0.returned.notify_one();
                }
            }
        }
        let mut guard = Return(self, Some(conn));
        f(guard.1.as_mut().expect("taken only on drop"))
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` with [`DEFAULT_READERS`] reader
    /// connections and applies pending migrations.
    pub fn open(path: &Path, synchronous: &str) -> Result<SqliteStore> {
        SqliteStore::open_with_readers(path, synchronous, DEFAULT_READERS)
    }

    /// As [`SqliteStore::open`], with `readers` reader connections (at least one).
    pub fn open_with_readers(
        path: &Path,
        synchronous: &str,
        readers: usize,
    ) -> Result<SqliteStore> {
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
        Ok(SqliteStore {
            writer: Arc::new(Mutex::new(writer)),
            readers: Arc::new(ReaderPool {
                idle: Mutex::new(readers),
                returned: Condvar::new(),
            }),
        })
    }

    /// Runs `f` on the writer connection on the blocking pool.
    async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.writer.clone();
        run_blocking(move || {
            let mut conn = conn.locked();
            timed("write", || f(&mut conn))
        })
        .await
    }

    /// Runs `f` on one of the reader connections on the blocking pool.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let pool = self.readers.clone();
        run_blocking(move || pool.with(|conn| timed("read", || f(conn)))).await
    }

    /// Runs `f` on the writer connection on the caller's thread: for tests of the SQL,
    /// and for an operation that borrows from its caller (the rotation of secrets).
    fn with_writer<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        f(&mut self.writer.locked())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::DfsPath;

    /// A reader held up (a big fsck, a long listing) leaves the other readers serving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_slow_reader_does_not_stall_other_reads() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open_with_readers(&dir.path().join("m.db"), "normal", 2).unwrap();
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
                store.read(|c| namespace::stat(c, &DfsPath::root())),
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
