//! Cluster events: what happened to nodes, chunks and files, in order, for `dfsd events`
//! and the status page.
//!
//! [`Events::emit`] is synchronous and cheap: events go through one queue to one writer
//! task, which stores them in SQLite in batches (one transaction, the table pruned to
//! `events_kept`) and then broadcasts them to followers. One queue means the stored order
//! is the order of the `emit` calls. A follower subscribes before it reads the stored
//! history and skips what it already sent, so it misses nothing; one that falls behind the
//! broadcast re-reads from SQLite.
//!
//! Node states are derived from heartbeat times, so there is no moment when a node
//! "becomes" dead: [`NodeWatch`] compares snapshots. The maintenance loop runs it on the
//! snapshot it repairs from, so a node's `node_dead` always comes before the repair it
//! causes.

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{broadcast, mpsc, watch};

use super::{NodeState, NodeView, State};
use crate::meta::MetaError;
use crate::model::{now_ms, EventRecord};

/// Events written to SQLite in one transaction at most.
const BATCH: usize = 256;
/// Events queued for the writer before new ones are dropped (with a warning).
const QUEUE: usize = 10_000;
/// Stored events sent per page when a reader catches up.
const PAGE: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    NodeJoined,
    NodeSuspect,
    NodeDead,
    NodeBack,
    NodeDrained,
    RepairStarted,
    RepairFinished,
    ChunkCorrupt,
    GcFreed,
    FileCommitted,
    FileDeleted,
    FileMoved,
    /// A certificate was put on the deny-list (`detail`: fingerprint, role, note).
    CertRevoked,
    /// A bucket was made public-read or private (`path`; `detail`: the ACL and the key).
    BucketAcl,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::NodeJoined => "node_joined",
            EventKind::NodeSuspect => "node_suspect",
            EventKind::NodeDead => "node_dead",
            EventKind::NodeBack => "node_back",
            EventKind::NodeDrained => "node_drained",
            EventKind::RepairStarted => "repair_started",
            EventKind::RepairFinished => "repair_finished",
            EventKind::ChunkCorrupt => "chunk_corrupt",
            EventKind::GcFreed => "gc_freed",
            EventKind::FileCommitted => "file_committed",
            EventKind::FileDeleted => "file_deleted",
            EventKind::FileMoved => "file_moved",
            EventKind::CertRevoked => "cert_revoked",
            EventKind::BucketAcl => "bucket_acl",
        }
    }
}

/// Builds an event record of `kind`, stamped now; fill in the fields that apply.
pub fn event(kind: EventKind) -> EventRecord {
    EventRecord {
        time_ms: now_ms(),
        kind: kind.as_str().into(),
        ..Default::default()
    }
}

/// The event queue, its broadcast, and the stop signal for followers.
pub struct Events {
    queue: mpsc::Sender<EventRecord>,
    queue_rx: Mutex<Option<mpsc::Receiver<EventRecord>>>,
    broadcast: broadcast::Sender<EventRecord>,
    stop: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        let (queue, rx) = mpsc::channel(QUEUE);
        Events {
            queue,
            queue_rx: Mutex::new(Some(rx)),
            broadcast: broadcast::channel(1024).0,
            stop: watch::channel(false).0,
        }
    }
}

impl Events {
    /// Queues `ev` for storage and broadcast, and logs it.
    pub fn emit(&self, ev: EventRecord) {
        crate::metrics::coordinator()
            .events
            .get_or_create(&crate::metrics::kind(&ev.kind))
            .inc();
        tracing::debug!(kind = %ev.kind, node = %ev.node_id, path = %ev.path, chunk = %ev.chunk_id, "cluster event");
        if self.queue.try_send(ev).is_err() {
            tracing::warn!("event queue full or closed; an event was dropped");
        }
    }

    /// Ends every follower's stream (the server is shutting down).
    pub fn shutdown(&self) {
        let _ = self.stop.send(true);
    }
}

/// Stores and broadcasts queued events until the queue closes.
pub async fn run_writer(state: Arc<State>) {
    let Some(mut rx) = state.events.queue_rx.locked().take() else {
        return;
    };
    let keep = state.cfg.events_kept;
    let mut batch = Vec::with_capacity(BATCH);
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let events = std::mem::take(&mut batch);
        // This task is the only writer of events, so ids are broadcast in order; a
        // follower that read them from the store already skips them by id.
        match state.store.insert_events(events.clone(), keep).await {
            Ok(ids) => {
                for (mut ev, id) in events.into_iter().zip(ids) {
                    ev.id = id;
                    let _ = state.events.broadcast.send(ev);
                }
            }
            Err(e) => tracing::warn!(error = %e, "storing cluster events failed"),
        }
    }
}

