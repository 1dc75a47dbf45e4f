//! Full chunk inventories, streamed to the coordinator (`Cluster.ReportInventory`).
//!
//! An inventory is how the coordinator learns the truth about a node: after a restart (it
//! waits for them before collecting garbage, invariant 6), after chunks vanish (scrub,
//! disk trouble), and to find orphans. It lists every chunk, so it is streamed: the
//! directory walk runs on the blocking pool and feeds batches of [`BATCH`] chunks through a
//! channel of two, so memory stays at a few batches with millions of chunks.
//!
//! The end of the stream means "complete". A walk that fails halfway must therefore never
//! end the stream cleanly, or the coordinator would take every chunk not yet listed for
//! lost. The request stream ends only after the walker has marked the inventory complete;
//! otherwise its last item is [`Outgoing::Abort`], which breaks the call off (how, in
//! `cluster.rs`).
//!
//! Requests from anywhere (registration, heartbeat, scrubber, timer) go to one worker
//! through a [`Notify`], so inventories never overlap and a burst of requests during a
//! send makes exactly one more.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::cluster::{CallError, Cluster, Outgoing};
use super::store::{ChunkStore, StoreError};
use crate::proto::pb;

/// Chunks per stream message (about 1 MB encoded).
pub const BATCH: usize = 10_000;
/// A first retry after a failed send; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(5);
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why an inventory was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// Listing the store failed (the call was broken off, never ended).
    #[error("inventory walk failed: {0}")]
    Walk(String),
    #[error(transparent)]
    Call(#[from] CallError),
}

/// Asks the inventory worker for an inventory.
#[derive(Clone)]
pub struct Inventory {
    wake: Arc<Notify>,
}

impl Inventory {
    /// Requests an inventory as soon as possible; requests made while one is being sent
    /// collapse into one more.
    pub fn request(&self) {
        self.wake.notify_one();
    }
}

