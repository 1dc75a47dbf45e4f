//! The coordinator's maintenance worker: re-replication of under-replicated chunks
//! (fewest live replicas first, within per-node and cluster-wide limits), trimming of
//! over-replicated chunks and of drained nodes, and garbage collection of unreferenced
//! chunks after their grace period. It ticks every `maintenance_interval` and wakes early
//! on events (a node dies, an inventory arrives, corruption is reported).
//!
//! Nothing here runs in safe mode: after a restart the coordinator first waits for the
//! datanodes' inventories, so incomplete knowledge never causes a repair storm or a
//! wrong deletion (invariant 6).

use crate::sync::Locked;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{watch, Notify};

use super::orders;
use super::placement::{choose, eligible};
use super::{NodeState, NodeView, State};
use crate::chunk::ChunkId;
use crate::meta::MetaError;
use crate::model::{now_ms, EventRecord};

/// A datanode keeps a chunk it wrote or acknowledged within this window even when GC
/// orders its deletion: an upload may just have reused it. The window only has to cover
/// the moment between a claim and the order's arrival, so it is the grace period, capped.
pub fn protect_secs(state: &State) -> u64 {
    state.cfg.gc_grace.as_secs().clamp(1, 600)
}
/// Most chunks one GC round claims.
const GC_BATCH: usize = 2000;

#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub under_replicated: u64,
    pub unrecoverable: u64,
    pub over_replicated: u64,
    pub queue: u64,
}

#[derive(Default)]
pub struct Maintenance {
    pub wake: Notify,
    inflight: Mutex<HashSet<ChunkId>>,
    per_node: Mutex<HashMap<String, usize>>,
    pub repairs_done: AtomicU64,
    pub repair_bytes: AtomicU64,
    pub gc_freed_bytes: AtomicU64,
    recent: Mutex<VecDeque<(Instant, u64)>>,
    pub summary: Mutex<Summary>,
    /// A repair episode is under way (for the started / finished events), and the copy
    /// and byte counters when it began.
    repairing: AtomicBool,
    repair_base: Mutex<(u64, u64)>,
}

impl Maintenance {
    pub fn running(&self) -> u64 {
        self.inflight.locked().len() as u64
    }

    /// Repair throughput over the last minute, bytes/s.
    pub fn rate(&self) -> u64 {
        let mut recent = self.recent.locked();
        while recent
            .front()
            .is_some_and(|(t, _)| t.elapsed() > Duration::from_secs(60))
        {
            recent.pop_front();
        }
        let bytes: u64 = recent.iter().map(|(_, b)| b).sum();
        let span = recent
            .front()
            .map(|(t, _)| t.elapsed().as_secs_f64())
            .unwrap_or(0.0)
            .max(1.0);
        (bytes as f64 / span) as u64
    }

    fn finished(&self, id: &ChunkId, node: &str, bytes: Option<u64>) {
        self.inflight.locked().remove(id);
        if let Some(n) = self.per_node.locked().get_mut(node) {
            *n = n.saturating_sub(1);
        }
        let m = crate::metrics::coordinator();
        m.repairs
            .get_or_create(&crate::metrics::result(bytes.is_some()))
            .inc();
        if let Some(b) = bytes {
            m.repair_bytes.inc_by(b);
            self.repairs_done.fetch_add(1, Ordering::Relaxed);
            self.repair_bytes.fetch_add(b, Ordering::Relaxed);
            self.recent.locked().push_back((Instant::now(), b));
        }
        self.wake.notify_one();
    }
}

/// Runs until `shutdown` turns true.
pub async fn run(state: Arc<State>, mut shutdown: watch::Receiver<bool>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(state.cfg.maintenance_interval) => {}
            _ = state.maint.wake.notified() => {}
            _ = shutdown.changed() => return,
        }
        if *shutdown.borrow() {
            return;
        }
        if let Err(e) = tick(&state).await {
            tracing::warn!(error = %e, "maintenance round failed");
        }
    }
}

async fn tick(state: &Arc<State>) -> Result<(), MetaError> {
    if state.in_safe_mode().await? {
        return Ok(());
    }
    heal(state).await?;
    collect_garbage(state).await
}

struct Repair {
    id: ChunkId,
    size: u64,
    live: usize,
    holders: Vec<String>,
    sources: Vec<NodeView>,
}

