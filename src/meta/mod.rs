//! The metadata seam: [`MetaStore`], every operation the coordinator asks of its
//! metadata store, in domain terms, and [`MetaError`], how they fail. The types that cross
//! it are plain ones from `model` (and `AccessKey`, `ChunkId`, `DfsPath`); no backend type
//! (a connection, a transaction, a driver's error) does.
//!
//! - `sqlite/`: the SQLite backend ([`SqliteStore`]), the only one today. A second
//!   backend (PostgreSQL, issue 17) is one more module beside it that implements
//!   [`MetaStore`], plus the choice of backend where the coordinator opens its store.
//!
//! Each operation is one transaction of the backend (one consistent snapshot for reads),
//! so every decision that must be atomic (a commit's quorum check and swap, a GC claim, an
//! inventory reconciliation) is one method here, never a sequence of calls.

mod sqlite;

use std::collections::{HashMap, HashSet};

use crate::chunk::ChunkId;
use crate::model::{
    BucketRecord, ChunkHealth, CommitRequest, ComposeRequest, Doomed, EntryInfo, EventRecord,
    FileChunk, FileReport, Inode, InventoryItem, MkdirOptions, NodeRecord, NodeStatsRecord,
    Reconciled, Resealed, RevokedCert, StoreCounts,
};
use crate::path::DfsPath;
use crate::security::keys::AccessKey;

pub use sqlite::{SqliteStore, DEFAULT_READERS, MIGRATIONS};

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
    /// The backend itself failed (I/O, a corrupt file, a lost connection): nothing the
    /// caller asked for is wrong.
    #[error("metadata store: {0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
}

pub type Result<T, E = MetaError> = std::result::Result<T, E>;

/// Re-seals one S3 secret: (key id, sealed blob) -> the new blob, or `None` to leave it.
pub type Reseal<'a> = dyn FnMut(&str, &[u8]) -> Option<Vec<u8>> + Send + 'a;

/// Everything the coordinator stores, as domain operations. Implementations are shared
/// (`Arc<dyn MetaStore>`) and called concurrently; each method is atomic.
#[async_trait::async_trait]
pub trait MetaStore: Send + Sync {
    // The namespace.

    /// Walks `path` from the root. `Ok(None)` when the last segment (or an ancestor) is
    /// missing; `NotADirectory` when an ancestor is a file.
    async fn resolve(&self, path: &DfsPath) -> Result<Option<Inode>>;
    /// The entry at `path`, or `NotFound`.
    async fn stat(&self, path: &DfsPath) -> Result<EntryInfo>;
    /// Up to `limit` entries of directory `dir` after `start_after` in name order, and
    /// whether more follow.
    async fn list(
        &self,
        dir: &DfsPath,
        start_after: &str,
        limit: usize,
    ) -> Result<(Vec<EntryInfo>, bool)>;
    async fn mkdir(&self, path: &DfsPath, opts: MkdirOptions, now_ms: i64) -> Result<EntryInfo>;
    /// Deletes a file, an empty directory, or with `recursive` a whole tree, if its
    /// version is `expected_version` (when given): (files, directories) removed.
    async fn delete(
        &self,
        path: &DfsPath,
        recursive: bool,
        expected_version: Option<u64>,
    ) -> Result<(u64, u64)>;
    async fn rename(&self, src: &DfsPath, dst: &DfsPath, now_ms: i64) -> Result<EntryInfo>;
    /// Commits a file version: every chunk's durable replicas on record checked against
    /// the write quorum, missing parents created, the chunk list swapped.
    async fn commit(&self, req: CommitRequest, now_ms: i64) -> Result<EntryInfo>;
    /// A file made of other files' chunk lists (see [`ComposeRequest`]).
    async fn compose(&self, req: ComposeRequest, now_ms: i64) -> Result<EntryInfo>;
    /// A file's entry and its ordered chunk list with offsets, from one snapshot.
    async fn file_chunks(&self, path: &DfsPath) -> Result<(EntryInfo, Vec<FileChunk>)>;
    /// The chunks of `ids` that some committed file inside `scope` holds (`None`:
    /// anywhere): what a caller may use without sending the bytes (invariant 9).
    async fn readable_chunks(
        &self,
        ids: Vec<ChunkId>,
        scope: Option<DfsPath>,
    ) -> Result<HashSet<ChunkId>>;

    // Datanodes and replicas.

