//! The pipelined chunk write. A write streams through the node: each frame goes to the
//! local temporary file (on a blocking thread, hashed as it is written) and, at the same
//! time, to the next node of the pipeline. Only when the local copy is complete, verified
//! and durable, and reported to the coordinator, does this node count itself in the ack,
//! which also carries what the rest of the pipeline stored (invariants 2 to 4).
//!
//! The service decodes and checks the request (token, pipeline, this node's place in it)
//! and feeds the frames to a [`PipelineWrite`]: [`PipelineWrite::data`] for each,
//! then [`PipelineWrite::finish`] after the stream's end marker, or
//! [`PipelineWrite::abort`] if the stream failed. Only the end marker commits: it is
//! forwarded downstream only when the whole stream arrived, so a refused or cancelled
//! stream is installed on no node.

use bytes::Bytes;

use super::local::{LocalStore, LocalWrite};
use super::peer::{Forward, PeerError};
use super::store::StoreError;
use crate::chunk::ChunkId;
use crate::net::ChannelCache;
use crate::proto::pb;
use crate::security::token::TokenKey;

/// Largest data frame a write may carry (clients send 256 KiB).
pub const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;

/// Why a write was refused or failed as a whole (a failure of one node of the pipeline is
/// not an error: the ack names it).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error("chunk {id}: a frame of {len} bytes; at most {MAX_FRAME_BYTES} per frame")]
    FrameTooLarge { id: ChunkId, len: usize },
    /// The bytes were not the chunk, or this node could not begin storing them.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The next node of the pipeline could not be called.
    #[error(transparent)]
    Downstream(#[from] PeerError),
}

/// Writes chunks on this node and forwards them along their pipelines.
pub struct WritePipeline {
    local: LocalStore,
    peers: ChannelCache,
}

/// A checked write request: what to store, where to forward it, and what signs receipts.
pub struct WriteOrder {
    pub id: ChunkId,
    /// The request's header as received (it names the rest of the pipeline).
    pub header: pb::WriteChunkHeader,
    /// The token key and the token's expiry, for this node's receipt.
    pub key: TokenKey,
    pub token_expires: u64,
}

/// One chunk write in progress.
pub struct PipelineWrite<'a> {
    pipeline: &'a WritePipeline,
    order: WriteOrder,
    local: LocalWrite,
    downstream: Option<Forward>,
    /// Nodes of the pipeline that failed on the way.
    failures: Vec<pb::NodeFailure>,
    received: u64,
}

impl WritePipeline {
    pub fn new(local: LocalStore, peers: ChannelCache) -> WritePipeline {
        WritePipeline { local, peers }
    }

    /// Begins storing the chunk locally and opens the write to the next node, if any.
    pub fn start(&self, order: WriteOrder) -> Result<PipelineWrite<'_>, PipelineError> {
        let local = self.local.begin(order.id, order.header.size)?;
        let downstream = match order.header.downstream.first() {
            Some(next) => Some(Forward::start(
                &self.peers,
                next,
                next_header(&order.header),
            )?),
            None => None,
        };
        Ok(PipelineWrite {
            pipeline: self,
            order,
            local,
            downstream,
            failures: Vec::new(),
            received: 0,
        })
    }
}

/// The header the next node gets: the same, minus itself from the chain.
fn next_header(header: &pb::WriteChunkHeader) -> pb::WriteChunkHeader {
    pb::WriteChunkHeader {
        chunk_id: header.chunk_id.clone(),
        size: header.size,
        downstream: header.downstream[1..].to_vec(),
        token: header.token.clone(),
        owner: header.owner.clone(),
        targets: header.targets.clone(),
    }
}

impl PipelineWrite<'_> {
    pub fn id(&self) -> ChunkId {
        self.order.id
    }

    /// Takes the next frame: checks it, forwards it and writes it locally. `Ok(false)`
    /// when the local writer has stopped (it failed; [`PipelineWrite::finish`] says why).
    pub async fn data(&mut self, data: Bytes) -> Result<bool, PipelineError> {
        let (id, size) = (self.order.id, self.order.header.size);
        if data.len() > MAX_FRAME_BYTES {
            return Err(PipelineError::FrameTooLarge {
                id,
                len: data.len(),
            });
        }
        self.received += data.len() as u64;
        crate::metrics::datanode()
            .received_bytes
            .get_or_create(&crate::metrics::kind("write"))
            .inc_by(data.len() as u64);
        if self.received > size {
            return Err(StoreError::TooLong {
                id,
                announced: size,
            }
            .into());
        }
        if let Some(next) = &self.downstream {
            let n = data.len() as u64;
            if next.send(data.clone()).await {
                crate::metrics::datanode()
                    .sent_bytes
                    .get_or_create(&crate::metrics::kind("forward"))
                    .inc_by(n);
            } else {
                // The next node failed; keep writing locally, the ack will say so.
                let next = self.downstream.take().expect("checked above");
                self.failures.push(next.failure().await);
            }
        }
        Ok(self.local.send(data).await)
    }

    /// Gives the write up: the downstream call is cancelled (so no node downstream
    /// installs the chunk) and the local temporary file deleted.
    pub async fn abort(self) {
        if let Some(next) = self.downstream {
            next.abort();
        }
        self.local.abandon().await;
    }

    /// The whole stream arrived: installs the chunk here and collects the ack of the rest
    /// of the pipeline. Bytes that are not the chunk fail the whole write.
    pub async fn finish(self) -> Result<pb::WriteChunkResponse, PipelineError> {
        let PipelineWrite {
            pipeline,
            order,
            local,
            downstream,
            mut failures,
            ..
        } = self;
        let (id, size, node_id) = (order.id, order.header.size, &pipeline.local.node_id);
        // Every node verifies the bytes on its own, so the next node may verify and install
        // now, in parallel with this one, instead of after it.
        let downstream = match downstream {
            Some(next) => Some(next.end().await),
            None => None,
        };
        let mut ack = pb::WriteChunkResponse::default();
        let stored = pipeline
            .local
            .finish_and_acknowledge(local, size, &order.header.owner)
            .await;
        match stored {
            Ok(Some(Ok(()))) => {
                ack.stored_on.push(node_id.clone());
                let owner = &order.header.owner;
                let r = order
                    .key
                    .receipt(owner, id, size, node_id, order.token_expires);
                ack.receipts.push(r.into());
            }
            Ok(Some(Err(e))) => failures.push(pb::NodeFailure {
                node_id: node_id.clone(),
                error: e.to_string(),
            }),
            Ok(None) => {}
            Err(e) if e.is_bad_bytes() => {
                if let Some(next) = downstream {
                    next.abort();
                }
                return Err(e.into());
            }
            Err(e) => {
                tracing::error!(chunk = %id, error = %e, "storing chunk failed");
                failures.push(pb::NodeFailure {
                    node_id: node_id.clone(),
                    error: e.to_string(),
                });
            }
        }
        if let Some(next) = downstream {
            match next.ack().await {
                Ok(resp) => {
                    ack.stored_on.extend(resp.stored_on);
                    failures.extend(resp.failures);
                    ack.receipts.extend(resp.receipts);
                }
                Err(failure) => failures.push(failure),
            }
        }
        ack.failures = failures;
        Ok(ack)
    }
}
