//! Uploads: the input is read as a stream and cut into chunks, each hashed as it is read.
//! Ready chunks are placed in batches (one coordinator call for whatever is waiting), then
//! each is streamed once to the first datanode of its pipeline, which forwards it along.
//! A pipeline that loses a node is completed on replacement targets. When every chunk has
//! its replicas, the file is committed in one step; until then the namespace is unchanged.
//!
//! Memory: at most `parallelism` chunks are held at once, whatever the file size.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tonic::Code;

use super::{Client, ClientError, Result};
use crate::chunk::{ChunkId, FRAME_SIZE};
use crate::path::DfsPath;
use crate::proto::pb;

/// Attempts at completing one chunk's replicas after the first pipeline.
const MAX_REPLACEMENTS: usize = 4;

#[derive(Debug, Clone, Default)]
pub struct PutOptions {
    /// Replicas per chunk; 0 = the cluster default.
    pub replication: u32,
    /// Durable replicas needed to commit; 0 = the cluster default.
    pub write_quorum: u32,
    /// Fail if the path exists (atomically, at commit).
    pub no_clobber: bool,
    /// Commit only if the current version is this one (0 = must not exist).
    pub expected_version: Option<u64>,
    /// Chunk size; None = the client config's.
    pub chunk_size: Option<u64>,
    /// Attributes committed with the file (see `pb::Entry::attrs`).
    pub attrs: crate::meta::Attrs,
}

#[derive(Debug, Clone)]
pub struct PutReport {
    pub entry: pb::Entry,
    pub chunks: usize,
    /// Chunks whose bytes were sent.
    pub uploaded_chunks: usize,
    /// Chunks found already stored with enough replicas: no bytes sent.
    pub deduplicated_chunks: usize,
    /// Chunk bytes this client sent (each byte once, whatever the replication).
    pub bytes_sent: u64,
}

struct Pending {
    index: usize,
    id: ChunkId,
    data: Bytes,
    permit: OwnedSemaphorePermit,
}

#[derive(Debug)]
struct Stored {
    index: usize,
    id: ChunkId,
    size: u64,
    sent: bool,
    /// Proof that this key may commit the chunk (from a datanode that stored it, or the
    /// coordinator's grant). A chunk repeated within the file needs it once.
    receipt: Option<pb::Receipt>,
}

/// Reads until `buf` holds `want` bytes or the input ends.
async fn fill<R: AsyncRead + Unpin>(r: &mut R, want: usize) -> std::io::Result<Bytes> {
    let mut buf = BytesMut::with_capacity(want);
    while buf.len() < want {
        let n = r.read_buf(&mut buf).await?;
        if n == 0 {
            break;
        }
        // The buffer's capacity is exactly `want`, so a read never crosses a chunk boundary.
        debug_assert!(buf.len() <= want);
    }
    Ok(buf.freeze())
}