    async fn list_nodes(&self) -> Result<Vec<NodeRecord>>;
    async fn upsert_node(
        &self,
        id: &str,
        addr: &str,
        public_addr: &str,
        stats: NodeStatsRecord,
        now_ms: i64,
    ) -> Result<()>;
    /// False when the node is not on record.
    async fn update_node_stats(
        &self,
        id: &str,
        stats: NodeStatsRecord,
        now_ms: i64,
    ) -> Result<bool>;
    /// False when the node is not on record.
    async fn set_draining(&self, id: &str, draining: bool) -> Result<bool>;
    /// Forgets a node and its replica records; false when it was not on record.
    async fn delete_node(&self, id: &str) -> Result<bool>;
    /// Records replicas on the word of the node that holds them (invariant 4).
    async fn record_replicas(
        &self,
        node: &str,
        chunks: Vec<(ChunkId, u64)>,
        now_ms: i64,
    ) -> Result<()>;
    /// Forgets replicas: (chunk, node) pairs.
    async fn remove_replicas(&self, replicas: Vec<(ChunkId, String)>) -> Result<()>;
    /// The nodes on record for each of `ids` (chunks without replicas are absent).
    async fn replicas_of(&self, ids: Vec<ChunkId>) -> Result<HashMap<ChunkId, Vec<String>>>;
    /// The sizes of those of `ids` that are on record.
    async fn chunk_sizes(&self, ids: Vec<ChunkId>) -> Result<HashMap<ChunkId, u64>>;
    async fn chunks_on_node(&self, node: &str) -> Result<Vec<ChunkId>>;
    /// Replicas on record per node.
    async fn replica_counts(&self) -> Result<HashMap<String, u64>>;

    // Maintenance.

    /// Every referenced chunk with its target and replica records.
    async fn chunk_health(&self) -> Result<Vec<ChunkHealth>>;
    /// Claims up to `limit` unreferenced chunks unused since `cutoff_ms` (and not in
    /// `protected`) for deletion, removing their records in the same transaction.
    async fn gc_claim(
        &self,
        cutoff_ms: i64,
        limit: usize,
        protected: HashSet<ChunkId>,
    ) -> Result<Vec<Doomed>>;
    /// Marks chunks as just used by an upload; returns those no longer on record.
    async fn touch_chunks(&self, ids: Vec<ChunkId>, now_ms: i64) -> Result<HashSet<ChunkId>>;
    /// Reconciles a node's full inventory with the replica records, both ways; records
    /// made after `started_ms` are left alone.
    async fn reconcile_inventory(
        &self,
        node: &str,
        inventory: HashMap<ChunkId, InventoryItem>,
        started_ms: i64,
        grace_secs: u64,
        now_ms: i64,
    ) -> Result<Reconciled>;
    /// Files, directories, bytes, chunks and the garbage backlog (full scans today).
    async fn counts(&self) -> Result<StoreCounts>;
    /// Every file at or below `path` (up to `limit`, and whether more exist), with each
    /// chunk's replica records, for fsck.
    async fn files_under(&self, path: &DfsPath, limit: usize) -> Result<(Vec<FileReport>, bool)>;

    // Events.

    /// Appends `events` in order (their ids are ignored) and prunes all but the latest
    /// `keep`, atomically. Returns the new ids, increasing.
    async fn insert_events(&self, events: Vec<EventRecord>, keep: u32) -> Result<Vec<u64>>;
    /// Up to `limit` events after id `after_id` and at or after `since_ms`, oldest first.
    async fn events_after(
        &self,
        after_id: u64,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<EventRecord>>;
    /// The latest `n` events, oldest first.
    async fn recent_events(&self, n: usize) -> Result<Vec<EventRecord>>;

    // Access keys, revoked certificates, buckets.

    async fn insert_key(&self, key: &AccessKey) -> Result<()>;
    /// Every key, revoked ones included.
    async fn list_keys(&self) -> Result<Vec<AccessKey>>;
    async fn revoke_key(&self, id: &str, now_ms: i64) -> Result<AccessKey>;
    /// Records a revocation: the record on file, and whether it was there already.
    async fn revoke_cert(&self, rec: &RevokedCert) -> Result<(RevokedCert, bool)>;
    async fn list_revoked_certs(&self) -> Result<Vec<RevokedCert>>;
    /// The settings of bucket `path` (a top-level directory).
    async fn bucket(&self, path: &DfsPath) -> Result<BucketRecord>;
    /// Changes what is given (`cors: Some(None)` removes the rules).
    async fn set_bucket(
        &self,
        path: &DfsPath,
        public_read: Option<bool>,
        cors: Option<Option<String>>,
    ) -> Result<BucketRecord>;
    /// The names of the buckets anonymous S3 callers may read.
    async fn public_buckets(&self) -> Result<HashSet<String>>;

    // The secrets file's fingerprints and the legacy secrets (start-up only).

    /// Cluster secrets kept in the database by versions before issue 12: (name, value).
    async fn legacy_cluster_secrets(&self) -> Result<Vec<(String, Vec<u8>)>>;
    /// Fingerprints of the secrets file's keys, by key name.
    async fn secret_fingerprints(&self) -> Result<Vec<(String, Vec<u8>)>>;
    async fn record_secret_fingerprints(&self, prints: &[(&str, Vec<u8>)]) -> Result<()>;
    /// Moves the store onto new cluster keys atomically: each sealed S3 secret replaced by
    /// what `reseal` makes of it, the legacy secrets deleted, `prints` recorded, and no
    /// byte of the old values left in the store's files.
    async fn rotate_cluster_secrets(
        &self,
        reseal: &mut Reseal<'_>,
        prints: &[(&str, Vec<u8>)],
    ) -> Result<Resealed>;
    /// Makes sure no older copy of erased data stays in a log beside the store.
    async fn checkpoint_truncate(&self) -> Result<()>;
}