impl Events {
    /// A file committed, deleted or moved: `bytes` is the size, `count` the files
    /// concerned, `detail` the version or destination.
    pub fn file(&self, kind: EventKind, path: &str, bytes: u64, count: u64, detail: String) {
        self.emit(EventRecord {
            path: path.into(),
            bytes,
            count,
            detail,
            ..event(kind)
        });
    }

    /// Replicas found corrupt or missing on `node` (and forgotten).
    pub fn corrupt(&self, node: &str, ids: &[crate::chunk::ChunkId], detail: &str) {
        for id in ids {
            self.emit(EventRecord {
                node_id: node.into(),
                chunk_id: id.to_hex(),
                detail: detail.into(),
                ..event(EventKind::ChunkCorrupt)
            });
        }
    }
}

/// Node-state transitions, found by comparing snapshots.
#[derive(Default)]
pub struct NodeWatch {
    prev: Mutex<Option<HashMap<String, NodeState>>>,
    drained: Mutex<HashSet<String>>,
    drain_checked: Mutex<Option<Instant>>,
}

impl NodeWatch {
    /// Takes a snapshot of the node table, emits an event for every node whose state
    /// changed since the last one, and returns it. The snapshot is taken under the lock,
    /// so two callers never compare out of order.
    pub fn snapshot(
        &self,
        events: &Events,
        nodes: &super::NodeTable,
    ) -> Vec<(NodeView, NodeState)> {
        let mut prev = self.prev.locked();
        let snapshot = nodes.snapshot(now_ms());
        Self::compare(&mut prev, events, &snapshot);
        snapshot
    }

    /// Emits an event for every node whose state changed since `prev`. The first call
    /// only records the states (nodes known at start-up did not just join).
    fn compare(
        prev: &mut Option<HashMap<String, NodeState>>,
        events: &Events,
        snapshot: &[(NodeView, NodeState)],
    ) {
        let now: HashMap<String, NodeState> =
            snapshot.iter().map(|(v, s)| (v.id.clone(), *s)).collect();
        if let Some(before) = prev.as_ref() {
            for (v, s) in snapshot {
                let mk = |kind| EventRecord {
                    node_id: v.id.clone(),
                    detail: v.addr.clone(),
                    ..event(kind)
                };
                let node = &v.id;
                match (before.get(&v.id).copied(), *s) {
                    (None, _) => events.emit(mk(EventKind::NodeJoined)),
                    (Some(a), b) if a == b => {}
                    (_, NodeState::Suspect) => {
                        tracing::warn!(%node, "datanode is suspect: silent, no new writes go to it");
                        events.emit(mk(EventKind::NodeSuspect))
                    }
                    (_, NodeState::Dead) => {
                        tracing::warn!(%node, "datanode is dead: its replicas no longer count");
                        events.emit(mk(EventKind::NodeDead))
                    }
                    (Some(NodeState::Suspect | NodeState::Dead), _) => {
                        events.emit(mk(EventKind::NodeBack))
                    }
                    _ => {}
                }
            }
        }
        *prev = Some(now);
    }

    #[cfg(test)]
    fn observe(&self, events: &Events, snapshot: &[(NodeView, NodeState)]) {
        let mut prev = self.prev.locked();
        Self::compare(&mut prev, events, snapshot);
    }

    /// Emits `node_drained` once for each draining node that holds no more replicas.
    async fn check_drained(&self, state: &Arc<State>, snapshot: &[(NodeView, NodeState)]) {
        let draining: Vec<String> = snapshot
            .iter()
            .filter(|(v, _)| v.draining)
            .map(|(v, _)| v.id.clone())
            .collect();
        {
            let mut drained = self.drained.locked();
            drained.retain(|id| draining.contains(id));
            if draining.iter().all(|id| drained.contains(id)) {
                return;
            }
            let mut checked = self.drain_checked.locked();
            if checked.is_some_and(|t| t.elapsed() < Duration::from_secs(1)) {
                return;
            }
            *checked = Some(Instant::now());
        }
        let Ok(counts) = state.store.replica_counts().await else {
            return;
        };
        let mut drained = self.drained.locked();
        for id in draining {
            if counts.get(&id).copied().unwrap_or(0) == 0 && drained.insert(id.clone()) {
                state.events.emit(EventRecord {
                    node_id: id,
                    ..event(EventKind::NodeDrained)
                });
            }
        }
    }
}

