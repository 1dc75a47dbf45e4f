//! Downloads: chunk locations come from the coordinator page by page; chunks are fetched in
//! parallel (bounded) and each is verified against its SHA-256 before a byte of it is
//! written (invariant 1). A replica that fails or returns wrong bytes is skipped for the
//! next one, and a wrong one is reported to the coordinator. Output stays in order; a
//! download to a file goes to a temporary file renamed into place when complete.

use std::path::{Path, PathBuf};

use bytes::{Bytes, BytesMut};
use futures::TryStreamExt;
use tokio::io::{AsyncWrite, AsyncWriteExt};

use super::progress::{OnProgress, Progress};
use super::{Client, ClientError, Result};
use crate::chunk::ChunkId;
use crate::model::Entry;
use crate::path::{DfsPath, ToDfsPath};
use crate::proto::pb;

/// Part of a file: from `offset`, `length` bytes (None = to the end).
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadRange {
    pub offset: u64,
    pub length: Option<u64>,
}

#[derive(Debug, Clone)]
pub struct GetReport {
    pub entry: Entry,
    /// Bytes written to the output.
    pub bytes: u64,
    /// Chunks fetched (each verified).
    pub chunks_fetched: usize,
    /// Replicas that failed or returned wrong bytes and were skipped.
    pub replicas_skipped: usize,
}

struct Fetched {
    data: Bytes,
    skipped: usize,
}

/// Chunks per GetFile page: 2 GiB at the default chunk size.
const PAGE_CHUNKS: u32 = 256;

impl Client {
    async fn file_page(&self, path: &DfsPath, start: u64) -> Result<pb::GetFileResponse> {
        let r = self
            .coordinator
            .clone()
            .get_file(self.request(pb::GetFileRequest {
                path: path.to_string(),
                start_chunk: start,
                // Pages are fetched as the download reaches them, and their read tokens
                // expire (coordinator.token_ttl): a small page is used up long before.
                max_chunks: PAGE_CHUNKS,
            }))
            .await
            .map_err(|s| self.coord_err(s))?;
        Ok(r.into_inner())
    }

    /// Writes the file at `path` (or a range of it) to `out`, in order.
    pub async fn get<W: AsyncWrite + Unpin>(
        &self,
        path: impl ToDfsPath,
        out: &mut W,
        range: ReadRange,
    ) -> Result<GetReport> {
        self.get_with_progress(path, out, range, &|_| {}).await
    }

    /// [`Client::get`], reporting the range's length, then the bytes written.
    pub async fn get_with_progress<W: AsyncWrite + Unpin>(
        &self,
        path: impl ToDfsPath,
        out: &mut W,
        range: ReadRange,
        on_progress: OnProgress<'_>,
    ) -> Result<GetReport> {
        let path = path.to_dfs_path()?;
        let first = self.file_page(&path, 0).await?;
        let entry = Entry::try_from(Self::required(first.entry.clone(), "GetFileResponse")?)?;
        if range.offset > entry.size {
            return Err(ClientError::Invalid(format!(
                "{path}: offset {} is beyond the end of the file ({} bytes)",
                range.offset, entry.size
            )));
        }
        let end = match range.length {
            Some(l) => range.offset.saturating_add(l).min(entry.size),
            None => entry.size,
        };
        let (start, version) = (range.offset, entry.version);
        on_progress(Progress::Total(end - start));

        // Chunk locations, page by page, keeping only the chunks the range needs.
        // The stream's futures own clones of the client (cheap), so they are 'static and the
        // whole download can run on a spawned task.
        let pager = self.clone();
        let pages = futures::stream::try_unfold((Some(first), 0u64), move |(page, next)| {
            let path = path.clone();
            let client = pager.clone();
            async move {
                let page = match page {
                    Some(p) => p,
                    None if next == u64::MAX => return Ok(None),
                    None => {
                        let p = client.file_page(&path, next).await?;
                        if p.entry.as_ref().map(|e| e.version) != Some(version) {
                            return Err(ClientError::Aborted(format!(
                                "{path}: file was replaced while being read; try again"
                            )));
                        }
                        p
                    }
                };
                let following = if page.truncated {
                    next + page.chunks.len() as u64
                } else {
                    u64::MAX
                };
                Ok(Some((
                    futures::stream::iter(page.chunks.into_iter().map(Ok::<_, ClientError>)),
                    (None, following),
                )))
            }
        })
        .try_flatten()
        .try_filter(move |c| futures::future::ready(c.offset + c.size > start && c.offset < end));

        let mut fetches = std::pin::pin!(pages
            .map_ok(|loc| {
                let client = self.clone();
                async move {
                    let fetched = client.fetch_chunk(&loc).await?;
                    Ok::<_, ClientError>((loc, fetched))
                }
            })
            .try_buffered(self.cfg.parallelism));

        let mut report = GetReport {
            entry,
            bytes: 0,
            chunks_fetched: 0,
            replicas_skipped: 0,
        };
        while let Some((loc, fetched)) = fetches.try_next().await? {
            let from = start.saturating_sub(loc.offset) as usize;
            let to = ((end - loc.offset) as usize).min(fetched.data.len());
            out.write_all(&fetched.data[from..to])
                .await
                .map_err(|e| ClientError::Io {
                    what: "write output".into(),
                    source: e,
                })?;
            on_progress(Progress::Advanced((to - from) as u64));
            report.bytes += (to - from) as u64;
            report.chunks_fetched += 1;
            report.replicas_skipped += fetched.skipped;
        }
        out.flush().await.map_err(|e| ClientError::Io {
            what: "write output".into(),
            source: e,
        })?;
        Ok(report)
    }

