//! gRPC service of a datanode: pipelined chunk writes, chunk reads, verification.
//!
//! A write streams through the node: each frame goes to the local temporary file (on a
//! blocking thread, hashed as it is written) and, at the same time, to the next node of the
//! pipeline. Only when the local copy is complete, verified and durable, and reported to
//! the coordinator, does this node count itself in the ack, which also carries what the
//! rest of the pipeline stored (invariants 2 to 4).
//!
//! Coordinator orders (`ReplicateChunk`, `DeleteChunks`) are decoded and validated here;
//! the work is in `replicate.rs` and `acks.rs`.

use std::collections::HashSet;
use std::io::Read;
use std::sync::atomic::{AtomicU32, Ordering as AtomicOrdering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::acks::{delete_unprotected, RecentAcks};
use super::replicate::Replication;
use super::reporter::Reporter;
use super::store::{ChunkWriter, DiskStore, StoreError, Verdict};
use crate::chunk::{ChunkId, FRAME_SIZE};
use crate::net::ChannelCache;
use crate::proto::pb;
use crate::security::token::{Op, TokenKey, WriteScope};
use crate::security::{require_role, Role};
use crate::status::check_node_id;

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

/// Largest data frame a write may carry (clients send 256 KiB).
const MAX_FRAME_BYTES: usize = 4 * 1024 * 1024;
/// A write stream silent for this long is abandoned.
const FRAME_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest pipeline a write may name.
const MAX_PIPELINE: usize = 16;

pub struct DatanodeService {
    pub node_id: String,
    pub store: Arc<DiskStore>,
    pub reporter: Reporter,
    pub peers: ChannelCache,
    /// Chunks acknowledged recently, protected from `DeleteChunks`.
    pub recent: Arc<RecentAcks>,
    /// Rate and concurrency limits shared by all `ReplicateChunk` pulls.
    pub replication: Arc<Replication>,
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

impl From<StoreError> for Status {
    fn from(e: StoreError) -> Status {
        match &e {
            StoreError::TooLong { .. }
            | StoreError::SizeMismatch { .. }
            | StoreError::HashMismatch { .. }
            | StoreError::ChunkTooLarge { .. } => Status::invalid_argument(e.to_string()),
            StoreError::NoSpace { .. } => Status::resource_exhausted(e.to_string()),
            StoreError::NotFound(_) => Status::not_found(e.to_string()),
            StoreError::Io { .. } => {
                tracing::error!(error = %e, "chunk store I/O failed");
                Status::internal(e.to_string())
            }
        }
    }
}

pub(super) enum Frame {
    Data(Bytes),
    /// The stream ended cleanly: verify and install.
    End,
}

/// Runs `writer` on the blocking pool, fed frames through a small bounded channel (so at
/// most a few frames per transfer are buffered, invariant 8). The task yields `Ok(true)`
/// once the chunk is verified and durable, `Ok(false)` if the channel closed without
/// [`Frame::End`] (the writer is dropped and its temporary file deleted).
pub(super) fn spawn_writer(writer: ChunkWriter) -> (mpsc::Sender<Frame>, LocalWrite) {
    let (tx, mut rx) = mpsc::channel::<Frame>(16);
    let task = tokio::task::spawn_blocking(move || {
        let mut writer = writer;
        while let Some(frame) = rx.blocking_recv() {
            match frame {
                Frame::Data(b) => writer.write(&b)?,
                Frame::End => return writer.finish().map(|_| true),
            }
        }
        Ok(false)
    });
    (tx, task)
}

pub(super) type LocalWrite = tokio::task::JoinHandle<Result<bool, StoreError>>;

/// The outcome of a [`spawn_writer`] task, a panic counting as an I/O failure.
pub(super) async fn local_result(id: ChunkId, task: LocalWrite) -> Result<bool, StoreError> {
    match task.await {
        Ok(r) => r,
        Err(e) => Err(StoreError::Io {
            what: format!("chunk {id} writer"),
            source: std::io::Error::other(e.to_string()),
        }),
    }
}

/// See [`DatanodeService::acknowledge`]; usable from a task that outlives the request.
pub(super) async fn acknowledge_with(
    store: &DiskStore,
    recent: &RecentAcks,
    reporter: &Reporter,
    id: ChunkId,
    size: u64,
    owner: &str,
) -> Result<(), String> {
    if !recent.ack_if_present(id, Instant::now(), || store.contains(&id)) {
        return Err(format!(
            "chunk {id} was deleted while being stored; write it again"
        ));
    }
    reporter
        .report(id, size, owner)
        .await
        .map_err(|e| format!("stored but could not report to the coordinator: {e}"))
}

type Downstream = tokio::task::JoinHandle<Result<pb::WriteChunkResponse, Status>>;

impl DatanodeService {
    /// The token key, once the coordinator has handed it over.
    fn token_key(&self) -> Result<TokenKey, Status> {
        let key = self
            .tokens
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
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

    /// The last step before this node acknowledges a stored chunk: records the ack, which
    /// protects the chunk from a racing `DeleteChunks`, checking in the same step that no
    /// deletion got there first, then reports the replica to the coordinator. `owner`: the
    /// access key whose write stored it (empty for a repair copy).
    pub(super) async fn acknowledge(
        &self,
        id: ChunkId,
        size: u64,
        owner: &str,
    ) -> Result<(), String> {
        acknowledge_with(&self.store, &self.recent, &self.reporter, id, size, owner).await
    }

    /// Opens the write to the next node of the pipeline, sending it the rest of the chain.
    fn start_downstream(
        &self,
        header: &pb::WriteChunkHeader,
    ) -> Result<Option<(String, mpsc::Sender<pb::WriteChunkRequest>, Downstream)>, Status> {
        let Some(next) = header.downstream.first() else {
            return Ok(None);
        };
        let channel = self.peers.get(&next.addr)?;
        let (tx, rx) = mpsc::channel(16);
        let next_header = pb::WriteChunkHeader {
            chunk_id: header.chunk_id.clone(),
            size: header.size,
            downstream: header.downstream[1..].to_vec(),
            token: header.token.clone(),
            owner: header.owner.clone(),
            targets: header.targets.clone(),
        };
        tx.try_send(pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(next_header)),
        })
        .map_err(|_| Status::internal("downstream channel closed"))?;
        let mut req = Request::new(ReceiverStream::new(rx));
        crate::grpc_layer::tag(&mut req);
        let task = tokio::spawn(async move {
            let mut client = pb::datanode_client::DatanodeClient::new(channel)
                .max_decoding_message_size(crate::net::MAX_MESSAGE_BYTES);
            Ok(client.write_chunk(req).await?.into_inner())
        });
        Ok(Some((next.node_id.clone(), tx, task)))
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
        let size = header.size;

        // Local copy, written on a blocking thread.
        let (local_tx, local) = spawn_writer(self.store.begin_write(id, size)?);

        let mut downstream = self.start_downstream(&header)?;
        let mut failures = Vec::new();
        let mut received: u64 = 0;
        let outcome: Result<(), Status> = loop {
            let msg = match tokio::time::timeout(FRAME_IDLE_TIMEOUT, stream.message()).await {
                Ok(Ok(Some(m))) => m,
                // A cancelled call also ends like this: only the end marker commits.
                Ok(Ok(None)) => {
                    break Err(Status::aborted(format!(
                        "chunk {id}: stream ended without its end marker"
                    )))
                }
                Ok(Err(e)) => break Err(e),
                Err(_) => {
                    break Err(Status::deadline_exceeded(format!(
                        "chunk {id}: stream idle"
                    )))
                }
            };
            let data = match msg.msg {
                Some(pb::write_chunk_request::Msg::Data(data)) => data,
                Some(pb::write_chunk_request::Msg::End(_)) => break Ok(()),
                _ => {
                    break Err(Status::invalid_argument(format!(
                        "chunk {id}: unexpected message after the header"
                    )))
                }
            };
            if data.len() > MAX_FRAME_BYTES {
                break Err(Status::invalid_argument(format!(
                    "chunk {id}: a frame of {} bytes; at most {MAX_FRAME_BYTES} per frame",
                    data.len()
                )));
            }
            received += data.len() as u64;
            crate::metrics::datanode()
                .received_bytes
                .get_or_create(&crate::metrics::kind("write"))
                .inc_by(data.len() as u64);
            if received > size {
                break Err(StoreError::TooLong {
                    id,
                    announced: size,
                }
                .into());
            }
            if let Some((_, tx, _)) = &downstream {
                let frame = pb::WriteChunkRequest {
                    msg: Some(pb::write_chunk_request::Msg::Data(data.clone())),
                };
                let n = data.len() as u64;
                if tx.send(frame).await.is_ok() {
                    crate::metrics::datanode()
                        .sent_bytes
                        .get_or_create(&crate::metrics::kind("forward"))
                        .inc_by(n);
                } else {
                    // The next node failed; keep writing locally, the ack will say so.
                    let (node, _, task) = downstream.take().expect("checked above");
                    failures.push(downstream_failure(&node, task).await);
                }
            }
            if local_tx.send(Frame::Data(data)).await.is_err() {
                break Ok(()); // the local writer failed; its error is collected below
            }
        };

        if let Err(e) = outcome {
            // Abort the whole pipeline by cancelling the downstream call: without the end
            // marker, no node downstream installs the chunk.
            if let Some((_, _, task)) = downstream {
                task.abort();
            }
            drop(local_tx);
            let _ = local.await;
            return Err(e);
        }

        // The whole stream arrived. Every node verifies the bytes on its own, so the next
        // node may verify and install now, in parallel with this one, instead of after it.
        let downstream = match downstream {
            Some((node, tx, task)) => {
                let end = pb::WriteChunkRequest {
                    msg: Some(pb::write_chunk_request::Msg::End(true)),
                };
                let _ = tx.send(end).await;
                drop(tx);
                Some((node, task))
            }
            None => None,
        };
        let _ = local_tx.send(Frame::End).await;
        drop(local_tx);
        let mut stored_on = Vec::new();
        let mut receipts = Vec::new();
        // Finish on a task of its own: a client that disconnects now cancels this handler,
        // but a chunk that became durable must still be reported, or it would linger on
        // disk unknown to the coordinator until the next inventory.
        let finish = {
            let (store, recent, reporter, owner) = (
                self.store.clone(),
                self.recent.clone(),
                self.reporter.clone(),
                header.owner.clone(),
            );
            tokio::spawn(async move {
                match local_result(id, local).await {
                    Ok(true) => Ok(Some(
                        acknowledge_with(&store, &recent, &reporter, id, size, &owner).await,
                    )),
                    Ok(false) => Ok(None),
                    Err(e) => Err(e),
                }
            })
        };
        let finished = finish.await.unwrap_or_else(|e| {
            Err(StoreError::Io {
                what: format!("chunk {id} writer"),
                source: std::io::Error::other(e.to_string()),
            })
        });
        match finished {
            Ok(Some(Ok(()))) => {
                stored_on.push(self.node_id.clone());
                let r = key.receipt(&header.owner, id, size, &self.node_id, token_expires);
                receipts.push(r.into());
            }
            Ok(Some(Err(error))) => failures.push(pb::NodeFailure {
                node_id: self.node_id.clone(),
                error,
            }),
            Ok(None) => {}
            Err(
                e @ (StoreError::HashMismatch { .. }
                | StoreError::SizeMismatch { .. }
                | StoreError::TooLong { .. }),
            ) => {
                if let Some((_, task)) = downstream {
                    task.abort();
                }
                return Err(e.into());
            }
            Err(e) => {
                tracing::error!(chunk = %id, error = %e, "storing chunk failed");
                failures.push(pb::NodeFailure {
                    node_id: self.node_id.clone(),
                    error: e.to_string(),
                });
            }
        }

        if let Some((node, task)) = downstream {
            match task.await {
                Ok(Ok(resp)) => {
                    stored_on.extend(resp.stored_on);
                    failures.extend(resp.failures);
                    receipts.extend(resp.receipts);
                }
                Ok(Err(status)) => failures.push(pb::NodeFailure {
                    node_id: node,
                    error: status.message().to_string(),
                }),
                Err(e) => failures.push(pb::NodeFailure {
                    node_id: node,
                    error: e.to_string(),
                }),
            }
        }
        Ok(Response::new(pb::WriteChunkResponse {
            stored_on,
            failures,
            receipts,
        }))
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
        let source = self
            .replicate(id, req.size, &req.sources, &req.read_token)
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
        let req = req.into_inner();
        let mut seen = HashSet::with_capacity(parsed.len());
        let mut ids = Vec::with_capacity(parsed.len());
        for id in parsed {
            if seen.insert(id) {
                ids.push(id);
            }
        }
        let protect = Duration::from_secs(req.protect_secs);
        let (store, recent) = (self.store.clone(), self.recent.clone());
        let out =
            tokio::task::spawn_blocking(move || delete_unprotected(&store, &recent, &ids, protect))
                .await
                .map_err(|e| Status::internal(format!("delete task failed: {e}")))?;
        for (id, e) in &out.failed {
            tracing::error!(chunk = %id, error = %e, "deleting chunk failed");
        }
        if let Some((_, e)) = out.failed.first() {
            if out.deleted.is_empty() && out.kept.is_empty() {
                return Err(Status::internal(format!(
                    "no chunk could be deleted ({} failed): {e}",
                    out.failed.len()
                )));
            }
        }
        tracing::info!(
            deleted = out.deleted.len(),
            kept = out.kept.len(),
            failed = out.failed.len(),
            freed = out.freed_bytes,
            "deleted chunks on order"
        );
        Ok(Response::new(pb::DeleteChunksResponse {
            deleted: hex_ids(&out.deleted),
            kept: hex_ids(&out.kept),
            freed_bytes: out.freed_bytes,
        }))
    }
}

fn hex_ids(ids: &[ChunkId]) -> Vec<String> {
    ids.iter().map(ChunkId::to_hex).collect()
}

async fn downstream_failure(node: &str, task: Downstream) -> pb::NodeFailure {
    let error = match task.await {
        Ok(Err(status)) => status.message().to_string(),
        Ok(Ok(_)) => "stream closed early".to_string(),
        Err(e) => e.to_string(),
    };
    pb::NodeFailure {
        node_id: node.to_string(),
        error,
    }
}

fn read_full(f: &mut std::fs::File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}
