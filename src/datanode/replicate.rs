//! Coordinator-ordered replication (`ReplicateChunk`): this node pulls a chunk from a peer
//! that holds it, and stores it exactly as a client write would be stored: through
//! [`ChunkStore::begin_write`](super::store::ChunkStore::begin_write), which verifies the SHA-256 and installs the chunk durably
//! before it becomes visible (invariant 2), then reports it (invariants 3 and 4).
//!
//! Repair traffic competes with clients for disks and network, so every pull on a node
//! shares one [`TokenBucket`] (bytes per second) and one semaphore (pulls at a time); orders
//! beyond the limit wait their turn rather than fail.
//!
//! A source that sends bytes with the wrong hash or length is skipped for the next one; a
//! local failure (disk full, I/O error) fails the order at once, since another source would
//! not help.

use tokio::sync::Semaphore;

use super::local::{AckError, LocalStore};
use super::peer::{self, PeerError};
use super::store::{StoreError, Verdict};
use super::throttle::TokenBucket;
use crate::chunk::{ChunkId, MAX_CHUNK_SIZE};
use crate::net::ChannelCache;

/// Most sources an order may name.
pub const MAX_SOURCES: usize = 16;

/// The limits shared by every pull on this node.
pub struct Replication {
    bucket: TokenBucket,
    slots: Semaphore,
}

impl Replication {
    /// `rate` in bytes per second (0 = unlimited); `concurrency` pulls at once (at least 1).
    pub fn new(rate: u64, concurrency: usize) -> Self {
        Replication {
            bucket: TokenBucket::new(rate),
            slots: Semaphore::new(concurrency.max(1)),
        }
    }
}

/// A node that holds the chunk, as the order names it (id checked, address present).
pub struct Source {
    pub node_id: String,
    pub addr: String,
}

/// Why a `ReplicateChunk` order failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplicateError {
    #[error("chunk {id}: an order names 1 to {MAX_SOURCES} sources, not {count}")]
    SourceCount { id: ChunkId, count: usize },
    /// This node holds an intact copy of another size than the order says.
    #[error("chunk {id} is {actual} bytes, not {size}")]
    SizeConflict { id: ChunkId, actual: u64, size: u64 },
    /// This node could not store the chunk; another source would not help.
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("chunk {id}: writer stopped early")]
    WriterStopped { id: ChunkId },
    #[error("chunk {id}: {source}")]
    NotAcknowledged { id: ChunkId, source: AckError },
    #[error("datanode shutting down")]
    ShuttingDown,
    /// Every source failed; `all_not_found` when none of them held the chunk.
    #[error("chunk {id}: no source could supply it; tried {tried}")]
    NoSource {
        id: ChunkId,
        tried: String,
        all_not_found: bool,
    },
}

/// Why a pull from one source failed.
enum PullError {
    /// The source could not supply good bytes: try the next one.
    Source(PeerError),
    /// This node could not store them: no other source would help.
    Local(ReplicateError),
}

/// Carries out `ReplicateChunk` orders.
pub struct Replicator {
    local: LocalStore,
    peers: ChannelCache,
    limits: Replication,
}

impl Replicator {
    pub fn new(local: LocalStore, peers: ChannelCache, limits: Replication) -> Replicator {
        Replicator {
            local,
            peers,
            limits,
        }
    }

