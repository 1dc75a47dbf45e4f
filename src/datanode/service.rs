//! gRPC service of a datanode: decodes each request, checks its token and caller, calls
//! the one piece of the datanode that does the work and encodes the answer. Writes go to
//! the [`WritePipeline`], repair orders to the [`Replicator`], deletion orders to
//! `acks.rs`, reads and verifications to the [`ChunkStore`].

use crate::sync::ReadWriteLocked;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::acks::{delete_ordered, RecentAcks};
use super::pipeline::{PipelineWrite, WriteOrder, WritePipeline};
use super::replicate::{Replicator, Source};
use super::store::{ChunkStore, Verdict};
use crate::chunk::{ChunkId, FRAME_SIZE};
use crate::proto::pb;
use crate::security::token::{Op, TokenKey, WriteScope};
use crate::security::{require_role, Role};
use crate::wire_error::check_node_id;

/// Refuses a request without a token before anything else about it is considered.
fn token_present(token: &str, what: &str) -> Result<(), Status> {
    if token.is_empty() {
        Err(Status::unauthenticated(format!(
            "{what}: no chunk token (ask the coordinator for one)"
        )))
    } else {
        Ok(())
    }
}

/// A write stream silent for this long is abandoned.
const FRAME_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pipeline a write may name.
const MAX_PIPELINE: usize = 16;

pub struct DatanodeService {
    pub node_id: String,
    pub store: Arc<dyn ChunkStore>,
    /// Chunks acknowledged recently, protected from `DeleteChunks`.
    pub recent: Arc<RecentAcks>,
    pub pipeline: WritePipeline,
    pub replicator: Replicator,
    /// Chunk transfers in progress (the load reported in heartbeats).
    pub active: Arc<AtomicU32>,
    /// Checks the chunk tokens every request must carry.
    pub tokens: super::TokenSlot,
    /// Serving TLS: coordinator orders must then come with the coordinator's certificate.
    pub tls_on: bool,
}

/// Counts one transfer in [`DatanodeService::active`] for as long as it lives.
pub(super) struct Transfer(Arc<AtomicU32>);

impl Transfer {
    pub(super) fn start(active: &Arc<AtomicU32>) -> Transfer {
        active.fetch_add(1, AtomicOrdering::Relaxed);
        Transfer(active.clone())
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        self.0.fetch_sub(1, AtomicOrdering::Relaxed);
    }
}

impl DatanodeService {
    /// The token key, once the coordinator has handed it over.
    fn token_key(&self) -> Result<TokenKey, Status> {
        let key = self.tokens.read_locked().clone();
        key.ok_or_else(|| {
            Status::unavailable(
                "this datanode has not registered with the coordinator yet; try again",
            )
        })
    }

    /// Checks a chunk token for `op` on `ids`.
    pub(super) fn check_token(&self, token: &str, op: Op, ids: &[ChunkId]) -> Result<(), Status> {
        Ok(self.token_key()?.verify(token, op, ids)?)
    }

    /// Checks a write header: its token must cover the chunk, the owner and the nodes the
    /// coordinator chose; this node must be one of them, and so must every node it is asked
    /// to forward to, so a client cannot make a datanode dial anywhere else. Returns the
    /// key and the token's expiry (for the receipt).
    fn check_write(
        &self,
        header: &pb::WriteChunkHeader,
        id: ChunkId,
    ) -> Result<(TokenKey, u64), Status> {
        if header.downstream.len() > MAX_PIPELINE || header.targets.len() > MAX_PIPELINE {
            return Err(Status::invalid_argument(format!(
                "pipeline longer than {MAX_PIPELINE} nodes"
            )));
        }
        for n in header.downstream.iter().chain(&header.targets) {
            check_node_id(&n.node_id)?;
        }
        let key = self.token_key()?;
        let scope = WriteScope {
            owner: &header.owner,
            targets: header
                .targets
                .iter()
                .map(|t| (t.node_id.as_str(), t.addr.as_str()))
                .collect(),
        };
        let expires = key.verify_write(&header.token, id, &scope)?;
        if !header.targets.iter().any(|t| t.node_id == self.node_id) {
            return Err(Status::permission_denied(format!(
                "chunk {id}: this datanode ({}) is not one of the nodes the coordinator chose",
                self.node_id
            )));
        }
        if let Some(n) = header
            .downstream
            .iter()
            .find(|n| !scope.allows(&n.node_id, &n.addr))
        {
            return Err(Status::permission_denied(format!(
                "chunk {id}: downstream node {:?} is not one of the nodes the coordinator chose",
                n.node_id
            )));
        }
        Ok((key, expires))
    }

