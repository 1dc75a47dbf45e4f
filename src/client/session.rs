//! One upload as the client sees it. The coordinator keeps uploads in memory and may forget
//! one (a restart, or an upload idle or older than its limits), but what was stored is not
//! lost with it: receipts are bound to the access key, not to the upload. So a session that
//! finds its upload gone begins a new one, reports its receipts again and carries on.
//!
//! The session also reports the chunks it stored with its next placement (`stored`), which
//! keeps them from garbage collection until the commit however long the upload takes.
//!
//! A coordinator that restarts is waited for, up to [`COORDINATOR_WAIT`]: BeginUpload and
//! PlaceChunks are sent again after any connection failure (both are safe to repeat), the
//! commit only after a refused connection, which carried no request (a commit cut off
//! mid-call may have happened; the caller sees that error).

use crate::sync::{Locked, ReadWriteLocked};
use std::collections::HashMap;
use std::sync::{Mutex, RwLock};

use tonic::Code;

use super::{Client, ClientError, Result};
use crate::chunk::ChunkId;
use crate::proto::pb;
use crate::wire_error::Reason;

/// Most chunks (and stored chunks) one placement may name; the coordinator's limit.
const BATCH_MAX: usize = 4096;

pub(super) struct Session {
    client: Client,
    /// What began the upload, to begin it again.
    request: pb::BeginUploadRequest,
    begin: RwLock<pb::BeginUploadResponse>,
    /// The receipt of every chunk stored or granted so far, by id.
    receipts: Mutex<HashMap<ChunkId, pb::ChunkRef>>,
    /// Stored chunks the coordinator has not been told of yet.
    unreported: Mutex<Vec<pb::ChunkRef>>,
    /// One re-begin at a time: tasks that all find the upload gone begin one new upload.
    renewing: tokio::sync::Mutex<()>,
}

/// How long a session waits for a coordinator that refuses connections.
const COORDINATOR_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

/// How a failed call reached (or did not reach) the coordinator.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Only when the connection was refused: the request was never sent.
    Refused,
    /// After any connection failure (refused, reset, aborted): for calls safe to repeat.
    Connection,
}