impl Client {
    /// Stores everything `input` yields at `path`.
    pub async fn put<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
        path: &str,
        opts: &PutOptions,
    ) -> Result<PutReport> {
        self.put_with(input, path, opts, |_| Ok(())).await
    }

    /// Like [`Client::put`], with `finish` called once the input has ended and every chunk
    /// is stored, just before the commit: it may add attributes computed from the data
    /// (a digest, say) or refuse the commit (`Err(reason)`: the upload is aborted and
    /// the error is [`ClientError::Refused`]).
    pub async fn put_with<R, F>(
        &self,
        mut input: R,
        path: &str,
        opts: &PutOptions,
        finish: F,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(&mut crate::meta::Attrs) -> std::result::Result<(), String> + Send,
    {
        let path = DfsPath::parse_lenient(path)?;
        let chunk_size = opts.chunk_size.unwrap_or(self.cfg.chunk_size);
        if chunk_size == 0 {
            return Err(ClientError::Invalid("chunk size must be positive".into()));
        }
        let begin = self
            .coordinator
            .clone()
            .begin_upload(self.request(pb::BeginUploadRequest {
                path: path.to_string(),
                replication: opts.replication,
                write_quorum: opts.write_quorum,
                no_clobber: opts.no_clobber,
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        if chunk_size > begin.max_chunk_size {
            return Err(ClientError::Invalid(format!(
                "chunk size {chunk_size} exceeds the cluster's maximum of {} bytes",
                begin.max_chunk_size
            )));
        }
        let upload_id = begin.upload_id.clone();
        let mut attrs = opts.attrs.clone();
        let result = match self
            .upload_chunks(&mut input, &begin, chunk_size as usize)
            .await
        {
            Ok(stored) => finish(&mut attrs)
                .map(|()| stored)
                .map_err(ClientError::Refused),
            Err(e) => Err(e),
        };
        let stored = match result {
            Ok(s) => s,
            Err(e) => {
                let _ = self
                    .coordinator
                    .clone()
                    .abort_upload(self.request(pb::AbortUploadRequest { upload_id }))
                    .await;
                return Err(e);
            }
        };
        let refs: Vec<pb::ChunkRef> = stored
            .iter()
            .map(|s| pb::ChunkRef {
                chunk_id: s.id.to_hex(),
                size: s.size,
                receipt: s.receipt.clone(),
            })
            .collect();
        let size: u64 = stored.iter().map(|s| s.size).sum();
        let entry = self
            .commit(&path, &begin, &refs, size, opts, &attrs)
            .await?;
        let uploaded = stored.iter().filter(|s| s.sent).count();
        Ok(PutReport {
            entry,
            chunks: stored.len(),
            uploaded_chunks: uploaded,
            deduplicated_chunks: stored.len() - uploaded,
            bytes_sent: stored.iter().filter(|s| s.sent).map(|s| s.size).sum(),
        })
    }

    /// Stores a local file at `path`.
    pub async fn put_file(
        &self,
        local: &std::path::Path,
        path: &str,
        opts: &PutOptions,
    ) -> Result<PutReport> {
        let f = tokio::fs::File::open(local)
            .await
            .map_err(|e| ClientError::Io {
                what: format!("open {}", local.display()),
                source: e,
            })?;
        self.put(f, path, opts).await
    }

    async fn commit(
        &self,
        path: &DfsPath,
        begin: &pb::BeginUploadResponse,
        refs: &[pb::ChunkRef],
        size: u64,
        opts: &PutOptions,
        attrs: &crate::meta::Attrs,
    ) -> Result<pb::Entry> {
        let commit = |upload_id: String| pb::CommitUploadRequest {
            upload_id,
            chunks: refs.to_vec(),
            size,
            no_clobber: opts.no_clobber,
            expected_version: opts.expected_version,
            attrs: attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut first = self
            .coordinator
            .clone()
            .commit_upload(self.request(commit(begin.upload_id.clone())))
            .await;
        // A node that died after storing some chunks (and was declared dead before the
        // commit) leaves them below the write quorum: read them back from a surviving
        // replica, store them on other nodes, and commit again.
        for _ in 0..3 {
            match &first {
                Err(s)
                    if s.code() == Code::FailedPrecondition
                        && s.message().contains("durable replica(s) on record") =>
                {
                    tracing::warn!(error = %s.message(), "chunks fell below the write quorum before commit; re-replicating them");
                    self.top_up(begin, refs).await?;
                    first = self
                        .coordinator
                        .clone()
                        .commit_upload(self.request(commit(begin.upload_id.clone())))
                        .await;
                }
                _ => break,
            }
        }
        let resp = match first {
            Ok(r) => r,
            // The coordinator restarted and forgot the upload: its chunks are stored, so a
            // new upload finds them all in place and commits them.
            Err(s) if s.code() == Code::NotFound && s.message().contains("upload") => {
                let again = self
                    .coordinator
                    .clone()
                    .begin_upload(self.request(pb::BeginUploadRequest {
                        path: path.to_string(),
                        replication: begin.replication,
                        write_quorum: begin.write_quorum,
                        no_clobber: opts.no_clobber,
                    }))
                    .await
                    .map_err(|s| self.coord_err(s))?
                    .into_inner();
                self.coordinator
                    .clone()
                    .commit_upload(self.request(commit(again.upload_id)))
                    .await
                    .map_err(|s| self.coord_err(s))?
            }
            Err(s) => return Err(self.coord_err(s)),
        };
        resp.into_inner()
            .entry
            .ok_or_else(|| ClientError::Invalid("empty commit response".into()))
    }

    /// Brings every chunk of `refs` back to its write quorum, one chunk in memory at a time.
    async fn top_up(&self, begin: &pb::BeginUploadResponse, refs: &[pb::ChunkRef]) -> Result<()> {
        let quorum = begin.write_quorum as usize;
        for batch in refs.chunks(1024) {
            let placements = self
                .place(&begin.upload_id, batch.to_vec(), Vec::new())
                .await?;
            for (r, p) in batch.iter().zip(placements) {
                if p.existing.len() >= quorum || p.targets.is_empty() {
                    continue;
                }
                let id: ChunkId =
                    r.chunk_id
                        .parse()
                        .map_err(|e: crate::chunk::InvalidChunkId| {
                            ClientError::Invalid(e.to_string())
                        })?;
                let mut data = None;
                for replica in &p.existing_replicas {
                    if let Ok(d) = self.read_replica(id, r.size, replica, &p.read_token).await {
                        data = Some(d);
                        break;
                    }
                }
                let Some(data) = data else {
                    return Err(ClientError::Integrity(format!(
                        "chunk {id}: below its write quorum and no replica could be read back"
                    )));
                };
                self.store_chunk(begin, id, data, p, r.receipt.clone())
                    .await?;
            }
        }
        Ok(())
    }

    async fn upload_chunks<R: AsyncRead + Unpin + Send>(
        &self,
        input: &mut R,
        begin: &pb::BeginUploadResponse,
        chunk_size: usize,
    ) -> Result<Vec<Stored>> {
        let permits = Arc::new(Semaphore::new(self.cfg.parallelism));
        let (ready_tx, ready_rx) = mpsc::channel::<Pending>(self.cfg.parallelism);
        let placer = tokio::spawn(self.clone().place_and_send(begin.clone(), ready_rx));

        let mut index = 0;
        let read_result: Result<()> = async {
            loop {
                let permit = permits
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("semaphore open");
                let data = fill(input, chunk_size).await.map_err(|e| ClientError::Io {
                    what: "read input".into(),
                    source: e,
                })?;
                if data.is_empty() {
                    return Ok(());
                }
                let last = data.len() < chunk_size;
                let hashed = data.clone();
                let id = tokio::task::spawn_blocking(move || ChunkId::of(&hashed))
                    .await
                    .map_err(|e| ClientError::Invalid(format!("hash task: {e}")))?;
                if ready_tx
                    .send(Pending {
                        index,
                        id,
                        data,
                        permit,
                    })
                    .await
                    .is_err()
                {
                    return Ok(()); // the placer stopped on an error; it reports it
                }
                index += 1;
                if last {
                    return Ok(());
                }
            }
        }
        .await;
        drop(ready_tx);
        let placed = placer
            .await
            .map_err(|e| ClientError::Invalid(format!("upload task: {e}")))?;
        read_result?;
        let mut stored = placed?;
        stored.sort_by_key(|s| s.index);
        Ok(stored)
    }

    /// Places whatever chunks are ready in one call, then sends each on its own task.
    async fn place_and_send(
        self,
        begin: pb::BeginUploadResponse,
        mut ready: mpsc::Receiver<Pending>,
    ) -> Result<Vec<Stored>> {
        let mut tasks: JoinSet<Result<Stored>> = JoinSet::new();
        let mut done: Vec<Stored> = Vec::new();
        let mut failure: Option<ClientError> = None;
        // Receipts of chunks this upload has stored: a chunk that repeats within the input
        // (zeros, say) is sent once.
        let mut known: HashMap<ChunkId, pb::Receipt> = HashMap::new();
        let mut finished = |s: Stored, known: &mut HashMap<ChunkId, pb::Receipt>| {
            if let Some(r) = &s.receipt {
                known.entry(s.id).or_insert_with(|| r.clone());
            }
            done.push(s);
        };
        while let Some(first) = ready.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = ready.try_recv() {
                batch.push(more);
            }
            let (repeats, batch): (Vec<Pending>, Vec<Pending>) =
                batch.into_iter().partition(|p| known.contains_key(&p.id));
            for p in repeats {
                let receipt = known.get(&p.id).cloned();
                let stored = Stored {
                    index: p.index,
                    id: p.id,
                    size: p.data.len() as u64,
                    sent: false,
                    receipt,
                };
                finished(stored, &mut known);
            }
            if batch.is_empty() {
                continue;
            }
            let refs = batch
                .iter()
                .map(|p| pb::ChunkRef {
                    chunk_id: p.id.to_hex(),
                    size: p.data.len() as u64,
                    receipt: None,
                })
                .collect();
            let placements = match self.place(&begin.upload_id, refs, Vec::new()).await {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            for (pending, placement) in batch.into_iter().zip(placements) {
                let client = self.clone();
                let begin = begin.clone();
                tasks.spawn(async move {
                    let Pending {
                        index,
                        id,
                        data,
                        permit,
                    } = pending;
                    let size = data.len() as u64;
                    let (sent, receipt) = client
                        .store_chunk(&begin, id, data, placement, None)
                        .await?;
                    drop(permit);
                    Ok(Stored {
                        index,
                        id,
                        size,
                        sent,
                        receipt,
                    })
                });
            }
            // Collect finished chunks as we go so an error stops the upload early.
            while let Some(r) = tasks.try_join_next() {
                match r {
                    Ok(Ok(s)) => finished(s, &mut known),
                    Ok(Err(e)) => failure = Some(e),
                    Err(e) => failure = Some(ClientError::Invalid(format!("chunk task: {e}"))),
                }
            }
            if failure.is_some() {
                break;
            }
        }
        if let Some(e) = failure {
            tasks.abort_all();
            return Err(e);
        }
        while let Some(r) = tasks.join_next().await {
            match r {
                Ok(Ok(s)) => finished(s, &mut known),
                Ok(Err(e)) => {
                    tasks.abort_all();
                    return Err(e);
                }
                Err(e) => return Err(ClientError::Invalid(format!("chunk task: {e}"))),
            }
        }
        Ok(done)
    }

    async fn place(
        &self,
        upload_id: &str,
        chunks: Vec<pb::ChunkRef>,
        exclude: Vec<String>,
    ) -> Result<Vec<pb::ChunkPlacement>> {
        let n = chunks.len();
        let resp = self
            .coordinator
            .clone()
            .place_chunks(self.request(pb::PlaceChunksRequest {
                upload_id: upload_id.to_string(),
                chunks,
                exclude_nodes: exclude,
            }))
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        if resp.placements.len() != n {
            return Err(ClientError::Invalid(format!(
                "coordinator placed {} of {n} chunks",
                resp.placements.len()
            )));
        }
        Ok(resp.placements)
    }

    /// Gets one chunk to its replication factor (at least the write quorum), replacing
    /// failed pipeline nodes. Returns whether any bytes were sent, and a receipt for the
    /// commit (`receipt` is one the caller already holds, if any).
    async fn store_chunk(
        &self,
        begin: &pb::BeginUploadResponse,
        id: ChunkId,
        data: Bytes,
        mut placement: pb::ChunkPlacement,
        mut receipt: Option<pb::Receipt>,
    ) -> Result<(bool, Option<pb::Receipt>)> {
        let want = begin.replication as usize;
        let quorum = begin.write_quorum as usize;
        if receipt.is_none() {
            receipt = placement.receipt.clone();
        }
        let mut holders: HashSet<String> = placement.existing.iter().cloned().collect();
        let mut failed: HashSet<String> = HashSet::new();
        let mut errors: Vec<String> = Vec::new();
        let mut sent = false;
        for attempt in 0..=MAX_REPLACEMENTS {
            let targets: Vec<pb::NodeAddr> = placement
                .targets
                .iter()
                .filter(|t| !holders.contains(&t.node_id))
                .cloned()
                .collect();
            if !targets.is_empty() {
                sent = true;
                match self
                    .send_pipeline(id, &data, &targets, &placement, &begin.owner)
                    .await
                {
                    Ok(resp) => {
                        holders.extend(resp.stored_on.iter().cloned());
                        if receipt.is_none() {
                            receipt = resp.receipts.into_iter().next();
                        }
                        // Only nodes that failed are excluded; those after a failed node in
                        // the pipeline never saw the chunk and may still take it.
                        for f in resp.failures {
                            errors.push(format!("{}: {}", f.node_id, f.error));
                            failed.insert(f.node_id);
                        }
                    }
                    // Bad bytes or a refused token: another node would say the same.
                    Err(e)
                        if matches!(
                            e.code(),
                            Some(
                                Code::InvalidArgument
                                    | Code::Unauthenticated
                                    | Code::PermissionDenied
                            )
                        ) =>
                    {
                        return Err(e)
                    }
                    Err(e) => {
                        errors.push(format!("{}: {e}", targets[0].node_id));
                        failed.insert(targets[0].node_id.clone());
                    }
                }
            }
            if holders.len() >= want {
                return Ok((sent, receipt));
            }
            if attempt == MAX_REPLACEMENTS {
                break;
            }
            let mut exclude: Vec<String> = failed.iter().cloned().collect();
            exclude.extend(holders.iter().cloned());
            let refs = vec![pb::ChunkRef {
                chunk_id: id.to_hex(),
                size: data.len() as u64,
                receipt: receipt.clone(),
            }];
            match self.place(&begin.upload_id, refs, exclude).await {
                Ok(mut p) => {
                    placement = p.remove(0);
                    if receipt.is_none() {
                        receipt = placement.receipt.clone();
                    }
                    holders.extend(placement.existing.iter().cloned());
                    if placement.targets.is_empty() && holders.len() < want {
                        break; // no other node to try
                    }
                }
                Err(e) if holders.len() >= quorum => {
                    tracing::debug!(chunk = %id, error = %e, "no replacement target; quorum met");
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if holders.len() >= quorum {
            tracing::warn!(chunk = %id, replicas = holders.len(), want, "chunk stored below its replication factor");
            return Ok((sent, receipt));
        }
        Err(ClientError::Remote {
            code: Code::Unavailable,
            message: format!(
                "chunk {id}: only {} of the {quorum} required replicas could be written ({})",
                holders.len(),
                if errors.is_empty() {
                    "no usable datanodes".to_string()
                } else {
                    errors.join("; ")
                }
            ),
        })
    }

    /// Streams a chunk to the first node of `targets` (some of `placement`'s), which
    /// forwards it along the rest.
    async fn send_pipeline(
        &self,
        id: ChunkId,
        data: &Bytes,
        targets: &[pb::NodeAddr],
        placement: &pb::ChunkPlacement,
        owner: &str,
    ) -> Result<pb::WriteChunkResponse> {
        let first = &targets[0];
        let mut client = self.datanode(&first.addr)?;
        let header = pb::WriteChunkHeader {
            chunk_id: id.to_hex(),
            size: data.len() as u64,
            downstream: targets[1..].to_vec(),
            token: placement.token.clone(),
            owner: owner.to_string(),
            targets: placement.targets.clone(),
        };
        let mut msgs = Vec::with_capacity(1 + data.len() / FRAME_SIZE + 1);
        msgs.push(pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(header)),
        });
        let mut off = 0;
        while off < data.len() {
            let end = (off + FRAME_SIZE).min(data.len());
            msgs.push(pb::WriteChunkRequest {
                msg: Some(pb::write_chunk_request::Msg::Data(data.slice(off..end))),
            });
            off = end;
        }
        msgs.push(pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::End(true)),
        });
        let mut req = tonic::Request::new(futures::stream::iter(msgs));
        req.set_timeout(self.transfer_timeout());
        crate::grpc_layer::tag(&mut req);
        match client.write_chunk(req).await {
            Ok(r) => Ok(r.into_inner()),
            Err(s) => {
                if s.code() == Code::Unavailable {
                    self.peers.forget(&first.addr);
                }
                Err(ClientError::from_status(s, "datanode", &first.addr))
            }
        }
    }
}