/// Starts the worker: it sends an inventory on request and every `interval` (0 = only on
/// request), retrying failed sends with backoff, until `stop` turns true.
pub fn spawn(
    node_id: String,
    store: Arc<dyn ChunkStore>,
    coordinator: Cluster,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
) -> (Inventory, JoinHandle<()>) {
    let wake = Arc::new(Notify::new());
    let handle = Inventory { wake: wake.clone() };
    let task = tokio::spawn(async move {
        let periodic = |from: Instant| (!interval.is_zero()).then(|| from + interval);
        let mut next_periodic = periodic(Instant::now());
        let mut retry_at: Option<Instant> = None;
        let mut backoff = FIRST_BACKOFF;
        loop {
            let due = match (next_periodic, retry_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            tokio::select! {
                _ = wake.notified() => {}
                _ = sleep_until(due) => {}
                _ = stop.wait_for(|s| *s) => return,
            }
            let started = Instant::now();
            // Not raced against `stop` by dropping it: `send` breaks its stream off itself.
            let result = send(&node_id, &store, coordinator.clone(), stop.clone()).await;
            if *stop.borrow() {
                return;
            }
            match result {
                Ok((resp, chunks)) => {
                    tracing::info!(node = %node_id, chunks, lost = resp.lost, added = resp.added,
                        orphans = resp.orphans, ms = started.elapsed().as_millis() as u64,
                        "inventory sent");
                    next_periodic = periodic(Instant::now());
                    retry_at = None;
                    backoff = FIRST_BACKOFF;
                }
                Err(e) => {
                    tracing::warn!(node = %node_id, error = %e,
                        retry_in_s = backoff.as_secs(), "inventory failed");
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    });
    (handle, task)
}

async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Streams one complete inventory; returns the coordinator's answer and the chunk count.
/// Turning `stop` true breaks the inventory off (never ends it cleanly).
pub async fn send(
    node_id: &str,
    store: &Arc<dyn ChunkStore>,
    coordinator: Cluster,
    stop: watch::Receiver<bool>,
) -> Result<(pb::InventoryResponse, u64), InventoryError> {
    let (store, node_id) = (store.clone(), node_id.to_string());
    report(coordinator, stop, move |tx, complete| {
        walk(&*store, &node_id, BATCH, tx, complete)
    })
    .await
}

/// [`report`] over a bare channel, for the tests that make a walk fail halfway.
#[cfg(test)]
pub(super) async fn stream_inventory(
    coordinator: crate::security::join::ClusterChannel,
    stop: watch::Receiver<bool>,
    walker: impl FnOnce(&mpsc::Sender<pb::InventoryBatch>, &AtomicBool) -> Result<u64, StoreError>
        + Send
        + 'static,
) -> Result<(pb::InventoryResponse, u64), InventoryError> {
    report(Cluster::new(coordinator), stop, walker).await
}

/// The sending half of [`send`], with the walk as a parameter so tests can make it fail
/// halfway: `walker` runs on the blocking pool, sends batches and sets the flag when done.
async fn report(
    coordinator: Cluster,
    stop: watch::Receiver<bool>,
    walker: impl FnOnce(&mpsc::Sender<pb::InventoryBatch>, &AtomicBool) -> Result<u64, StoreError>
        + Send
        + 'static,
) -> Result<(pb::InventoryResponse, u64), InventoryError> {
    let (tx, rx) = mpsc::channel::<pb::InventoryBatch>(2);
    let complete = Arc::new(AtomicBool::new(false));
    let walk_complete = complete.clone();
    let walker = tokio::task::spawn_blocking(move || walker(&tx, &walk_complete));
    let result = coordinator
        .report_inventory(until_complete(rx, complete, stop))
        .await;

    // A walk error explains a failed call better than the reset it caused. A walker still
    // running here (the coordinator refused early) stops at its next send.
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            return Err(
                match tokio::time::timeout(Duration::from_secs(1), walker).await {
                    Ok(Ok(Err(e))) => InventoryError::Walk(e.to_string()),
                    Ok(Err(e)) => InventoryError::Walk(e.to_string()),
                    _ => e.into(),
                },
            )
        }
    };
    // The stream ended, which it does only once the walk completed.
    match walker.await {
        Ok(Ok(n)) => Ok((response, n)),
        Ok(Err(e)) => Err(InventoryError::Walk(e.to_string())),
        Err(e) => Err(InventoryError::Walk(e.to_string())),
    }
}

/// The batches from `rx`, ending only once the walk has marked the inventory complete;
/// otherwise (walk error, walker panic, `stop`) ending in [`Outgoing::Abort`]. The abort
/// drops `rx`, which stops a walker still sending.
fn until_complete(
    rx: mpsc::Receiver<pb::InventoryBatch>,
    complete: Arc<AtomicBool>,
    stop: watch::Receiver<bool>,
) -> impl futures::Stream<Item = Outgoing> + Send + 'static {
    futures::stream::unfold(Some((rx, stop)), move |state| {
        let complete = complete.clone();
        async move {
            // After an abort, stay pending: the reset ends the call.
            let Some((mut rx, mut stop)) = state else {
                return std::future::pending().await;
            };
            let batch = tokio::select! {
                batch = rx.recv() => batch,
                _ = stop.wait_for(|s| *s) => return Some((Outgoing::Abort, None)),
            };
            match batch {
                Some(batch) => Some((Outgoing::Batch(batch), Some((rx, stop)))),
                None if complete.load(Ordering::Acquire) => None,
                None => Some((Outgoing::Abort, None)),
            }
        }
    })
}

/// Walks the store, sending batches of `batch` chunks, and marks the inventory `complete`
/// when every chunk is in the channel. Always sends at least one batch, so even an empty
/// node's inventory names the node. Stops quietly if the call went away.
fn walk(
    store: &dyn ChunkStore,
    node_id: &str,
    batch: usize,
    tx: &mpsc::Sender<pb::InventoryBatch>,
    complete: &AtomicBool,
) -> Result<u64, StoreError> {
    let now = SystemTime::now();
    let mut chunks = Vec::with_capacity(batch);
    let mut count = 0u64;
    let mut receiver_gone = false;
    store.walk_chunks(&mut |e| {
        chunks.push(pb::InventoryChunk {
            chunk_id: e.id.to_hex(),
            size: e.size,
            age_secs: e
                .modified
                .and_then(|m| now.duration_since(m).ok())
                .map_or(0, |d| d.as_secs()),
        });
        count += 1;
        if chunks.len() < batch {
            return true;
        }
        let msg = pb::InventoryBatch {
            node_id: node_id.to_string(),
            chunks: std::mem::replace(&mut chunks, Vec::with_capacity(batch)),
            last: false,
        };
        receiver_gone = tx.blocking_send(msg).is_err();
        !receiver_gone
    })?;
    if receiver_gone {
        return Ok(count);
    }
    // The final batch (possibly empty) carries the completeness marker.
    let msg = pb::InventoryBatch {
        node_id: node_id.to_string(),
        chunks,
        last: true,
    };
    if tx.blocking_send(msg).is_err() {
        return Ok(count);
    }
    complete.store(true, Ordering::Release);
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::ChunkId;
    use crate::datanode::store::disk::DiskStore;

    fn drain(rx: &mut mpsc::Receiver<pb::InventoryBatch>) -> Vec<pb::InventoryBatch> {
        std::iter::from_fn(|| rx.try_recv().ok()).collect()
    }

    #[test]
    fn walk_batches_every_chunk_and_names_the_node_even_when_empty() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        let done = AtomicBool::new(false);
        let (tx, mut rx) = mpsc::channel(64);
        assert_eq!(walk(&*store, "dn-a", 3, &tx, &done).unwrap(), 0);
        assert!(done.load(Ordering::Acquire));
        let batches = drain(&mut rx);
        assert_eq!(batches.len(), 1);
        assert_eq!(
            (batches[0].node_id.as_str(), batches[0].chunks.len()),
            ("dn-a", 0)
        );

        let mut ids = Vec::new();
        for i in 0..7u32 {
            let data = i.to_le_bytes();
            let mut w = store.begin_write(ChunkId::of(&data), 4).unwrap();
            w.write(&data).unwrap();
            w.finish().unwrap();
            ids.push(ChunkId::of(&data).to_hex());
        }
        let done = AtomicBool::new(false);
        assert_eq!(walk(&*store, "dn-a", 3, &tx, &done).unwrap(), 7);
        assert!(done.load(Ordering::Acquire));
        let batches = drain(&mut rx);
        let sizes: Vec<usize> = batches.iter().map(|b| b.chunks.len()).collect();
        assert_eq!(sizes, vec![3, 3, 1]);
        assert_eq!(
            batches.iter().map(|b| b.last).collect::<Vec<_>>(),
            vec![false, false, true]
        );
        let mut listed: Vec<String> = batches
            .into_iter()
            .flat_map(|b| b.chunks)
            .inspect(|c| assert!(c.size == 4 && c.age_secs < 60))
            .map(|c| c.chunk_id)
            .collect();
        listed.sort();
        ids.sort();
        assert_eq!(listed, ids);

        // Exactly a multiple of the batch: an empty trailing batch carries the marker.
        let (tx, mut rx) = mpsc::channel(64);
        walk(&*store, "dn-a", 7, &tx, &AtomicBool::new(false)).unwrap();
        let batches = drain(&mut rx);
        assert_eq!(
            batches
                .iter()
                .map(|b| (b.chunks.len(), b.last))
                .collect::<Vec<_>>(),
            vec![(7, false), (0, true)]
        );
    }

    #[test]
    fn a_failed_walk_never_completes_the_stream() {
        let dir = tempfile::tempdir().unwrap();
        let store = DiskStore::open(dir.path(), 0, 0).unwrap();
        // Make the chunk directory unreadable to the walk by replacing it with a file.
        std::fs::remove_dir(dir.path().join("chunks")).unwrap();
        std::fs::write(dir.path().join("chunks"), b"").unwrap();
        let (tx, _rx) = mpsc::channel(64);
        let done = AtomicBool::new(false);
        assert!(walk(&*store, "dn-a", 3, &tx, &done).is_err());
        assert!(!done.load(Ordering::Acquire));
    }

    #[tokio::test]
    async fn the_stream_ends_only_once_the_walk_is_complete_else_aborts() {
        use futures::{FutureExt, StreamExt};
        let batch = || pb::InventoryBatch {
            node_id: "dn-a".into(),
            chunks: vec![],
            last: false,
        };
        let (_keep, running) = watch::channel(false);
        for complete in [false, true] {
            let (tx, rx) = mpsc::channel(4);
            let flag = Arc::new(AtomicBool::new(complete));
            let mut s = Box::pin(until_complete(rx, flag, running.clone()));
            tx.send(batch()).await.unwrap();
            drop(tx);
            assert!(matches!(s.next().await, Some(Outgoing::Batch(_))));
            let end = s.next().now_or_never();
            if complete {
                assert!(matches!(end, Some(None)), "a complete walk ends the stream");
            } else {
                assert!(
                    matches!(end, Some(Some(Outgoing::Abort))),
                    "an incomplete walk must break the stream off"
                );
                assert!(s.next().now_or_never().is_none(), "and never end it");
            }
        }

        // Stopping breaks the stream off while the walk goes on, and stops the walker.
        let (stop_tx, stop) = watch::channel(false);
        let (tx, rx) = mpsc::channel(4);
        let mut s = Box::pin(until_complete(rx, Arc::new(AtomicBool::new(false)), stop));
        tx.send(batch()).await.unwrap();
        assert!(matches!(s.next().await, Some(Outgoing::Batch(_))));
        assert!(s.next().now_or_never().is_none(), "waits for the walk");
        stop_tx.send(true).unwrap();
        assert!(matches!(s.next().await, Some(Outgoing::Abort)));
        assert!(tx.is_closed());
    }
}
