//! Uploads: the input is read as a stream and cut into chunks, each hashed as it is read.
//! Ready chunks are placed in batches (one coordinator call for whatever is waiting), then
//! each is streamed once to the first datanode of its pipeline, which forwards it along.
//! A pipeline that loses a node is completed on replacement targets. When every chunk has
//! its replicas, the file is committed in one step; until then the namespace is unchanged.
//!
//! Memory: at most `parallelism` chunks are held at once, whatever the file size.

use std::collections::HashSet;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use super::progress::{Counted, OnProgress, Progress};
use super::session::Session;
use super::{Client, ClientError, Result};
use crate::chunk::{ChunkId, FRAME_SIZE};
use crate::model::Entry;
use crate::path::ToDfsPath;
use crate::proto::pb;
use crate::wire_error::Reason;

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
    /// Attributes committed with the file (see [`Entry::attrs`]).
    pub attrs: crate::model::Attrs,
}

#[derive(Debug, Clone)]
pub struct PutReport {
    pub entry: Entry,
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
        path: impl ToDfsPath,
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
        path: impl ToDfsPath,
        opts: &PutOptions,
        finish: F,
    ) -> Result<PutReport>
    where
        R: AsyncRead + Unpin + Send,
        F: FnOnce(&mut crate::model::Attrs) -> std::result::Result<(), String> + Send,
    {
        let path = path.to_dfs_path()?;
        let chunk_size = opts.chunk_size.unwrap_or(self.cfg.chunk_size);
        if chunk_size == 0 {
            return Err(ClientError::Invalid("chunk size must be positive".into()));
        }
        let request = pb::BeginUploadRequest {
            path: path.to_string(),
            replication: opts.replication,
            write_quorum: opts.write_quorum,
            no_clobber: opts.no_clobber,
        };
        let session = Arc::new(Session::begin(self, request).await?);
        let max = session.info().max_chunk_size;
        if chunk_size > max {
            session.abort().await;
            return Err(ClientError::Invalid(format!(
                "chunk size {chunk_size} exceeds the cluster's maximum of {max} bytes"
            )));
        }
        let mut attrs = opts.attrs.clone();
        let result = match self
            .upload_chunks(&mut input, &session, chunk_size as usize)
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
                session.abort().await;
                return Err(e);
            }
        };
        let refs: Vec<pb::ChunkRef> = stored
            .iter()
            .map(|s| pb::ChunkRef {
                chunk_id: s.id.to_hex(),
                size: s.size,
                receipt: None,
            })
            .collect();
        let size: u64 = stored.iter().map(|s| s.size).sum();
        let entry = self.commit(&session, &refs, size, opts, &attrs).await?;
        let uploaded = stored.iter().filter(|s| s.sent).count();
        Ok(PutReport {
            entry,
            chunks: stored.len(),
            uploaded_chunks: uploaded,
            deduplicated_chunks: stored.len() - uploaded,
            bytes_sent: stored.iter().filter(|s| s.sent).map(|s| s.size).sum(),
        })
    }

    /// [`Client::put`], reporting the bytes read from `input` as they are read.
    pub async fn put_with_progress<R: AsyncRead + Unpin + Send>(
        &self,
        input: R,
        path: impl ToDfsPath,
        opts: &PutOptions,
        on_progress: OnProgress<'_>,
    ) -> Result<PutReport> {
        let input = Counted {
            inner: input,
            on_progress,
        };
        self.put(input, path, opts).await
    }

    /// Stores a local file at `path`.
    pub async fn put_file(
        &self,
        local: &std::path::Path,
        path: impl ToDfsPath,
        opts: &PutOptions,
    ) -> Result<PutReport> {
        self.put_file_with_progress(local, path, opts, &|_| {})
            .await
    }

    /// [`Client::put_file`], reporting the file's size, then the bytes read.
    pub async fn put_file_with_progress(
        &self,
        local: &std::path::Path,
        path: impl ToDfsPath,
        opts: &PutOptions,
        on_progress: OnProgress<'_>,
    ) -> Result<PutReport> {
        let f = tokio::fs::File::open(local)
            .await
            .map_err(|e| ClientError::Io {
                what: format!("open {}", local.display()),
                source: e,
            })?;
        match f.metadata().await {
            Ok(m) if m.is_file() => on_progress(Progress::Total(m.len())),
            _ => {}
        }
        self.put_with_progress(f, path, opts, on_progress).await
    }

    async fn commit(
        &self,
        session: &Session,
        refs: &[pb::ChunkRef],
        size: u64,
        opts: &PutOptions,
        attrs: &crate::model::Attrs,
    ) -> Result<Entry> {
        let commit = || pb::CommitUploadRequest {
            upload_id: String::new(),
            chunks: refs.to_vec(),
            size,
            no_clobber: opts.no_clobber,
            expected_version: opts.expected_version,
            attrs: attrs.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
        };
        let mut result = session.commit(commit()).await;
        // A node that died after storing some chunks (and was declared dead before the
        // commit) leaves them below the write quorum: read them back from a surviving
        // replica, store them on other nodes, and commit again.
        for _ in 0..3 {
            match &result {
                Err(s) if crate::wire_error::reason(s) == Reason::QuorumNotMet => {
                    tracing::warn!(error = %s.message(), "chunks fell below the write quorum before commit; re-replicating them");
                    self.top_up(session, refs).await?;
                    result = session.commit(commit()).await;
                }
                _ => break,
            }
        }
        Ok(result.map_err(|s| self.coord_err(s))?.try_into()?)
    }

    /// Brings every chunk of `refs` back to its write quorum, one chunk in memory at a time.
    async fn top_up(&self, session: &Session, refs: &[pb::ChunkRef]) -> Result<()> {
        let quorum = session.info().write_quorum as usize;
        let mut seen = HashSet::new();
        let mut distinct = Vec::new();
        for r in refs {
            let id: ChunkId = r
                .chunk_id
                .parse()
                .map_err(|e: crate::chunk::InvalidChunkId| ClientError::Invalid(e.to_string()))?;
            if seen.insert(id) {
                distinct.push((id, r.size));
            }
        }
        for batch in distinct.chunks(1024) {
            let claims = batch
                .iter()
                .map(|(id, size)| pb::ChunkRef {
                    chunk_id: id.to_hex(),
                    size: *size,
                    receipt: session.receipt(id),
                })
                .collect();
            let placements = session.place(claims, Vec::new()).await?;
            for (&(id, size), p) in batch.iter().zip(placements) {
                if p.existing.len() >= quorum || p.targets.is_empty() {
                    continue;
                }
                let mut data = None;
                for replica in &p.existing_replicas {
                    if let Ok(d) = self.read_replica(id, size, replica, &p.read_token).await {
                        data = Some(d);
                        break;
                    }
                }
                let Some(data) = data else {
                    return Err(ClientError::Integrity(format!(
                        "chunk {id}: below its write quorum and no replica could be read back"
                    )));
                };
                self.store_chunk(session, id, data, p).await?;
            }
        }
        Ok(())
    }

    async fn upload_chunks<R: AsyncRead + Unpin + Send>(
        &self,
        input: &mut R,
        session: &Arc<Session>,
        chunk_size: usize,
    ) -> Result<Vec<Stored>> {
        let permits = Arc::new(Semaphore::new(self.cfg.parallelism));
        let (ready_tx, ready_rx) = mpsc::channel::<Pending>(self.cfg.parallelism);
        let placer = tokio::spawn(self.clone().place_and_send(session.clone(), ready_rx));

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

    /// Places whatever chunks are ready in one call, then sends each on its own task. A
    /// chunk that repeats within the input (zeros, say) and is already stored is not sent
    /// again.
    async fn place_and_send(
        self,
        session: Arc<Session>,
        mut ready: mpsc::Receiver<Pending>,
    ) -> Result<Vec<Stored>> {
        let mut tasks: JoinSet<Result<Stored>> = JoinSet::new();
        let mut done: Vec<Stored> = Vec::new();
        let mut failure: Option<ClientError> = None;
        while let Some(first) = ready.recv().await {
            let mut batch = vec![first];
            while let Ok(more) = ready.try_recv() {
                batch.push(more);
            }
            let (repeats, batch): (Vec<Pending>, Vec<Pending>) = batch
                .into_iter()
                .partition(|p| session.receipt(&p.id).is_some());
            done.extend(repeats.into_iter().map(|p| Stored {
                index: p.index,
                id: p.id,
                size: p.data.len() as u64,
                sent: false,
            }));
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
            let placements = match session.place(refs, Vec::new()).await {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            };
            for (pending, placement) in batch.into_iter().zip(placements) {
                let client = self.clone();
                let session = session.clone();
                tasks.spawn(async move {
                    let Pending {
                        index,
                        id,
                        data,
                        permit,
                    } = pending;
                    let size = data.len() as u64;
                    let sent = client.store_chunk(&session, id, data, placement).await?;
                    drop(permit);
                    Ok(Stored {
                        index,
                        id,
                        size,
                        sent,
                    })
                });
            }
            // Collect finished chunks as we go so an error stops the upload early.
            while let Some(r) = tasks.try_join_next() {
                match r {
                    Ok(Ok(s)) => done.push(s),
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
                Ok(Ok(s)) => done.push(s),
                Ok(Err(e)) => {
                    tasks.abort_all();
                    return Err(e);
                }
                Err(e) => return Err(ClientError::Invalid(format!("chunk task: {e}"))),
            }
        }
        Ok(done)
    }

    /// Gets one chunk to its replication factor (at least the write quorum), replacing
    /// failed pipeline nodes, and records its receipt in the session. Returns whether any
    /// bytes were sent.
    async fn store_chunk(
        &self,
        session: &Session,
        id: ChunkId,
        data: Bytes,
        mut placement: pb::ChunkPlacement,
    ) -> Result<bool> {
        let begin = session.info();
        let want = begin.replication as usize;
        let quorum = begin.write_quorum as usize;
        let size = data.len() as u64;
        if let Some(grant) = placement.receipt.take() {
            session.record(id, size, grant, false);
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
                        if let Some(r) = resp.receipts.into_iter().next() {
                            session.record(id, size, r, true);
                        }
                        // Only nodes that failed are excluded; those after a failed node in
                        // the pipeline never saw the chunk and may still take it.
                        for f in resp.failures {
                            errors.push(format!("{}: {}", f.node_id, f.error));
                            failed.insert(f.node_id);
                        }
                    }
                    // Bad bytes or a refused token: another node would say the same.
                    Err(
                        e @ (ClientError::Rejected(_)
                        | ClientError::Integrity(_)
                        | ClientError::NotAuthenticated(_)
                        | ClientError::PermissionDenied(_)),
                    ) => return Err(e),
                    Err(e) => {
                        errors.push(format!("{}: {e}", targets[0].node_id));
                        failed.insert(targets[0].node_id.clone());
                    }
                }
            }
            if holders.len() >= want {
                return Ok(sent);
            }
            if attempt == MAX_REPLACEMENTS {
                break;
            }
            let mut exclude: Vec<String> = failed.iter().cloned().collect();
            exclude.extend(holders.iter().cloned());
            let refs = vec![pb::ChunkRef {
                chunk_id: id.to_hex(),
                size,
                receipt: session.receipt(&id),
            }];
            match session.place(refs, exclude).await {
                Ok(mut p) => {
                    placement = p.remove(0);
                    if let Some(grant) = placement.receipt.take() {
                        session.record(id, size, grant, false);
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
                // No node left to take the replica: the chunk stays below its quorum.
                Err(ClientError::Unavailable(why)) => {
                    errors.push(why);
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        if holders.len() >= quorum {
            tracing::warn!(chunk = %id, replicas = holders.len(), want, "chunk stored below its replication factor");
            return Ok(sent);
        }
        Err(ClientError::QuorumNotMet(format!(
            "chunk {id}: only {} of the {quorum} required replicas could be written ({})",
            holders.len(),
            if errors.is_empty() {
                "no usable datanodes".to_string()
            } else {
                errors.join("; ")
            }
        )))
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
        let (mut client, first_addr) = self.datanode_at(&targets[0]).await?;
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
                let e = ClientError::from_status(s, "datanode", &first_addr);
                if e.peer_gone() {
                    self.peers.forget(&first_addr);
                }
                Err(e)
            }
        }
    }
}