async fn heal(state: &Arc<State>) -> Result<(), MetaError> {
    // Node events first, from this very snapshot: a node's death is told before the
    // repair it causes.
    let snapshot = state.node_watch.snapshot(&state.events, &state.nodes);
    let views: HashMap<String, (NodeView, NodeState)> = snapshot
        .into_iter()
        .map(|(v, s)| (v.id.clone(), (v, s)))
        .collect();
    let health = state.store.chunk_health().await?;

    let mut summary = Summary::default();
    let mut repairs = Vec::new();
    let mut trims: Vec<(ChunkId, String)> = Vec::new();
    for ch in health {
        let state_of = |n: &String| views.get(n).map(|(_, s)| *s).unwrap_or(NodeState::Dead);
        // Sources: any replica not on a dead node. Counted: those that will stay.
        let mut sources: Vec<NodeView> = ch
            .nodes
            .iter()
            .filter(|n| state_of(n) != NodeState::Dead)
            .filter_map(|n| views.get(n).map(|(v, _)| v.clone()))
            .collect();
        if sources.is_empty() {
            summary.unrecoverable += 1;
            continue;
        }
        sources.sort_by_key(|v| state_of(&v.id) != NodeState::Alive);
        let counted: Vec<&String> = ch
            .nodes
            .iter()
            .filter(|n| matches!(state_of(n), NodeState::Alive | NodeState::Suspect))
            .collect();
        let target = ch.target as usize;
        if counted.len() < target {
            summary.under_replicated += 1;
            repairs.push(Repair {
                id: ch.id,
                size: ch.size,
                live: counted.len(),
                holders: ch.nodes.clone(),
                sources,
            });
            continue;
        }
        // Full strength without the draining nodes: their copies can go.
        for n in ch
            .nodes
            .iter()
            .filter(|n| state_of(n) == NodeState::Draining)
        {
            trims.push((ch.id, n.clone()));
        }
        // A node that came back leaves extra copies: trim them from the fullest nodes, but
        // only when every counted copy is on a node known alive right now.
        if counted.len() > target && counted.iter().all(|n| state_of(n) == NodeState::Alive) {
            summary.over_replicated += 1;
            let mut by_free: Vec<&NodeView> = counted
                .iter()
                .filter_map(|n| views.get(*n).map(|(v, _)| v))
                .collect();
            by_free.sort_by_key(|v| v.stats.free_bytes);
            for v in by_free.into_iter().take(counted.len() - target) {
                trims.push((ch.id, v.id.clone()));
            }
        }
    }
    repairs.sort_by_key(|r| r.live);
    summary.queue = repairs.len() as u64;
    *state.maint.summary.locked() = summary;

    repair_events(state, &summary);
    schedule_repairs(state, repairs, &views);
    if !trims.is_empty() {
        trim(state, trims).await?;
    }
    Ok(())
}

/// `repair_started` when chunks fall below their target, `repair_finished` when every
/// chunk is back at its target and no copy is running.
fn repair_events(state: &State, summary: &Summary) {
    use super::events::{event, EventKind};
    let m = &state.maint;
    let done = (
        m.repairs_done.load(Ordering::Relaxed),
        m.repair_bytes.load(Ordering::Relaxed),
    );
    if summary.under_replicated > 0 && !m.repairing.swap(true, Ordering::Relaxed) {
        *m.repair_base.locked() = done;
        tracing::info!(chunks = summary.under_replicated, "repair started");
        state.events.emit(EventRecord {
            count: summary.under_replicated,
            ..event(EventKind::RepairStarted)
        });
    } else if summary.under_replicated == 0
        && m.running() == 0
        && m.repairing.swap(false, Ordering::Relaxed)
    {
        let base = *m.repair_base.locked();
        let (copies, bytes) = (done.0 - base.0, done.1 - base.1);
        tracing::info!(copies, bytes, "repair finished: every chunk at its target");
        state.events.emit(EventRecord {
            count: copies,
            bytes,
            ..event(EventKind::RepairFinished)
        });
    }
}

fn schedule_repairs(
    state: &Arc<State>,
    repairs: Vec<Repair>,
    views: &HashMap<String, (NodeView, NodeState)>,
) {
    let cfg = &state.cfg;
    let mut rng = rand::rng();
    for r in repairs {
        let mut inflight = state.maint.inflight.locked();
        if inflight.len() >= cfg.repair_total {
            return;
        }
        if inflight.contains(&r.id) {
            continue;
        }
        let mut per_node = state.maint.per_node.locked();
        // Nodes busy with their share of copies wait for the next round.
        let candidates = eligible(views.values(), r.size, |n| {
            r.holders.iter().any(|h| h == n)
                || per_node.get(n).copied().unwrap_or(0) >= cfg.repair_per_node
        });
        let Some(dest) = choose(&mut rng, &candidates, 1).pop() else {
            continue;
        };
        inflight.insert(r.id);
        *per_node.entry(dest.node.id.clone()).or_default() += 1;
        drop(per_node);
        drop(inflight);

        let state = state.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            tracing::info!(chunk = %r.id, to = %dest.node.id, live = r.live, "re-replicating chunk");
            let result = orders::replicate(&state, &dest.node.addr, r.id, r.size, &r.sources).await;
            match result {
                Ok(source) => {
                    tracing::info!(chunk = %r.id, to = %dest.node.id, from = %source, ms = started.elapsed().as_millis() as u64, "chunk re-replicated");
                    state.maint.finished(&r.id, &dest.node.id, Some(r.size));
                }
                Err(e) => {
                    tracing::warn!(chunk = %r.id, to = %dest.node.id, error = %e, "re-replication failed");
                    state.maint.finished(&r.id, &dest.node.id, None);
                }
            }
        });
    }
}

