//! Coordinator-ordered replication (`ReplicateChunk`): this node pulls a chunk from a peer
//! that holds it, and stores it exactly as a client write would be stored: through
//! [`DiskStore::begin_write`](super::store::DiskStore::begin_write), which verifies the SHA-256 and installs the chunk durably
//! before it becomes visible (invariant 2), then reports it (invariants 3 and 4).
//!
//! Repair traffic competes with clients for disks and network, so every pull on a node
//! shares one [`TokenBucket`] (bytes per second) and one semaphore (pulls at a time); orders
//! beyond the limit wait their turn rather than fail.
//!
//! A source that sends bytes with the wrong hash or length is skipped for the next one; a
//! local failure (disk full, I/O error) fails the order at once, since another source would
//! not help.

use std::time::Duration;

use tokio::sync::Semaphore;
use tonic::{Request, Status};

use super::service::{local_result, spawn_writer, DatanodeService, Frame};
use super::store::{StoreError, Verdict};
use super::throttle::TokenBucket;
use crate::chunk::{ChunkId, MAX_CHUNK_SIZE};
use crate::net::MAX_MESSAGE_BYTES;
use crate::proto::pb;
use crate::status::check_node_id;

/// Most sources an order may name.
const MAX_SOURCES: usize = 16;
/// Time for a source to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A source silent for this long between frames is given up.
const FRAME_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

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

/// Why a pull from one source failed.
enum PullError {
    /// The source could not supply good bytes: try the next one.
    Source(Status),
    /// This node could not store them: no other source would help.
    Local(Status),
}

