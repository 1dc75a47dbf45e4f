//! Protection of recently acknowledged chunks against coordinator-ordered deletion.
//!
//! Garbage collection and upload dedup race: the coordinator may decide a chunk is
//! unreferenced and order its deletion just as an upload reuses it (a WriteChunk of bytes
//! this node already holds is acknowledged without writing anything). Deleting it then
//! would break invariant 6, so `DeleteChunks` keeps any chunk this node wrote or
//! acknowledged within the order's `protect_secs`.
//!
//! The check and the deletion must be one step with respect to acknowledgements, or an ack
//! could slip in between: a deleter holds the lock from the check through the unlink, and
//! an acknowledger records its ack and then checks, under the same lock, that the chunk is
//! still on disk. Either the deleter sees the ack and keeps the chunk, or the acknowledger
//! sees the chunk gone and does not ack. The lock is held only for a stat and an unlink,
//! never for a directory fsync (those are batched after the loop).
//!
//! Acks are kept in memory for [`ACK_HORIZON`]; writes are also protected by the chunk
//! file's mtime, which survives a restart. A re-ack of an existing chunk made just before a
//! restart is not remembered; the coordinator's own grace period covers that window.

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use super::store::{ChunkStore, StoreError};
use crate::chunk::ChunkId;

/// How long an ack is remembered in memory. Orders protecting longer than this still
/// protect fresh writes through the file's mtime.
pub const ACK_HORIZON: Duration = Duration::from_secs(3600);
/// Pruning is amortised: at most once per this interval, on an insert.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

pub struct RecentAcks {
    inner: Mutex<AckTable>,
}

pub struct AckTable {
    acks: HashMap<ChunkId, Instant>,
    last_prune: Instant,
}

impl Default for RecentAcks {
    fn default() -> Self {
        RecentAcks {
            inner: Mutex::new(AckTable {
                acks: HashMap::new(),
                last_prune: Instant::now(),
            }),
        }
    }
}

impl RecentAcks {
    /// The lock that makes check-and-delete and ack-and-check atomic (see the module doc).
    pub fn lock(&self) -> MutexGuard<'_, AckTable> {
        self.inner.locked()
    }

    /// Records an ack of `id` at `now` if `present()`, evaluated under the lock, says the
    /// chunk is still stored. Returns whether it was (and so may be acknowledged).
    pub fn ack_if_present(
        &self,
        id: ChunkId,
        now: Instant,
        present: impl FnOnce() -> bool,
    ) -> bool {
        let mut inner = self.lock();
        inner.record(id, now);
        present()
    }
}

impl AckTable {
    pub fn record(&mut self, id: ChunkId, now: Instant) {
        self.acks.insert(id, now);
        if now.saturating_duration_since(self.last_prune) >= PRUNE_EVERY {
            self.acks
                .retain(|_, t| now.saturating_duration_since(*t) < ACK_HORIZON);
            self.last_prune = now;
        }
    }

    /// True if `id` was acknowledged less than `protect` before `now`.
    pub fn is_recent(&self, id: &ChunkId, now: Instant, protect: Duration) -> bool {
        self.acks
            .get(id)
            .is_some_and(|t| now.saturating_duration_since(*t) < protect)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.acks.len()
    }
}

/// What a `DeleteChunks` order did.
#[derive(Debug, Default)]
pub struct DeleteOutcome {
    /// Removed, or already absent.
    pub deleted: Vec<ChunkId>,
    /// Written or acknowledged within the protection window.
    pub kept: Vec<ChunkId>,
    pub freed_bytes: u64,
    /// Chunks that could not be removed (I/O errors); in neither list, so the coordinator
    /// keeps its record and the next inventory settles it.
    pub failed: Vec<(ChunkId, StoreError)>,
}

/// Why a `DeleteChunks` order failed as a whole.
#[derive(Debug, thiserror::Error)]
pub enum DeleteError {
    #[error("delete task failed: {0}")]
    Task(String),
    /// Every chunk of the order failed (I/O errors); the first failure says why.
    #[error("no chunk could be deleted ({count} failed): {first}")]
    NothingDeleted { count: usize, first: StoreError },
}

/// Carries out a `DeleteChunks` order: each chunk once, on the blocking pool (see
/// [`delete_unprotected`]). Fails only when nothing could be deleted or kept.
pub async fn delete_ordered(
    store: Arc<dyn ChunkStore>,
    acks: Arc<RecentAcks>,
    ids: Vec<ChunkId>,
    protect: Duration,
) -> Result<DeleteOutcome, DeleteError> {
    let mut seen = HashSet::with_capacity(ids.len());
    let ids: Vec<ChunkId> = ids.into_iter().filter(|id| seen.insert(*id)).collect();
    let mut out =
        tokio::task::spawn_blocking(move || delete_unprotected(&*store, &acks, &ids, protect))
            .await
            .map_err(|e| DeleteError::Task(e.to_string()))?;
    for (id, e) in &out.failed {
        tracing::error!(chunk = %id, error = %e, "deleting chunk failed");
    }
    if !out.failed.is_empty() && out.deleted.is_empty() && out.kept.is_empty() {
        let count = out.failed.len();
        let (_, first) = out.failed.swap_remove(0);
        return Err(DeleteError::NothingDeleted { count, first });
    }
    tracing::info!(
        deleted = out.deleted.len(),
        kept = out.kept.len(),
        failed = out.failed.len(),
        freed = out.freed_bytes,
        "deleted chunks on order"
    );
    Ok(out)
}

