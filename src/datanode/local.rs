//! Storing a chunk on this node, as both a client write (`pipeline.rs`) and a repair pull
//! (`replicate.rs`) do it: the bytes go to a [`ChunkWrite`] on the blocking pool, fed
//! through a small bounded channel (a few frames per transfer at most, invariant 8); once
//! the chunk is verified and durable, it is acknowledged: the ack is recorded (which
//! protects it from a racing deletion order) and the replica reported to the coordinator
//! (invariants 3 and 4).

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::acks::RecentAcks;
use super::reporter::{ReportError, Reporter};
use super::store::{ChunkStore, ChunkWrite, StoreError};
use crate::chunk::ChunkId;

/// Why a durable chunk was not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckError {
    /// A deletion order removed it between the write and the ack.
    #[error("chunk {0} was deleted while being stored; write it again")]
    DeletedWhileStored(ChunkId),
    #[error("stored but could not report to the coordinator: {0}")]
    NotReported(#[from] ReportError),
}

/// This node's chunks and what acknowledging one involves.
#[derive(Clone)]
pub struct LocalStore {
    pub node_id: String,
    pub store: Arc<dyn ChunkStore>,
    /// Chunks acknowledged recently, protected from `DeleteChunks`.
    pub recent: Arc<RecentAcks>,
    pub reporter: Reporter,
}

enum Frame {
    Data(Bytes),
    /// The stream ended cleanly: verify and install.
    End,
}

/// A chunk being written on the blocking pool. Dropped or [`LocalWrite::abandon`]ed, it
/// leaves nothing behind.
pub struct LocalWrite {
    id: ChunkId,
    tx: mpsc::Sender<Frame>,
    task: tokio::task::JoinHandle<Result<bool, StoreError>>,
}

impl LocalWrite {
    /// Hands the next bytes to the writer. False if the writer has stopped (it failed:
    /// [`LocalWrite::finish`] says why).
    pub async fn send(&self, data: Bytes) -> bool {
        self.tx.send(Frame::Data(data)).await.is_ok()
    }

    /// Ends the stream: the writer verifies and installs. `Ok(true)` once the chunk is
    /// verified and durable.
    pub async fn finish(self) -> Result<bool, StoreError> {
        let _ = self.tx.send(Frame::End).await;
        drop(self.tx);
        outcome(self.id, self.task).await
    }

    /// Drops the write, waiting until its temporary file is gone.
    pub async fn abandon(self) {
        drop(self.tx);
        let _ = self.task.await;
    }
}

/// The outcome of a writer task, a panic counting as an I/O failure.
async fn outcome(
    id: ChunkId,
    task: tokio::task::JoinHandle<Result<bool, StoreError>>,
) -> Result<bool, StoreError> {
    task.await.unwrap_or_else(|e| Err(join_failure(id, e)))
}

fn join_failure(id: ChunkId, e: tokio::task::JoinError) -> StoreError {
    StoreError::Io {
        what: format!("chunk {id} writer"),
        source: std::io::Error::other(e.to_string()),
    }
}

impl LocalStore {
    /// Starts writing chunk `id` of `size` bytes. The writer yields `Ok(true)` once the
    /// chunk is verified and durable, `Ok(false)` if the stream closed without its end (the
    /// writer is dropped and its temporary file deleted).
    pub fn begin(&self, id: ChunkId, size: u64) -> Result<LocalWrite, StoreError> {
        let writer = self.store.begin_write(id, size)?;
        let (tx, mut rx) = mpsc::channel::<Frame>(16);
        let task = tokio::task::spawn_blocking(move || {
            let mut writer: Box<dyn ChunkWrite> = writer;
            while let Some(frame) = rx.blocking_recv() {
                match frame {
                    Frame::Data(b) => writer.write(&b)?,
                    Frame::End => return writer.finish().map(|_| true),
                }
            }
            Ok(false)
        });
        Ok(LocalWrite { id, tx, task })
    }

    /// Finishes `write` and acknowledges the chunk, on a task of its own: a caller
    /// cancelled now (a client that disconnects) must not stop a durable chunk from being
    /// reported, or it would linger on disk unknown to the coordinator until the next
    /// inventory. `Ok(None)`: the write ended without its end marker.
    pub async fn finish_and_acknowledge(
        &self,
        write: LocalWrite,
        size: u64,
        owner: &str,
    ) -> Result<Option<Result<(), AckError>>, StoreError> {
        let (this, owner, id) = (self.clone(), owner.to_string(), write.id);
        tokio::spawn(async move {
            match write.finish().await? {
                true => Ok(Some(this.acknowledge(id, size, &owner).await)),
                false => Ok(None),
            }
        })
        .await
        .unwrap_or_else(|e| Err(join_failure(id, e)))
    }

    /// The last step before this node acknowledges a stored chunk: records the ack, which
    /// protects the chunk from a racing `DeleteChunks`, checking in the same step that no
    /// deletion got there first, then reports the replica to the coordinator. `owner`: the
    /// access key whose write stored it (empty for a repair copy).
    pub async fn acknowledge(&self, id: ChunkId, size: u64, owner: &str) -> Result<(), AckError> {
        if !self
            .recent
            .ack_if_present(id, Instant::now(), || self.store.contains(&id))
        {
            return Err(AckError::DeletedWhileStored(id));
        }
        Ok(self.reporter.report(id, size, owner).await?)
    }
}
