//! The scrubber: re-hashes every stored chunk, pass after pass, so that silent corruption
//! (bit rot, torn or truncated files, a bad sector) is found while other replicas still
//! exist, rather than when a client needs the chunk (invariant 5).
//!
//! A pass walks the store one 256th at a time (all chunks under `chunks/ab/`, so memory
//! stays small with millions of chunks) and verifies each chunk with
//! [`ChunkStore::verify`], which quarantines a corrupt one. Reading is throttled by a token
//! bucket at the configured byte rate: a pass never skips chunks to keep time, it takes as
//! long as the data needs. Corrupt chunks are reported to the coordinator at once (batched
//! while a report is in flight) and, after the pass, an inventory is sent so the
//! coordinator also reconciles chunks that vanished by other means.
//!
//! Passes start `period` apart (from start to start), or back to back when a pass takes
//! longer. The position of a pass is saved after each slice, so a node restarted more
//! often than a pass takes still covers every chunk: an interrupted pass resumes where it
//! stopped (after the start delay) instead of starting over at `00`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;

use super::cluster::Cluster;
use super::inventory::Inventory;
use super::store::{ChunkStore, StoreError, Verdict};
use super::throttle::TokenBucket;
use super::DatanodeTuning;
use crate::chunk::ChunkId;
use crate::model::now_ms;
use crate::proto::pb;

/// Where the position of the current pass is kept, under the data dir.
pub(super) const STATE_FILE: &str = "scrub_state";
/// Slices of the store a pass works through (one per first id byte).
const SLICES: u16 = 256;
/// Most chunks in one corruption report.
const MAX_REPORT: usize = 1000;
/// Wait before retrying a failed corruption report.
const REPORT_RETRY: Duration = Duration::from_secs(5);

/// Progress shared with the heartbeat (and so with `dfsd status`).
#[derive(Default)]
pub struct ScrubProgress {
    checked: AtomicU64,
    total: AtomicU64,
    last_pass_ms: AtomicI64,
    errors: AtomicU64,
}

impl ScrubProgress {
    pub fn to_pb(&self) -> pb::ScrubProgress {
        pb::ScrubProgress {
            checked: self.checked.load(Ordering::Relaxed),
            total: self.total.load(Ordering::Relaxed),
            last_pass_ms: self.last_pass_ms.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }

    fn set_checked(&self, checked: u64) {
        self.checked.store(checked, Ordering::Relaxed);
        // Chunks written during a pass can make it check more than it expected.
        self.total.fetch_max(checked, Ordering::Relaxed);
    }
}

/// A handle on the running scrubber.
#[derive(Clone)]
pub struct Scrubber {
    progress: Arc<ScrubProgress>,
    wake: Arc<Notify>,
}

impl Scrubber {
    pub fn progress(&self) -> &Arc<ScrubProgress> {
        &self.progress
    }

    /// Starts a pass now if the scrubber is waiting for one (an operator's "scrub now").
    pub fn wake(&self) {
        self.wake.notify_one();
    }
}

/// The position of a pass, persisted in [`STATE_FILE`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PassState {
    /// Next slice to check; [`SLICES`] when no pass is in progress.
    next: u16,
    checked: u64,
    started_ms: i64,
    last_pass_ms: i64,
}

impl PassState {
    fn load(path: &Path) -> PassState {
        let idle = PassState {
            next: SLICES,
            ..PassState::default()
        };
        let Ok(text) = std::fs::read_to_string(path) else {
            return idle;
        };
        let f: Vec<&str> = text.split_whitespace().collect();
        let parsed = match f.as_slice() {
            ["v1", next, checked, started, last] => (|| {
                Some(PassState {
                    next: next.parse().ok().filter(|n| *n <= SLICES)?,
                    checked: checked.parse().ok()?,
                    started_ms: started.parse().ok()?,
                    last_pass_ms: last.parse().ok()?,
                })
            })(),
            _ => None,
        };
        parsed.unwrap_or(idle)
    }

    /// Best effort: losing the file only means a pass starts over.
    fn save(&self, path: &Path) {
        let tmp = path.with_extension("tmp");
        let text = format!(
            "v1 {} {} {} {}\n",
            self.next, self.checked, self.started_ms, self.last_pass_ms
        );
        let written = crate::security::files::private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, text.as_bytes()))
            .and_then(|_| std::fs::rename(&tmp, path));
        if let Err(e) = written {
            tracing::warn!(path = %path.display(), error = %e, "could not save scrub position");
        }
    }
}

/// What a pass needs; separate from the schedule so a pass can be tested on its own.
struct Pass {
    store: Arc<dyn ChunkStore>,
    bucket: TokenBucket,
    progress: Arc<ScrubProgress>,
    corrupt: mpsc::Sender<ChunkId>,
    state_path: PathBuf,
}

