//! What the cluster API does with a datanode's word: registration, heartbeats, replica
//! reports (invariant 4: replicas are recorded only on the holder's word), inventories
//! and corruption reports.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::{repair, NodeState, NodeView, ScrubInfo, State};
use crate::chunk::ChunkId;
use crate::meta::MetaError;
use crate::model::{now_ms, InventoryItem, NodeStatsRecord, Reconciled};

/// How often a node that owes an inventory is asked for it again.
const INVENTORY_ASK_EVERY: Duration = Duration::from_secs(30);

/// What a heartbeat tells the node to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// Register again: the node is unknown, or holds another token key.
    Reregister,
    /// Carry on; send a full inventory when asked.
    Carry { send_inventory: bool },
}

impl State {
    /// Records a node's registration at `addr` (the address others reach it at) and
    /// `public_addr` (where clients outside the cluster's network do; may be empty).
    pub async fn register_node(
        &self,
        id: &str,
        addr: &str,
        public_addr: &str,
        stats: NodeStatsRecord,
    ) -> Result<(), MetaError> {
        let now = now_ms();
        self.store
            .upsert_node(id, addr, public_addr, stats, now)
            .await?;
        let previous = self.nodes.get(id);
        self.nodes.upsert(NodeView {
            id: id.to_string(),
            addr: addr.to_string(),
            public_addr: public_addr.to_string(),
            stats,
            last_seen_ms: now,
            draining: previous.as_ref().is_some_and(|v| v.draining),
            scrub: previous.map(|v| v.scrub).unwrap_or_default(),
        });
        tracing::info!(node = %id, %addr, public_addr, "datanode registered");
        Ok(())
    }

    /// A node's heartbeat: its figures recorded, and what it should do next.
    /// `token_key_digest` names the token key the node holds (empty from older nodes).
    pub async fn heartbeat(
        &self,
        id: &str,
        stats: NodeStatsRecord,
        scrub: ScrubInfo,
        token_key_digest: &[u8],
    ) -> Result<Beat, MetaError> {
        let now = now_ms();
        let before = self.nodes.get(id);
        if !self.nodes.heartbeat(id, stats, scrub, now) {
            return Ok(Beat::Reregister);
        }
        if let Some(prev) = before {
            let was = self.nodes.state_of(&prev, now);
            if matches!(was, NodeState::Suspect | NodeState::Dead) {
                tracing::info!(node = %id, was = was.as_str(), "datanode is back");
            }
        }
        self.store.update_node_stats(id, stats, now).await?;
        // A node holding another token key (this coordinator rotated it at start-up, see
        // secrets.rs) refuses every token we sign: it gets the current key by registering.
        let stale_key =
            !token_key_digest.is_empty() && token_key_digest[..] != self.token_key.digest()[..];
        if stale_key {
            tracing::info!(node = %id, "datanode holds another token key; asked to register again");
            return Ok(Beat::Reregister);
        }
        Ok(Beat::Carry {
            send_inventory: self.wants_inventory(id),
        })
    }

    /// A node that has not sent an inventory since this coordinator started is asked for
    /// one (again every 30 s until it arrives).
    fn wants_inventory(&self, node: &str) -> bool {
        let done = self.inventoried.locked();
        if done.contains(node) {
            return false;
        }
        drop(done);
        let mut asked = self.inventory_asked.locked();
        let due = asked
            .get(node)
            .is_none_or(|t| t.elapsed() >= INVENTORY_ASK_EVERY);
        if due {
            asked.insert(node.to_string(), Instant::now());
        }
        due
    }

    /// Records replicas `node` stored durably. `owner` (when not empty) is the access key
    /// whose write stored them: protected from collection while it has uploads open.
    pub async fn record_replicas(
        &self,
        node: &str,
        owner: &str,
        chunks: Vec<(ChunkId, u64)>,
    ) -> Result<(), MetaError> {
        if !owner.is_empty() {
            // Before the record, so a collection racing it either sees the chunks
            // protected or finds them touched by the record (see `uploads/`).
            let ids: Vec<ChunkId> = chunks.iter().map(|(id, _)| *id).collect();
            self.uploads.stored(owner, &ids);
        }
        let n = chunks.len();
        self.store.record_replicas(node, chunks, now_ms()).await?;
        tracing::debug!(%node, chunks = n, "replicas recorded");
        Ok(())
    }

    /// Reconciles a node's whole inventory (begun at `started_ms`) with the records;
    /// orphans are deleted from the node once this coordinator trusts its own knowledge.
    pub async fn reconcile_inventory(
        self: &Arc<Self>,
        node: &str,
        inventory: HashMap<ChunkId, InventoryItem>,
        started_ms: i64,
    ) -> Result<Reconciled, MetaError> {
        let grace = self.cfg.gc_grace.as_secs();
        let total = inventory.len();
        let r = (self.store)
            .reconcile_inventory(node, inventory, started_ms, grace, now_ms())
            .await?;
        tracing::info!(%node, chunks = total, lost = r.lost.len(), added = r.added,
            orphans = r.orphans.len(), "inventory reconciled");
        self.inventoried.locked().insert(node.to_string());
        if !r.orphans.is_empty() && !self.safe_mode_now() {
            let protect = repair::protect_secs(self);
            repair::order_delete(self.clone(), node.to_string(), r.orphans.clone(), protect);
        }
        self.maint.wake.notify_one();
        Ok(r)
    }

    /// Replicas a node found corrupt or missing: forgotten, and repair woken.
    pub async fn forget_corrupt(&self, node: &str, ids: Vec<ChunkId>) -> Result<(), MetaError> {
        let n = ids.len();
        (self.events).corrupt(node, &ids, "found by the datanode");
        let forget = ids.into_iter().map(|id| (id, node.to_string())).collect();
        self.store.remove_replicas(forget).await?;
        tracing::warn!(node = %node, chunks = n, "datanode found corrupt or missing chunks; re-replicating");
        self.maint.wake.notify_one();
        Ok(())
    }
}