/// The kind of the I/O error under a transport failure, if there is one.
fn io_kind(s: &tonic::Status) -> Option<std::io::ErrorKind> {
    if s.code() != Code::Unavailable {
        return None;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(s);
    while let Some(e) = src {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        src = e.source();
    }
    None
}

impl Retry {
    fn applies(self, s: &tonic::Status) -> bool {
        use std::io::ErrorKind::*;
        match (self, io_kind(s)) {
            (_, Some(ConnectionRefused)) => true,
            (Retry::Connection, Some(k)) => {
                matches!(
                    k,
                    ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected
                )
            }
            _ => false,
        }
    }
}

/// Runs `call` until it fails other than as `retry` allows, or [`COORDINATOR_WAIT`] has
/// passed (then its last answer).
async fn while_down<T, F, Fut>(retry: Retry, call: F) -> std::result::Result<T, tonic::Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, tonic::Status>>,
{
    crate::retry::Backoff::patient(COORDINATOR_WAIT)
        .retry(
            call,
            |s| retry.applies(s),
            |_, pause| tracing::warn!("the coordinator is unreachable; retrying in {pause:?}"),
        )
        .await
}

/// True for the coordinator's "unknown upload" answer.
fn upload_gone(s: &tonic::Status) -> bool {
    crate::wire_error::reason(s) == Reason::UploadUnknown
}

impl Session {
    pub(super) async fn begin(client: &Client, request: pb::BeginUploadRequest) -> Result<Session> {
        let begin = client.begin_upload(&request).await?;
        Ok(Session {
            client: client.clone(),
            request,
            begin: RwLock::new(begin),
            receipts: Mutex::default(),
            unreported: Mutex::default(),
            renewing: tokio::sync::Mutex::new(()),
        })
    }

    /// The coordinator's answer to the (latest) BeginUpload.
    pub(super) fn info(&self) -> pb::BeginUploadResponse {
        self.begin.read_locked().clone()
    }

    pub(super) fn id(&self) -> String {
        self.begin.read_locked().upload_id.clone()
    }

    /// Records the receipt of a chunk stored (`report`: by a datanode, to be reported to
    /// the coordinator) or granted by the coordinator.
    pub(super) fn record(&self, id: ChunkId, size: u64, receipt: pb::Receipt, report: bool) {
        let r = pb::ChunkRef {
            chunk_id: id.to_hex(),
            size,
            receipt: Some(receipt),
        };
        let mut receipts = self.receipts.locked();
        if receipts.insert(id, r.clone()).is_none() && report {
            self.unreported.locked().push(r);
        }
    }

    pub(super) fn receipt(&self, id: &ChunkId) -> Option<pb::Receipt> {
        let receipts = self.receipts.locked();
        receipts.get(id).and_then(|r| r.receipt.clone())
    }

    /// Begins a new upload unless another task already replaced `stale`; everything stored
    /// so far is to be reported again.
    pub(super) async fn renew(&self, stale: &str) -> Result<()> {
        let _one = self.renewing.lock().await;
        if self.id() != stale {
            return Ok(());
        }
        let begin = self.client.begin_upload(&self.request).await?;
        tracing::warn!(old = %stale, new = %begin.upload_id, "the coordinator forgot the upload; continuing under a new one");
        *self.begin.write_locked() = begin;
        let all: Vec<pb::ChunkRef> = self.receipts.locked().values().cloned().collect();
        *self.unreported.locked() = all;
        Ok(())
    }

    fn take_unreported(&self) -> (Vec<pb::ChunkRef>, bool) {
        let mut pending = self.unreported.locked();
        let n = pending.len().min(BATCH_MAX);
        let batch: Vec<pb::ChunkRef> = pending.drain(..n).collect();
        (batch, !pending.is_empty())
    }

    fn give_back(&self, batch: Vec<pb::ChunkRef>) {
        self.unreported.locked().extend(batch);
    }

    /// Places `chunks`, reporting what was stored since the last placement; begins the
    /// upload again (once) if the coordinator forgot it.
    pub(super) async fn place(
        &self,
        chunks: Vec<pb::ChunkRef>,
        exclude: Vec<String>,
    ) -> Result<Vec<pb::ChunkPlacement>> {
        let n = chunks.len();
        let mut renewed = false;
        loop {
            let id = self.id();
            let (stored, more) = self.take_unreported();
            let request = pb::PlaceChunksRequest {
                upload_id: id.clone(),
                // A backlog bigger than one batch goes first, on its own.
                chunks: if more { Vec::new() } else { chunks.clone() },
                exclude_nodes: exclude.clone(),
                stored: stored.clone(),
            };
            match self.client.place_chunks(request).await {
                Ok(_) if more => continue,
                Ok(placements) if placements.len() == n => return Ok(placements),
                Ok(placements) => {
                    return Err(ClientError::Invalid(format!(
                        "coordinator placed {} of {n} chunks",
                        placements.len()
                    )))
                }
                Err(s) if upload_gone(&s) && !renewed => {
                    renewed = true;
                    self.renew(&id).await?;
                }
                Err(s) => {
                    self.give_back(stored);
                    return Err(self.client.coord_err(s));
                }
            }
        }
    }

    /// Commits `refs` (each distinct chunk's receipt is attached once); begins the upload
    /// again (once) if the coordinator forgot it.
    pub(super) async fn commit(
        &self,
        mut request: pb::CommitUploadRequest,
    ) -> std::result::Result<pb::Entry, tonic::Status> {
        {
            let receipts = self.receipts.locked();
            let mut seen = std::collections::HashSet::new();
            for r in &mut request.chunks {
                r.receipt = None;
                let Ok(id) = r.chunk_id.parse::<ChunkId>() else {
                    continue;
                };
                if seen.insert(id) {
                    r.receipt = receipts.get(&id).and_then(|k| k.receipt.clone());
                }
            }
        }
        let mut renewed = false;
        loop {
            let id = self.id();
            request.upload_id = id.clone();
            match self.client.commit_upload(request.clone()).await {
                Err(s) if upload_gone(&s) && !renewed => {
                    renewed = true;
                    self.renew(&id)
                        .await
                        .map_err(|e| tonic::Status::unavailable(e.to_string()))?;
                }
                other => return other,
            }
        }
    }

    /// Tells the coordinator the upload is abandoned (best effort).
    pub(super) async fn abort(&self) {
        self.client.abort_upload(self.id()).await;
    }
}

impl Client {
    async fn begin_upload(&self, r: &pb::BeginUploadRequest) -> Result<pb::BeginUploadResponse> {
        let answer = while_down(Retry::Connection, || {
            let mut c = self.coordinator.clone();
            let req = self.request(r.clone());
            async move { c.begin_upload(req).await }
        })
        .await;
        Ok(answer.map_err(|s| self.coord_err(s))?.into_inner())
    }

    async fn place_chunks(
        &self,
        r: pb::PlaceChunksRequest,
    ) -> std::result::Result<Vec<pb::ChunkPlacement>, tonic::Status> {
        let answer = while_down(Retry::Connection, || {
            let mut c = self.coordinator.clone();
            let req = self.request(r.clone());
            async move { c.place_chunks(req).await }
        })
        .await?;
        Ok(answer.into_inner().placements)
    }

    async fn commit_upload(
        &self,
        r: pb::CommitUploadRequest,
    ) -> std::result::Result<pb::Entry, tonic::Status> {
        while_down(Retry::Refused, || {
            let mut c = self.coordinator.clone();
            let req = self.request(r.clone());
            async move { c.commit_upload(req).await }
        })
        .await?
        .into_inner()
        .entry
        .ok_or_else(|| tonic::Status::internal("empty commit response"))
    }

    async fn abort_upload(&self, upload_id: String) {
        let _ = self
            .coordinator
            .clone()
            .abort_upload(self.request(pb::AbortUploadRequest { upload_id }))
            .await;
    }
}