/// Starts the scrubber and its corruption reporter; both stop when `stop` turns true.
pub fn spawn(
    node_id: String,
    store: Arc<dyn ChunkStore>,
    data_dir: &Path,
    coordinator: Cluster,
    inventory: Inventory,
    tuning: &DatanodeTuning,
    stop: watch::Receiver<bool>,
) -> (Scrubber, JoinHandle<()>) {
    let progress = Arc::new(ScrubProgress::default());
    let state_path = data_dir.join(STATE_FILE);
    // Loaded now, so the first registration already shows when the last pass ended.
    let state = PassState::load(&state_path);
    progress
        .last_pass_ms
        .store(state.last_pass_ms, Ordering::Relaxed);
    let wake = Arc::new(Notify::new());
    let (corrupt_tx, corrupt_rx) = mpsc::channel(1024);
    let reporter = tokio::spawn(report_corruption(
        node_id,
        coordinator,
        corrupt_rx,
        stop.clone(),
    ));
    let pass = Pass {
        state_path,
        store,
        bucket: TokenBucket::new(tuning.scrub_rate),
        progress: progress.clone(),
        corrupt: corrupt_tx,
    };
    let (period, delay) = (tuning.scrub_period, tuning.scrub_start_delay);
    let worker_wake = wake.clone();
    let task = tokio::spawn(async move {
        schedule(pass, state, inventory, period, delay, worker_wake, stop).await;
        let _ = reporter.await;
    });
    (Scrubber { progress, wake }, task)
}