    /// Reads and checks the header that opens a write stream.
    async fn write_order(
        &self,
        stream: &mut Streaming<pb::WriteChunkRequest>,
    ) -> Result<WriteOrder, Status> {
        let header = match tokio::time::timeout(FRAME_IDLE_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(pb::WriteChunkRequest {
                msg: Some(pb::write_chunk_request::Msg::Header(h)),
            }))) => h,
            Ok(Ok(_)) => {
                return Err(Status::invalid_argument(
                    "write stream must start with a header",
                ))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err(Status::deadline_exceeded("no header received")),
        };
        token_present(&header.token, "WriteChunk")?;
        let id: ChunkId = header.chunk_id.parse()?;
        let (key, token_expires) = self.check_write(&header, id)?;
        crate::grpc_layer::record_chunk(&id);
        Ok(WriteOrder {
            id,
            header,
            key,
            token_expires,
        })
    }

    /// The first check of a coordinator order, before its content is even looked at:
    /// the coordinator's certificate (with TLS) and a token.
    fn check_order_caller<T>(
        &self,
        req: &Request<T>,
        what: &str,
        token: &str,
    ) -> Result<(), Status> {
        require_role(self.tls_on, req, &[Role::Coordinator], what)?;
        token_present(token, what)
    }
}

#[tonic::async_trait]
impl pb::datanode_server::Datanode for DatanodeService {
    async fn write_chunk(
        &self,
        req: Request<Streaming<pb::WriteChunkRequest>>,
    ) -> Result<Response<pb::WriteChunkResponse>, Status> {
        let _transfer = Transfer::start(&self.active);
        let mut stream = req.into_inner();
        let order = self.write_order(&mut stream).await?;
        let mut write = self.pipeline.start(order)?;
        if let Err(e) = receive(&mut stream, &mut write).await {
            write.abort().await;
            return Err(e);
        }
        Ok(Response::new(write.finish().await?))
    }

    type ReadChunkStream = ReceiverStream<Result<pb::ReadChunkResponse, Status>>;

