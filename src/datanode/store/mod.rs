//! The datanode's chunk storage, as the rest of the datanode sees it: the [`ChunkStore`]
//! trait in domain terms (receive, read, verify, quarantine, remove, list), its errors and
//! the figures it reports. [`disk::DiskStore`] is the implementation on a local disk.
//!
//! Whatever the implementation, a chunk becomes visible under its id only once complete,
//! verified and durable (invariant 2), and only validated [`ChunkId`]s ever name stored
//! data (invariant 7).
//!
//! - `disk.rs`: [`disk::DiskStore`], chunks under `chunks/ab/cd/<id>` in the data dir.
//! - `layout.rs`: where each file of the store lives; directory fsyncs; free space.
//! - `writer.rs`: receiving one chunk into a temporary file, then installing it.

pub mod disk;
mod layout;
mod writer;

use std::io::{self, Read};
use std::time::SystemTime;

use crate::chunk::{ChunkId, MAX_CHUNK_SIZE};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk {id}: stream is longer than the announced {announced} bytes")]
    TooLong { id: ChunkId, announced: u64 },
    #[error("chunk {id}: received {got} bytes, announced {announced}")]
    SizeMismatch {
        id: ChunkId,
        announced: u64,
        got: u64,
    },
    #[error("chunk {id}: received bytes hash to {actual}")]
    HashMismatch { id: ChunkId, actual: ChunkId },
    #[error("chunk {id}: size {size} exceeds the maximum chunk size {MAX_CHUNK_SIZE}")]
    ChunkTooLarge { id: ChunkId, size: u64 },
    #[error("not enough space: {needed} bytes needed, {free} free above the reserve")]
    NoSpace { needed: u64, free: u64 },
    #[error("chunk {0}: not stored on this node")]
    NotFound(ChunkId),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

impl StoreError {
    /// True when the bytes offered were not the chunk (wrong length or hash): the sender's
    /// fault, not this store's.
    pub fn is_bad_bytes(&self) -> bool {
        matches!(
            self,
            StoreError::HashMismatch { .. }
                | StoreError::SizeMismatch { .. }
                | StoreError::TooLong { .. }
        )
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// Figures a datanode reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
}

/// One stored chunk as a listing sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    pub id: ChunkId,
    pub size: u64,
    /// When the chunk was written, if known.
    pub modified: Option<SystemTime>,
}

/// What re-hashing a stored chunk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    Missing,
    /// Corrupt or truncated; moved to quarantine.
    Quarantined,
}

/// Receives one chunk. Dropped without [`ChunkWrite::finish`], it leaves nothing behind.
pub trait ChunkWrite: Send {
    /// Takes the next bytes of the chunk; more than the announced size is refused.
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError>;
    /// Verifies size and hash, then makes the chunk durable and visible.
    fn finish(self: Box<Self>) -> Result<(), StoreError>;
}

/// The chunks of one datanode. Every method does blocking I/O: call them from the blocking
/// pool, except [`ChunkStore::contains`] and [`ChunkStore::stats`], which are cheap.
pub trait ChunkStore: Send + Sync {
    /// Starts receiving a chunk of `size` bytes. Space is checked first whether or not the
    /// chunk is here already, so a full node's answer does not tell which chunks it holds;
    /// bytes of a chunk already stored are received and verified, and nothing is written.
    fn begin_write(&self, id: ChunkId, size: u64) -> Result<Box<dyn ChunkWrite>, StoreError>;

    /// The bytes of a stored chunk, as stored (the caller verifies or the client does).
    fn open_read(&self, id: &ChunkId) -> Result<Box<dyn Read + Send>, StoreError>;

    fn contains(&self, id: &ChunkId) -> bool;

    /// The size of a stored chunk, None if it is not stored.
    fn stored_size(&self, id: &ChunkId) -> Result<Option<u64>, StoreError>;

    /// When a stored chunk was written, None if not stored or unknown.
    fn modified(&self, id: &ChunkId) -> Option<SystemTime>;

    /// Re-hashes a stored chunk; a corrupt one is quarantined.
    fn verify(&self, id: &ChunkId) -> Result<Verdict, StoreError>;

    /// Moves a chunk out of the way (kept for a human to inspect).
    fn quarantine(&self, id: &ChunkId) -> Result<(), StoreError>;

    /// Removes a chunk, not yet durably: returns the size removed, None if it was not
    /// there. Callers removing many make the removals durable at once with
    /// [`ChunkStore::sync_removals`].
    fn remove(&self, id: &ChunkId) -> Result<Option<u64>, StoreError>;

    /// Makes the removals of `ids` durable. Tries them all; returns the first failure.
    fn sync_removals(&self, ids: &[ChunkId]) -> Result<(), StoreError>;

    /// Calls `f` for every stored chunk until it returns false. Returns whether the walk
    /// went through to the end. An error listing the store aborts the walk: a caller
    /// building an inventory must never take a partial walk for a complete one.
    fn walk_chunks(&self, f: &mut dyn FnMut(ChunkEntry) -> bool) -> Result<bool, StoreError>;

    /// The chunks whose ids start with the byte `top` (one 256th of the store), so a long
    /// job can work through the store in slices with bounded memory.
    fn chunks_with_prefix(&self, top: u8) -> Result<Vec<ChunkEntry>, StoreError>;

    fn stats(&self) -> StoreStats;
}