impl DatanodeService {
    /// Carries out a `ReplicateChunk` order; returns the node id the bytes came from (this
    /// node's own id when it already held the chunk).
    pub(super) async fn replicate(
        &self,
        id: ChunkId,
        size: u64,
        sources: &[pb::NodeAddr],
        read_token: &str,
    ) -> Result<String, Status> {
        if size > MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkTooLarge { id, size }.into());
        }
        if sources.is_empty() || sources.len() > MAX_SOURCES {
            return Err(Status::invalid_argument(format!(
                "chunk {id}: an order names 1 to {MAX_SOURCES} sources, not {}",
                sources.len()
            )));
        }
        for s in sources {
            check_node_id(&s.node_id)?;
            if s.addr.is_empty() {
                return Err(Status::invalid_argument(format!(
                    "source {} has no address",
                    s.node_id
                )));
            }
        }
        if self.already_stored(id, size).await? {
            return Ok(self.node_id.clone());
        }
        let _slot = self
            .replication
            .slots
            .acquire()
            .await
            .map_err(|_| Status::unavailable("datanode shutting down"))?;
        // Another order (or a client write) may have stored it while this one waited.
        if self.already_stored(id, size).await? {
            return Ok(self.node_id.clone());
        }

        let mut tried = Vec::new();
        let mut all_not_found = true;
        for src in sources {
            let result = if src.node_id == self.node_id {
                Err(PullError::Source(Status::not_found(
                    "this node does not hold it",
                )))
            } else {
                self.pull(id, size, src, read_token).await
            };
            match result {
                Ok(()) => {
                    self.acknowledge(id, size, "")
                        .await
                        .map_err(|e| Status::unavailable(format!("chunk {id}: {e}")))?;
                    tracing::info!(chunk = %id, size, source = %src.node_id, "chunk replicated");
                    return Ok(src.node_id.clone());
                }
                Err(PullError::Local(status)) => return Err(status),
                Err(PullError::Source(status)) => {
                    tracing::warn!(chunk = %id, source = %src.node_id, addr = %src.addr,
                        error = %status.message(), "replication source failed");
                    all_not_found &= status.code() == tonic::Code::NotFound;
                    tried.push(format!(
                        "{} ({}): {}",
                        src.node_id,
                        src.addr,
                        status.message()
                    ));
                }
            }
        }
        let msg = format!(
            "chunk {id}: no source could supply it; tried {}",
            tried.join("; ")
        );
        Err(if all_not_found {
            Status::not_found(msg)
        } else {
            Status::unavailable(msg)
        })
    }

    /// True if the chunk is already here with the ordered size (acknowledged and reported
    /// again, so the coordinator's record is the node's word). A file of the wrong size is
    /// re-hashed: if corrupt it is quarantined and the order goes ahead; if intact, the
    /// order's size is wrong.
    async fn already_stored(&self, id: ChunkId, size: u64) -> Result<bool, Status> {
        let store = self.store.clone();
        let Some(actual) = blocking(move || store.stored_size(&id)).await? else {
            return Ok(false);
        };
        if actual != size {
            let store = self.store.clone();
            match blocking(move || store.verify(&id)).await? {
                Verdict::Intact => {
                    return Err(Status::invalid_argument(format!(
                        "chunk {id} is {actual} bytes, not {size}"
                    )))
                }
                Verdict::Missing | Verdict::Quarantined => return Ok(false),
            }
        }
        self.acknowledge(id, size, "")
            .await
            .map_err(|e| Status::unavailable(format!("chunk {id}: {e}")))?;
        Ok(true)
    }

    /// Streams the chunk from `src` into the store, at the node's replication rate.
    async fn pull(
        &self,
        id: ChunkId,
        size: u64,
        src: &pb::NodeAddr,
        read_token: &str,
    ) -> Result<(), PullError> {
        let channel = self.peers.get(&src.addr).map_err(PullError::Source)?;
        let mut client = pb::datanode_client::DatanodeClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES);
        let req = Request::new(pb::ReadChunkRequest {
            chunk_id: id.to_hex(),
            token: read_token.to_string(),
        });
        let mut stream = match tokio::time::timeout(START_TIMEOUT, client.read_chunk(req)).await {
            Ok(Ok(r)) => r.into_inner(),
            Ok(Err(status)) => {
                if status.code() == tonic::Code::Unavailable {
                    self.peers.forget(&src.addr);
                }
                return Err(PullError::Source(status));
            }
            Err(_) => {
                self.peers.forget(&src.addr);
                return Err(PullError::Source(Status::deadline_exceeded(
                    "no answer in time",
                )));
            }
        };

        let writer = self
            .store
            .begin_write(id, size)
            .map_err(|e| PullError::Local(e.into()))?;
        let (tx, local) = spawn_writer(writer);
        let mut received = 0u64;
        let outcome = loop {
            let data = match tokio::time::timeout(FRAME_IDLE_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(m))) => m.data,
                Ok(Ok(None)) => break Ok(()),
                Ok(Err(status)) => break Err(status),
                Err(_) => break Err(Status::deadline_exceeded("stream idle")),
            };
            received += data.len() as u64;
            crate::metrics::datanode()
                .received_bytes
                .get_or_create(&crate::metrics::kind("replication"))
                .inc_by(data.len() as u64);
            if received > size {
                break Err(Status::data_loss(format!(
                    "sent more than the {size} bytes of the chunk"
                )));
            }
            // Taking the tokens before accepting the frame holds the stream back, and HTTP/2
            // flow control then slows the source down too.
            self.replication.bucket.acquire(data.len() as u64).await;
            if tx.send(Frame::Data(data)).await.is_err() {
                break Ok(()); // the writer failed; its error is collected below
            }
        };
        if let Err(status) = outcome {
            drop(tx); // the writer drops its temporary file
            let _ = local.await;
            return Err(PullError::Source(status));
        }
        let _ = tx.send(Frame::End).await;
        drop(tx);
        match local_result(id, local).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(PullError::Local(Status::internal(format!(
                "chunk {id}: writer stopped early"
            )))),
            Err(
                e @ (StoreError::HashMismatch { .. }
                | StoreError::SizeMismatch { .. }
                | StoreError::TooLong { .. }),
            ) => Err(PullError::Source(Status::data_loss(e.to_string()))),
            Err(e) => Err(PullError::Local(e.into())),
        }
    }
}

/// Runs store I/O on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(Status::from)
}