    async fn read_chunk(
        &self,
        req: Request<pb::ReadChunkRequest>,
    ) -> Result<Response<Self::ReadChunkStream>, Status> {
        let req = req.into_inner();
        token_present(&req.token, "ReadChunk")?;
        let id: ChunkId = req.chunk_id.parse()?;
        self.check_token(&req.token, Op::Read, &[id])?;
        crate::grpc_layer::record_chunk(&id);
        let mut file = self.store.open_read(&id)?;
        let (tx, rx) = mpsc::channel(4);
        let transfer = Transfer::start(&self.active);
        tokio::task::spawn_blocking(move || loop {
            let _ = &transfer;
            let mut buf = vec![0u8; FRAME_SIZE];
            let n = match read_full(&mut file, &mut buf) {
                Ok(n) => n,
                Err(e) => {
                    let _ =
                        tx.blocking_send(Err(Status::internal(format!("read chunk {id}: {e}"))));
                    return;
                }
            };
            if n == 0 {
                return;
            }
            buf.truncate(n);
            crate::metrics::datanode()
                .sent_bytes
                .get_or_create(&crate::metrics::kind("read"))
                .inc_by(n as u64);
            if tx
                .blocking_send(Ok(pb::ReadChunkResponse {
                    data: Bytes::from(buf),
                }))
                .is_err()
            {
                return;
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn verify_chunk(
        &self,
        req: Request<pb::VerifyChunkRequest>,
    ) -> Result<Response<pb::VerifyChunkResponse>, Status> {
        self.check_order_caller(&req, "VerifyChunk", &req.get_ref().token)?;
        let id: ChunkId = req.get_ref().chunk_id.parse()?;
        self.check_token(&req.get_ref().token, Op::Verify, &[id])?;
        crate::grpc_layer::record_chunk(&id);
        let store = self.store.clone();
        let verdict = tokio::task::spawn_blocking(move || store.verify(&id))
            .await
            .map_err(|e| Status::internal(e.to_string()))??;
        Ok(Response::new(pb::VerifyChunkResponse {
            present: verdict != Verdict::Missing,
            intact: verdict == Verdict::Intact,
        }))
    }

    async fn replicate_chunk(
        &self,
        req: Request<pb::ReplicateChunkRequest>,
    ) -> Result<Response<pb::ReplicateChunkResponse>, Status> {
        let _transfer = Transfer::start(&self.active);
        self.check_order_caller(&req, "ReplicateChunk", &req.get_ref().token)?;
        let id: ChunkId = req.get_ref().chunk_id.parse()?;
        self.check_token(&req.get_ref().token, Op::Replicate, &[id])?;
        let req = req.into_inner();
        crate::grpc_layer::record_chunk(&id);
        let sources = req
            .sources
            .iter()
            .map(source)
            .collect::<Result<Vec<_>, Status>>()?;
        let source = self
            .replicator
            .replicate(id, req.size, &sources, &req.read_token)
            .await?;
        Ok(Response::new(pb::ReplicateChunkResponse { source }))
    }

    async fn delete_chunks(
        &self,
        req: Request<pb::DeleteChunksRequest>,
    ) -> Result<Response<pb::DeleteChunksResponse>, Status> {
        self.check_order_caller(&req, "DeleteChunks", &req.get_ref().token)?;
        // Every id is checked before anything is deleted: a bad order deletes nothing.
        let parsed = req
            .get_ref()
            .chunk_ids
            .iter()
            .map(|s| s.parse::<ChunkId>())
            .collect::<Result<Vec<_>, _>>()?;
        self.check_token(&req.get_ref().token, Op::Delete, &parsed)?;
        let protect = Duration::from_secs(req.get_ref().protect_secs);
        let out = delete_ordered(self.store.clone(), self.recent.clone(), parsed, protect).await?;
        Ok(Response::new(pb::DeleteChunksResponse {
            deleted: hex_ids(&out.deleted),
            kept: hex_ids(&out.kept),
            freed_bytes: out.freed_bytes,
        }))
    }
}

/// A repair source as an order names it: a valid node id and an address.
fn source(s: &pb::NodeAddr) -> Result<Source, Status> {
    check_node_id(&s.node_id)?;
    if s.addr.is_empty() {
        return Err(Status::invalid_argument(format!(
            "source {} has no address",
            s.node_id
        )));
    }
    Ok(Source {
        node_id: s.node_id.clone(),
        addr: s.addr.clone(),
    })
}

fn hex_ids(ids: &[ChunkId]) -> Vec<String> {
    ids.iter().map(ChunkId::to_hex).collect()
}

/// Feeds the frames after the header to `write` until the end marker (`Ok`), or until
/// the local writer stops (its failure is reported by `finish`). A stream that ends
/// without the marker fails: a cancelled call also ends like that, and only the marker
/// commits.
async fn receive(
    stream: &mut Streaming<pb::WriteChunkRequest>,
    write: &mut PipelineWrite<'_>,
) -> Result<(), Status> {
    let id = write.id();
    loop {
        let msg = match tokio::time::timeout(FRAME_IDLE_TIMEOUT, stream.message()).await {
            Ok(Ok(Some(m))) => m,
            Ok(Ok(None)) => {
                return Err(Status::aborted(format!(
                    "chunk {id}: stream ended without its end marker"
                )))
            }
            Ok(Err(e)) => return Err(e),
            Err(_) => {
                return Err(Status::deadline_exceeded(format!(
                    "chunk {id}: stream idle"
                )))
            }
        };
        match msg.msg {
            Some(pb::write_chunk_request::Msg::Data(data)) => {
                if !write.data(data).await? {
                    return Ok(());
                }
            }
            Some(pb::write_chunk_request::Msg::End(_)) => return Ok(()),
            _ => {
                return Err(Status::invalid_argument(format!(
                    "chunk {id}: unexpected message after the header"
                )))
            }
        }
    }
}

fn read_full(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