    /// Downloads to a local file (or into a local directory, under the file's name). The
    /// data lands in a temporary file next to the destination, renamed when complete.
    pub async fn get_to_file(
        &self,
        path: impl ToDfsPath,
        local: &Path,
        range: ReadRange,
    ) -> Result<(PathBuf, GetReport)> {
        self.get_to_file_with_progress(path, local, range, &|_| {})
            .await
    }

    /// [`Client::get_to_file`], reporting progress as [`Client::get_with_progress`] does.
    pub async fn get_to_file_with_progress(
        &self,
        path: impl ToDfsPath,
        local: &Path,
        range: ReadRange,
        on_progress: OnProgress<'_>,
    ) -> Result<(PathBuf, GetReport)> {
        let remote = path.to_dfs_path()?;
        let dest = if local.is_dir() {
            local.join(remote.name())
        } else {
            local.to_path_buf()
        };
        let dir = match dest.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let io = |what: String| move |e: std::io::Error| ClientError::Io { what, source: e };
        let tmp = tempfile::Builder::new()
            .prefix(".dfsd-get-")
            .tempfile_in(&dir)
            .map_err(io(format!("create temporary file in {}", dir.display())))?;
        let mut file =
            tokio::fs::File::from_std(tmp.reopen().map_err(io("open temporary file".into()))?);
        let report = self
            .get_with_progress(&remote, &mut file, range, on_progress)
            .await?;
        file.sync_all().await.map_err(io("fsync download".into()))?;
        drop(file);
        tmp.persist(&dest).map_err(|e| ClientError::Io {
            what: format!("rename into {}", dest.display()),
            source: e.error,
        })?;
        Ok((dest, report))
    }

    /// Fetches one chunk from the first replica that returns its exact bytes.
    async fn fetch_chunk(&self, loc: &pb::ChunkLocation) -> Result<Fetched> {
        let id: ChunkId = loc
            .chunk_id
            .parse()
            .map_err(|e: crate::chunk::InvalidChunkId| ClientError::Invalid(e.to_string()))?;
        let mut errors = Vec::new();
        let mut all_bad = true;
        for (i, replica) in loc.replicas.iter().enumerate() {
            match self.read_replica(id, loc.size, replica, &loc.token).await {
                Ok(data) => return Ok(Fetched { data, skipped: i }),
                Err((e, corrupt)) => {
                    tracing::warn!(chunk = %id, node = %replica.node_id, error = %e, "replica failed; trying the next");
                    if corrupt {
                        self.report_bad(id, &replica.node_id, &e).await;
                    }
                    all_bad &= corrupt;
                    errors.push(format!("{}: {e}", replica.node_id));
                }
            }
        }
        if errors.is_empty() {
            return Err(ClientError::Unavailable(format!(
                "chunk {id}: no live replica"
            )));
        }
        let message = format!(
            "chunk {id}: no replica returned intact data ({})",
            errors.join("; ")
        );
        // Every replica answered with wrong or missing bytes: an integrity failure. One that
        // could not be reached may still hold the chunk: the cluster is unavailable.
        Err(if all_bad {
            ClientError::Integrity(message)
        } else {
            ClientError::Unavailable(message)
        })
    }

    /// Reads and verifies one replica. The bool says whether the replica itself is bad
    /// (wrong bytes, missing) rather than unreachable.
    pub(super) async fn read_replica(
        &self,
        id: ChunkId,
        size: u64,
        replica: &pb::NodeAddr,
        token: &str,
    ) -> Result<Bytes, (String, bool)> {
        let (mut client, addr) = self
            .datanode_at(replica)
            .await
            .map_err(|e| (e.to_string(), false))?;
        let mut req = tonic::Request::new(pb::ReadChunkRequest {
            chunk_id: id.to_hex(),
            token: token.to_string(),
        });
        req.set_timeout(self.transfer_timeout());
        crate::grpc_layer::tag(&mut req);
        let mut stream = match client.read_chunk(req).await {
            Ok(r) => r.into_inner(),
            Err(s) => {
                let e = ClientError::from_status(s, "datanode", &addr);
                let bad = matches!(e, ClientError::NotFound(_));
                if e.peer_gone() {
                    self.peers.forget(&addr);
                }
                return Err((e.to_string(), bad));
            }
        };
        let mut buf = BytesMut::with_capacity(size as usize);
        loop {
            match stream.message().await {
                Ok(Some(m)) => {
                    if buf.len() as u64 + m.data.len() as u64 > size {
                        return Err((format!("replica is longer than {size} bytes"), true));
                    }
                    buf.extend_from_slice(&m.data);
                }
                Ok(None) => break,
                Err(s) => {
                    return Err((
                        ClientError::from_status(s, "datanode", &addr).to_string(),
                        false,
                    ))
                }
            }
        }
        if buf.len() as u64 != size {
            return Err((
                format!("replica has {} bytes, expected {size}", buf.len()),
                true,
            ));
        }
        let data = buf.freeze();
        let check = data.clone();
        let actual = tokio::task::spawn_blocking(move || ChunkId::of(&check))
            .await
            .map_err(|e| (e.to_string(), false))?;
        if actual != id {
            return Err((format!("replica bytes hash to {actual}"), true));
        }
        Ok(data)
    }

    async fn report_bad(&self, id: ChunkId, node: &str, reason: &str) {
        let req = pb::ReportBadReplicaRequest {
            chunk_id: id.to_hex(),
            node_id: node.to_string(),
            reason: reason.to_string(),
        };
        if let Err(s) = self
            .coordinator
            .clone()
            .report_bad_replica(self.request(req))
            .await
        {
            tracing::warn!(chunk = %id, node, error = %s.message(), "could not report a bad replica");
        }
    }
}