    /// Pulls chunk `id` of `size` bytes from the first of `sources` that supplies it;
    /// returns the node id the bytes came from (this node's own id when it already held
    /// the chunk).
    pub async fn replicate(
        &self,
        id: ChunkId,
        size: u64,
        sources: &[Source],
        read_token: &str,
    ) -> Result<String, ReplicateError> {
        if size > MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkTooLarge { id, size }.into());
        }
        if sources.is_empty() || sources.len() > MAX_SOURCES {
            return Err(ReplicateError::SourceCount {
                id,
                count: sources.len(),
            });
        }
        let node_id = &self.local.node_id;
        if self.already_stored(id, size).await? {
            return Ok(node_id.clone());
        }
        let _slot = self
            .limits
            .slots
            .acquire()
            .await
            .map_err(|_| ReplicateError::ShuttingDown)?;
        // Another order (or a client write) may have stored it while this one waited.
        if self.already_stored(id, size).await? {
            return Ok(node_id.clone());
        }

        let mut tried = Vec::new();
        let mut all_not_found = true;
        for src in sources {
            let result = if src.node_id == *node_id {
                Err(PullError::Source(PeerError::NotFound(
                    "this node does not hold it".into(),
                )))
            } else {
                self.pull(id, size, src, read_token).await
            };
            match result {
                Ok(()) => {
                    self.acknowledge(id, size).await?;
                    tracing::info!(chunk = %id, size, source = %src.node_id, "chunk replicated");
                    return Ok(src.node_id.clone());
                }
                Err(PullError::Local(e)) => return Err(e),
                Err(PullError::Source(e)) => {
                    tracing::warn!(chunk = %id, source = %src.node_id, addr = %src.addr,
                        error = %e, "replication source failed");
                    all_not_found &= matches!(e, PeerError::NotFound(_));
                    tried.push(format!("{} ({}): {e}", src.node_id, src.addr));
                }
            }
        }
        Err(ReplicateError::NoSource {
            id,
            tried: tried.join("; "),
            all_not_found,
        })
    }

    async fn acknowledge(&self, id: ChunkId, size: u64) -> Result<(), ReplicateError> {
        self.local
            .acknowledge(id, size, "")
            .await
            .map_err(|source| ReplicateError::NotAcknowledged { id, source })
    }

    /// True if the chunk is already here with the ordered size (acknowledged and reported
    /// again, so the coordinator's record is the node's word). A file of the wrong size is
    /// re-hashed: if corrupt it is quarantined and the order goes ahead; if intact, the
    /// order's size is wrong.
    async fn already_stored(&self, id: ChunkId, size: u64) -> Result<bool, ReplicateError> {
        let store = self.local.store.clone();
        let Some(actual) = blocking(move || store.stored_size(&id)).await? else {
            return Ok(false);
        };
        if actual != size {
            let store = self.local.store.clone();
            match blocking(move || store.verify(&id)).await? {
                Verdict::Intact => {
                    return Err(ReplicateError::SizeConflict { id, actual, size });
                }
                Verdict::Missing | Verdict::Quarantined => return Ok(false),
            }
        }
        self.acknowledge(id, size).await?;
        Ok(true)
    }

    /// Streams the chunk from `src` into the store, at the node's replication rate.
    async fn pull(
        &self,
        id: ChunkId,
        size: u64,
        src: &Source,
        read_token: &str,
    ) -> Result<(), PullError> {
        let mut stream = peer::read_chunk(&self.peers, &src.addr, id, read_token)
            .await
            .map_err(PullError::Source)?;
        let local = self
            .local
            .begin(id, size)
            .map_err(|e| PullError::Local(e.into()))?;
        let mut received = 0u64;
        let outcome = loop {
            let data = match stream.next().await {
                Ok(Some(data)) => data,
                Ok(None) => break Ok(()),
                Err(e) => break Err(e),
            };
            received += data.len() as u64;
            crate::metrics::datanode()
                .received_bytes
                .get_or_create(&crate::metrics::kind("replication"))
                .inc_by(data.len() as u64);
            if received > size {
                break Err(PeerError::Failed(format!(
                    "sent more than the {size} bytes of the chunk"
                )));
            }
            // Taking the tokens before accepting the frame holds the stream back, and HTTP/2
            // flow control then slows the source down too.
            self.limits.bucket.acquire(data.len() as u64).await;
            if !local.send(data).await {
                break Ok(()); // the writer failed; its error is collected below
            }
        };
        if let Err(e) = outcome {
            local.abandon().await; // the writer drops its temporary file
            return Err(PullError::Source(e));
        }
        match local.finish().await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PullError::Local(ReplicateError::WriterStopped { id })),
            Err(e) if e.is_bad_bytes() => Err(PullError::Source(PeerError::Failed(e.to_string()))),
            Err(e) => Err(PullError::Local(e.into())),
        }
    }
}

/// Runs store I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(StoreError::Io {
            what: "store task".into(),
            source: std::io::Error::other(e.to_string()),
        })
    })
}