/// Deletes `ids` except those written or acknowledged within `protect` (blocking I/O: call
/// it on the blocking pool). Removals are made durable together at the end.
pub fn delete_unprotected(
    store: &dyn ChunkStore,
    acks: &RecentAcks,
    ids: &[ChunkId],
    protect: Duration,
) -> DeleteOutcome {
    let mut out = DeleteOutcome::default();
    let mut removed = Vec::new();
    for &id in ids {
        let guard = acks.lock();
        if guard.is_recent(&id, Instant::now(), protect) || written_within(store, &id, protect) {
            out.kept.push(id);
            continue;
        }
        let result = store.remove(&id);
        drop(guard);
        match result {
            Ok(Some(size)) => {
                out.freed_bytes += size;
                removed.push(id);
                out.deleted.push(id);
            }
            Ok(None) => out.deleted.push(id),
            Err(e) => out.failed.push((id, e)),
        }
    }
    if let Err(e) = store.sync_removals(&removed) {
        // The unlinks happened; a crash could only bring a chunk back, which the next
        // inventory reports. Not worth failing the order for.
        tracing::warn!(error = %e, "fsync after deleting chunks failed");
    }
    out
}

/// True if the chunk file was written less than `protect` ago (a future mtime, from a clock
/// step, counts as recent).
fn written_within(store: &dyn ChunkStore, id: &ChunkId, protect: Duration) -> bool {
    if protect.is_zero() {
        return false;
    }
    match store.modified(id) {
        Some(mtime) => match SystemTime::now().duration_since(mtime) {
            Ok(age) => age < protect,
            Err(_) => true,
        },
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::datanode::store::disk::DiskStore;

    fn put(store: &DiskStore, data: &[u8]) -> ChunkId {
        let id = ChunkId::of(data);
        let mut w = store.begin_write(id, data.len() as u64).unwrap();
        w.write(data).unwrap();
        w.finish().unwrap();
        id
    }

    /// Backdates a chunk file so only the in-memory acks can protect it.
    fn age(store: &DiskStore, id: &ChunkId, by: Duration) {
        let f = std::fs::File::options()
            .write(true)
            .open(store.chunk_path(id))
            .unwrap();
        f.set_modified(SystemTime::now() - by).unwrap();
    }

    #[test]
    fn ack_window_is_exclusive_and_per_chunk() {
        let acks = RecentAcks::default();
        let t0 = Instant::now();
        let (a, b) = (ChunkId::of(b"a"), ChunkId::of(b"b"));
        acks.lock().record(a, t0);
        let g = acks.lock();
        let p = Duration::from_secs(60);
        assert!(g.is_recent(&a, t0, p));
        assert!(g.is_recent(&a, t0 + Duration::from_secs(59), p));
        assert!(!g.is_recent(&a, t0 + Duration::from_secs(60), p));
        assert!(!g.is_recent(&b, t0, p));
        assert!(!g.is_recent(&a, t0, Duration::ZERO));
    }

    #[test]
    fn old_acks_are_pruned_on_insert() {
        let acks = RecentAcks::default();
        let t0 = Instant::now();
        let mut g = acks.lock();
        for i in 0..100u32 {
            g.record(ChunkId::of(&i.to_le_bytes()), t0);
        }
        // Within the prune interval nothing is scanned.
        g.record(ChunkId::of(b"x"), t0 + Duration::from_secs(2));
        assert_eq!(g.len(), 101);
        let later = t0 + ACK_HORIZON + Duration::from_secs(1);
        g.record(ChunkId::of(b"y"), later);
        assert_eq!(g.len(), 2, "only the two recent acks remain");
        assert!(g.is_recent(&ChunkId::of(b"y"), later, Duration::from_secs(5)));
    }

    #[test]
    fn delete_keeps_recently_acked_and_recently_written_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        let acks = RecentAcks::default();
        let old = put(&store, b"old and unreferenced");
        let reused = put(&store, b"old but just reused by an upload");
        let fresh = put(&store, b"just written");
        let absent = ChunkId::of(b"never stored");
        let day = Duration::from_secs(86_400);
        age(&store, &old, day);
        age(&store, &reused, day);
        assert!(acks.ack_if_present(reused, Instant::now(), || store.contains(&reused)));

        let out = delete_unprotected(
            &*store,
            &acks,
            &[old, reused, fresh, absent],
            Duration::from_secs(600),
        );
        assert_eq!(out.deleted, vec![old, absent]);
        assert_eq!(out.kept, vec![reused, fresh]);
        assert_eq!(out.freed_bytes, b"old and unreferenced".len() as u64);
        assert!(out.failed.is_empty());
        assert!(!store.contains(&old));
        assert!(store.contains(&reused) && store.contains(&fresh));

        // With no protection window everything goes.
        let out = delete_unprotected(&*store, &acks, &[reused, fresh], Duration::ZERO);
        assert_eq!(out.deleted, vec![reused, fresh]);
        assert_eq!(store.stats().chunk_count, 0);
        assert_eq!(store.stats().used_bytes, 0);
    }

    #[test]
    fn an_ack_after_a_deletion_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        let acks = RecentAcks::default();
        let id = put(&store, b"collected");
        age(&store, &id, Duration::from_secs(86_400));
        let out = delete_unprotected(&*store, &acks, &[id], Duration::from_secs(60));
        assert_eq!(out.deleted, vec![id]);
        // A dedup write that raced with the deletion must not be acknowledged.
        assert!(!acks.ack_if_present(id, Instant::now(), || store.contains(&id)));
    }
}
