//! What the cluster's administrative calls answer: `dfsd status` figures, fsck reports,
//! access keys and the S3 credential a gateway fetches.

use super::Timestamp;
use crate::chunk::ChunkId;
use crate::path::DfsPath;
use crate::security::keys::KeyRole;

/// The cluster at a glance (`dfsd status`, the status page).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClusterStatus {
    pub nodes_alive: u32,
    pub nodes_suspect: u32,
    pub nodes_dead: u32,
    pub nodes_draining: u32,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub files: u64,
    pub directories: u64,
    pub chunks: u64,
    pub logical_bytes: u64,
    /// Chunks with fewer live replicas than their target, but at least one.
    pub under_replicated: u64,
    /// Chunks a committed file needs with no live replica.
    pub unrecoverable: u64,
    pub over_replicated: u64,
    /// Copies queued or running, and completed since start.
    pub repair_queue: u64,
    pub repairs_running: u64,
    pub repairs_done: u64,
    pub repair_bytes_done: u64,
    /// Repair throughput over the last minute, bytes/s.
    pub repair_rate_bytes: u64,
    /// Unreferenced chunks waiting for their grace period, and what GC freed since start.
    pub gc_backlog_chunks: u64,
    pub gc_backlog_bytes: u64,
    pub gc_freed_bytes: u64,
    /// The coordinator waits for datanode inventories after a restart.
    pub safe_mode: bool,
    /// Scrub: chunks checked in current passes over all nodes / chunks in those passes.
    pub scrub_checked: u64,
    pub scrub_total: u64,
    pub scrub_errors: u64,
}

/// What `dfsd fsck PATH` found below a path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    pub files_checked: u64,
    pub chunks_checked: u64,
    pub healthy_files: u64,
    pub under_replicated_chunks: u64,
    pub missing_chunks: u64,
    /// Damaged files (every file with `all`).
    pub files: Vec<FsckFile>,
    /// The file list was cut at the response limit.
    pub truncated: bool,
}

/// One file of an fsck report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckFile {
    pub path: DfsPath,
    pub size: u64,
    pub chunks: u64,
    pub replication: u32,
    pub under_replicated: u64,
    pub missing: u64,
    /// The chunks below target or missing.
    pub damaged: Vec<FsckChunk>,
}

/// A chunk below target (or with no live replica) in an fsck report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsckChunk {
    pub chunk_id: ChunkId,
    /// Position in the file's chunk list.
    pub index: u64,
    pub live_replicas: u32,
    pub target: u32,
    pub nodes: Vec<String>,
}

/// An access key as listed (never its secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    pub key_id: String,
    pub name: String,
    pub role: KeyRole,
    /// The key sees and touches only this subtree ("/" = everything).
    pub prefix: DfsPath,
    pub created: Timestamp,
    /// None while the key is valid.
    pub revoked: Option<Timestamp>,
}

/// What an S3 gateway needs to check a key's signatures and permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Credential {
    pub secret: String,
    pub role: KeyRole,
    pub prefix: DfsPath,
}