/// Waits `d`, or less if woken; false if told to stop.
async fn wait(d: Duration, wake: &Notify, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = wake.notified() => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

async fn schedule(
    pass: Pass,
    mut state: PassState,
    inventory: Inventory,
    period: Duration,
    start_delay: Duration,
    wake: Arc<Notify>,
    mut stop: watch::Receiver<bool>,
) {
    if !wait(start_delay, &wake, &mut stop).await {
        return;
    }
    loop {
        if state.next >= SLICES {
            state = PassState {
                next: 0,
                checked: 0,
                started_ms: now_ms(),
                last_pass_ms: state.last_pass_ms,
            };
        } else {
            tracing::info!(
                slice = state.next,
                checked = state.checked,
                "resuming scrub pass"
            );
        }
        tracing::info!(
            chunks = pass.store.stats().chunk_count,
            "scrub pass started"
        );
        if !pass.run(&mut state, &mut stop).await {
            return;
        }
        state.last_pass_ms = now_ms();
        state.save(&pass.state_path);
        let p = &pass.progress;
        p.last_pass_ms.store(state.last_pass_ms, Ordering::Relaxed);
        tracing::info!(
            checked = state.checked,
            errors = p.errors.load(Ordering::Relaxed),
            secs = (state.last_pass_ms - state.started_ms) / 1000,
            "scrub pass complete"
        );
        // Chunks that vanished other than through the scrubber are reconciled too.
        inventory.request();
        let ran = Duration::from_millis((now_ms() - state.started_ms).max(0) as u64);
        if !wait(period.saturating_sub(ran), &wake, &mut stop).await {
            return;
        }
    }
}

impl Pass {
    /// Works through the pass from `state.next`; false if stopped before the end.
    async fn run(&self, state: &mut PassState, stop: &mut watch::Receiver<bool>) -> bool {
        let expected = self.store.stats().chunk_count.max(state.checked);
        self.progress.total.store(expected, Ordering::Relaxed);
        self.progress.set_checked(state.checked);
        while state.next < SLICES {
            if *stop.borrow() {
                return false;
            }
            let store = self.store.clone();
            let slice = state.next as u8;
            let entries = tokio::task::spawn_blocking(move || store.chunks_with_prefix(slice))
                .await
                .unwrap_or_else(|e| Err(join_error(e)));
            // An unlistable slice is retried next pass; the rest of the store still gets checked.
            let entries = entries.unwrap_or_else(|e| {
                tracing::error!(slice, error = %e, "scrub could not list chunks");
                Vec::new()
            });
            for entry in entries {
                if *stop.borrow() {
                    return false;
                }
                tokio::select! {
                    _ = self.bucket.acquire(entry.size) => {}
                    _ = stop.wait_for(|s| *s) => return false,
                }
                self.check(entry.id).await;
                state.checked += 1;
                self.progress.set_checked(state.checked);
            }
            state.next += 1;
            state.save(&self.state_path);
        }
        true
    }

    /// Verifies one chunk, reporting it if it is corrupt (or unreadable: a read error is
    /// as bad as wrong bytes, and it is quarantined too).
    async fn check(&self, id: ChunkId) {
        let store = self.store.clone();
        let verdict = tokio::task::spawn_blocking(move || match store.verify(&id) {
            Err(StoreError::Io { source, .. }) if source.raw_os_error() == Some(libc::EIO) => {
                tracing::error!(chunk = %id, error = %source, "chunk unreadable");
                store.quarantine(&id).map(|_| Verdict::Quarantined)
            }
            other => other,
        })
        .await
        .unwrap_or_else(|e| Err(join_error(e)));
        match verdict {
            // Missing: deleted since the slice was listed.
            Ok(Verdict::Intact) | Ok(Verdict::Missing) => {}
            Ok(Verdict::Quarantined) => {
                self.progress.errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(chunk = %id, "scrub found a corrupt chunk");
                let _ = self.corrupt.send(id).await;
            }
            Err(e) if !self.store.contains(&id) => {
                tracing::debug!(chunk = %id, error = %e, "chunk went away while scrubbed");
            }
            Err(e) => tracing::warn!(chunk = %id, error = %e, "scrub could not check chunk"),
        }
    }
}

fn join_error(e: tokio::task::JoinError) -> StoreError {
    StoreError::Io {
        what: "scrub task".into(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Sends corrupt chunk ids to the coordinator: each finding at once, those found while a
/// report is in flight together in the next. Failed reports are retried; past a large
/// backlog ids are dropped, since the next inventory reconciles those chunks anyway.
async fn report_corruption(
    node_id: String,
    coordinator: Cluster,
    mut rx: mpsc::Receiver<ChunkId>,
    mut stop: watch::Receiver<bool>,
) {
    const MAX_BACKLOG: usize = 100_000;
    let mut pending: Vec<ChunkId> = Vec::new();
    loop {
        if pending.is_empty() {
            tokio::select! {
                id = rx.recv() => match id {
                    Some(id) => pending.push(id),
                    None => return,
                },
                _ = stop.wait_for(|s| *s) => return,
            }
        }
        while let Ok(id) = rx.try_recv() {
            if pending.len() < MAX_BACKLOG {
                pending.push(id);
            }
        }
        let n = pending.len().min(MAX_REPORT);
        match coordinator.report_corruption(&node_id, &pending[..n]).await {
            Ok(_) => {
                tracing::info!(chunks = n, "corrupt chunks reported to the coordinator");
                pending.drain(..n);
            }
            Err(e) => {
                tracing::warn!(chunks = pending.len(), error = %e,
                    "corruption report failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(REPORT_RETRY) => {}
                    _ = stop.wait_for(|s| *s) => return,
                }
            }
        }
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

    #[tokio::test]
    async fn a_pass_checks_every_chunk_and_reports_the_corrupt_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        let ids: Vec<ChunkId> = (0..20u32).map(|i| put(&store, &[i as u8; 1000])).collect();
        // One flipped bit, one truncated file.
        let mut bytes = std::fs::read(store.chunk_path(&ids[3])).unwrap();
        bytes[10] ^= 1;
        std::fs::write(store.chunk_path(&ids[3]), bytes).unwrap();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(store.chunk_path(&ids[7]))
            .unwrap();
        f.set_len(10).unwrap();

        let (tx, mut rx) = mpsc::channel(64);
        let pass = Pass {
            state_path: dir.path().join(STATE_FILE),
            store: store.clone(),
            bucket: TokenBucket::new(0),
            progress: Arc::new(ScrubProgress::default()),
            corrupt: tx,
        };
        let (_stop_tx, mut stop) = watch::channel(false);
        let mut state = PassState::default();
        assert!(pass.run(&mut state, &mut stop).await);

        let mut found: Vec<ChunkId> = std::iter::from_fn(|| rx.try_recv().ok()).collect();
        found.sort();
        let mut expect = vec![ids[3], ids[7]];
        expect.sort();
        assert_eq!(found, expect);
        let p = pass.progress.to_pb();
        assert_eq!((p.checked, p.total, p.errors), (20, 20, 2));
        assert_eq!(store.stats().chunk_count, 18);
        assert!(!store.contains(&ids[3]) && !store.contains(&ids[7]));
        // The position was saved: the pass is over.
        assert_eq!(PassState::load(&pass.state_path).next, SLICES);
    }

    #[tokio::test]
    async fn a_stopped_pass_keeps_its_position_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        put(&store, b"some chunk");
        let (tx, _rx) = mpsc::channel(64);
        let pass = Pass {
            state_path: dir.path().join(STATE_FILE),
            store,
            bucket: TokenBucket::new(0),
            progress: Arc::new(ScrubProgress::default()),
            corrupt: tx,
        };
        let state = PassState {
            next: 200,
            checked: 7,
            started_ms: 1234,
            last_pass_ms: 99,
        };
        state.save(&pass.state_path);
        let mut resumed = PassState::load(&pass.state_path);
        assert_eq!(resumed, state);
        // Told to stop, the pass returns at once without moving on.
        let (stop_tx, mut stop) = watch::channel(false);
        stop_tx.send(true).unwrap();
        assert!(!pass.run(&mut resumed, &mut stop).await);
        assert_eq!(resumed, state);
        assert_eq!(pass.progress.to_pb().checked, 7);
        // Garbage in the file means no pass in progress.
        std::fs::write(&pass.state_path, "v1 999 x").unwrap();
        assert_eq!(PassState::load(&pass.state_path).next, SLICES);
        std::fs::remove_file(&pass.state_path).unwrap();
        assert_eq!(PassState::load(&pass.state_path).next, SLICES);
    }
}
