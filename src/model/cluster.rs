//! Datanodes and chunks as the metadata store records them: node records, replica
//! health, inventories, fsck reports and the counted figures of `dfsd status`.

use crate::chunk::ChunkId;

/// A datanode's self-reported figures.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeStatsRecord {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRecord {
    pub id: String,
    pub addr: String,
    /// Where clients outside the cluster's network reach it ('' when the same as `addr`).
    pub public_addr: String,
    pub stats: NodeStatsRecord,
    pub registered_ms: i64,
    pub last_seen_ms: i64,
    pub draining: bool,
    /// Replicas on record for this node.
    pub replicas: u64,
}

/// Where a datanode is reached: `addr` inside the cluster's network (by other datanodes,
/// the coordinator and clients there), `public_addr` from outside it ('' when `addr`
/// serves everyone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeEndpoint {
    pub id: String,
    pub addr: String,
    pub public_addr: String,
}

/// A chunk that committed files reference, with its target and the nodes on record.
#[derive(Debug, Clone)]
pub struct ChunkHealth {
    pub id: ChunkId,
    pub size: u64,
    /// Highest replication factor among the files that use it.
    pub target: u32,
    pub nodes: Vec<String>,
}

/// A chunk claimed for deletion: its records are gone; its files are to be deleted.
#[derive(Debug, Clone)]
pub struct Doomed {
    pub id: ChunkId,
    pub size: u64,
    pub nodes: Vec<String>,
}

/// One entry of a datanode's inventory.
#[derive(Debug, Clone, Copy)]
pub struct InventoryItem {
    pub size: u64,
    pub age_secs: u64,
}

/// What reconciling a node's inventory with the records changed.
#[derive(Debug, Default, Clone)]
pub struct Reconciled {
    /// Replica records the node did not confirm (removed).
    pub lost: Vec<ChunkId>,
    /// Replicas newly recorded from the inventory.
    pub added: u64,
    /// Chunks nobody knows, older than the grace period: to be deleted from the node.
    pub orphans: Vec<ChunkId>,
}

/// A file below a path, with its chunk list, for fsck.
#[derive(Debug, Clone)]
pub struct FileReport {
    pub path: String,
    pub size: u64,
    pub replication: u32,
    pub chunks: Vec<(ChunkId, Vec<String>)>,
}

/// The figures of `dfsd status` that need scans of the metadata (issue 16 makes them
/// incremental).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreCounts {
    pub files: u64,
    pub directories: u64,
    pub logical_bytes: u64,
    pub chunks: u64,
    pub gc_backlog_chunks: u64,
    pub gc_backlog_bytes: u64,
}