/// Forgets the replicas first (so no reader is sent there), then orders the deletions.
async fn trim(state: &Arc<State>, trims: Vec<(ChunkId, String)>) -> Result<(), MetaError> {
    state.store.remove_replicas(trims.clone()).await?;
    let mut by_node: HashMap<String, Vec<ChunkId>> = HashMap::new();
    for (id, node) in trims {
        by_node.entry(node).or_default().push(id);
    }
    for (node, ids) in by_node {
        tracing::info!(%node, chunks = ids.len(), "trimming surplus replicas");
        order_delete(state.clone(), node, ids, 0);
    }
    Ok(())
}

/// Sends a delete order in the background; freed bytes are counted as GC when `gc` is set.
pub fn order_delete(state: Arc<State>, node: String, ids: Vec<ChunkId>, protect_secs: u64) {
    let Some(view) = state.nodes.get(&node) else {
        return;
    };
    tokio::spawn(async move {
        let result = orders::delete(&state, &view.addr, &ids, protect_secs).await;
        match result {
            Ok(r) => {
                if protect_secs > 0 {
                    crate::metrics::coordinator()
                        .gc_freed_bytes
                        .inc_by(r.freed_bytes);
                    state
                        .maint
                        .gc_freed_bytes
                        .fetch_add(r.freed_bytes, Ordering::Relaxed);
                }
                tracing::info!(%node, deleted = r.deleted, kept = r.kept.len(), freed = r.freed_bytes, "chunks deleted");
                if protect_secs > 0 && r.freed_bytes > 0 {
                    state.events.emit(EventRecord {
                        node_id: node.clone(),
                        bytes: r.freed_bytes,
                        count: r.deleted as u64,
                        ..super::events::event(super::events::EventKind::GcFreed)
                    });
                }
                if protect_secs > 0 && !r.kept.is_empty() {
                    retry_kept(state, node, r.kept, protect_secs);
                }
            }
            // The node's next inventory reports the files; they are orphans by then.
            Err(e) => {
                tracing::warn!(%node, chunks = ids.len(), error = %e, "delete order failed")
            }
        }
    });
}

/// Chunks a node kept because they were written or acknowledged just now are asked for
/// again once the protection window has passed, unless an upload has since put them back
/// on record (which is why they were protected).
fn retry_kept(state: Arc<State>, node: String, kept: Vec<ChunkId>, protect_secs: u64) {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(protect_secs) + Duration::from_millis(500)).await;
        let ids = kept;
        let lookup = ids.clone();
        let Ok(known) = state.store.chunk_sizes(lookup).await else {
            return;
        };
        let in_flight = state.chunks_in_flight();
        let still_garbage: Vec<ChunkId> = ids
            .into_iter()
            .filter(|id| !known.contains_key(id) && !in_flight.contains(id))
            .collect();
        if !still_garbage.is_empty() {
            order_delete(state, node, still_garbage, protect_secs);
        }
    });
}

async fn collect_garbage(state: &Arc<State>) -> Result<(), MetaError> {
    let cutoff = now_ms() - state.cfg.gc_grace.as_millis() as i64;
    // Read before the claim's transaction: a chunk proven after this read is either
    // touched by its placement (a transaction that bumps `last_used_ms` before or after the
    // claim: skipped, or found gone and placed afresh) or was just stored (its replica
    // record bumped `last_used_ms`), so the claim cannot take it either way.
    let in_flight = state.chunks_in_flight();
    let doomed = state.store.gc_claim(cutoff, GC_BATCH, in_flight).await?;
    if doomed.is_empty() {
        return Ok(());
    }
    let bytes: u64 = doomed.iter().map(|d| d.size).sum();
    tracing::info!(
        chunks = doomed.len(),
        bytes,
        "garbage collecting unreferenced chunks"
    );
    let mut by_node: HashMap<String, Vec<ChunkId>> = HashMap::new();
    for d in doomed {
        for n in d.nodes {
            by_node.entry(n).or_default().push(d.id);
        }
    }
    for (node, ids) in by_node {
        order_delete(state.clone(), node, ids, protect_secs(state));
    }
    state.maint.wake.notify_one();
    Ok(())
}