/// Watches node states until `shutdown` turns true.
pub async fn run_watch(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    let tick = (state.cfg.heartbeat_interval / 4)
        .clamp(Duration::from_millis(100), Duration::from_secs(1));
    loop {
        let snapshot = state.node_watch.snapshot(&state.events, &state.nodes);
        state.node_watch.check_drained(&state, &snapshot).await;
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => return,
        }
    }
}

/// Sends stored events after `last`, page by page; returns the last id sent, or `None`
/// when the reader went away.
async fn send_stored(
    state: &Arc<State>,
    tx: &mpsc::Sender<Result<EventRecord, MetaError>>,
    mut last: u64,
    since_ms: i64,
) -> Result<Option<u64>, MetaError> {
    loop {
        let page = state.store.events_after(last, since_ms, PAGE).await?;
        let n = page.len();
        for e in page {
            last = e.id;
            if tx.send(Ok(e)).await.is_err() {
                return Ok(None);
            }
        }
        if n < PAGE {
            return Ok(Some(last));
        }
    }
}

/// The `Events` stream: stored history after event `after_id` and not older than
/// `since_ms`, then (with `follow`) live events.
pub fn stream(
    state: Arc<State>,
    after_id: u64,
    since_ms: i64,
    follow: bool,
) -> tokio_stream::wrappers::ReceiverStream<Result<EventRecord, MetaError>> {
    let (tx, rx) = mpsc::channel(64);
    // Subscribe before reading the history, so nothing falls between the two.
    let mut live = state.events.broadcast.subscribe();
    let mut stop = state.events.stop.subscribe();
    tokio::spawn(async move {
        let since = since_ms;
        let mut last = match send_stored(&state, &tx, after_id, since).await {
            Ok(Some(l)) => l,
            Ok(None) => return,
            Err(e) => {
                let _ = tx.send(Err(e)).await;
                return;
            }
        };
        if !follow {
            return;
        }
        loop {
            let got = tokio::select! {
                r = live.recv() => r,
                _ = tx.closed() => return,
                _ = stop.wait_for(|s| *s) => return,
            };
            match got {
                Ok(e) if e.id > last && e.time_ms >= since => {
                    last = e.id;
                    if tx.send(Ok(e)).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    match send_stored(&state, &tx, last, since).await {
                        Ok(Some(l)) => last = l,
                        Ok(None) => return,
                        Err(e) => {
                            let _ = tx.send(Err(e)).await;
                            return;
                        }
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// The latest `n` stored events, oldest first.
pub async fn recent(state: &Arc<State>, n: usize) -> Vec<EventRecord> {
    state.store.recent_events(n).await.unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::coordinator::ScrubInfo;

    fn view(id: &str, draining: bool) -> NodeView {
        NodeView {
            id: id.into(),
            addr: "a".into(),
            public_addr: String::new(),
            stats: Default::default(),
            last_seen_ms: 0,
            draining,
            scrub: ScrubInfo::default(),
        }
    }

    #[tokio::test]
    async fn transitions_become_events_in_order() {
        let events = Events::default();
        let mut rx = events.queue_rx.lock().unwrap().take().unwrap();
        let w = NodeWatch::default();
        let snap = |s: &[(&str, NodeState)]| -> Vec<_> {
            s.iter().map(|(id, st)| (view(id, false), *st)).collect()
        };
        w.observe(&events, &snap(&[("a", NodeState::Alive)]));
        w.observe(
            &events,
            &snap(&[("a", NodeState::Alive), ("b", NodeState::Alive)]),
        );
        w.observe(
            &events,
            &snap(&[("a", NodeState::Suspect), ("b", NodeState::Alive)]),
        );
        w.observe(
            &events,
            &snap(&[("a", NodeState::Dead), ("b", NodeState::Alive)]),
        );
        w.observe(
            &events,
            &snap(&[("a", NodeState::Alive), ("b", NodeState::Alive)]),
        );
        let mut got = Vec::new();
        while let Ok(e) = rx.try_recv() {
            got.push((e.kind, e.node_id));
        }
        let want: Vec<(String, String)> = [
            ("node_joined", "b"),
            ("node_suspect", "a"),
            ("node_dead", "a"),
            ("node_back", "a"),
        ]
        .iter()
        .map(|(k, n)| (k.to_string(), n.to_string()))
        .collect();
        assert_eq!(got, want);
    }
}
