//! Uploads in flight, from begin to commit or abort, and where their chunks go.
//!
//! - `mod.rs`: the lifecycle (begin with its early checks, commit, abort) and its errors.
//! - `registry.rs`: the uploads in memory, bounded per key, swept when idle.
//! - `place.rs`: placement of a batch: proof, dedup, targets, tokens and receipts.
//!
//! An upload is begun by one access key (its owner), places chunks in batches and ends with
//! a commit or an abort. It lives in coordinator memory (see docs/decisions.md)
//! and is bounded: per key at most `max_uploads_per_key` open uploads, holding at most
//! `max_upload_chunks_per_key` proven chunks in all; a sweeper drops uploads idle for
//! `upload_idle_timeout` or older than `upload_ttl`.
//!
//! Garbage collection leaves alone the chunks an upload in flight has *proven* (see below):
//! those it reuses, and those it stored. A datanode that stores a chunk from a key's write
//! says so in its replica report (before it acknowledges the write), and the chunk stays
//! protected while that key has uploads open, until a commit takes it or the key's
//! uploads go idle; the client also reports them with their receipts in its next
//! placement. Naming a chunk id protects nothing: only sending its bytes, or reading it in
//! a file the key may read, does.
//!
//! Dedup without leaks (invariant 9). A chunk counts as stored for an upload only when the
//! caller proves that it may use it: with a receipt (a datanode stored the bytes this key
//! sent, or the coordinator granted the chunk earlier), or because a committed file the
//! key may read holds it (then the coordinator grants it a receipt). Every other chunk is
//! placed as new, on nodes chosen as for a chunk never seen, whether or not the cluster
//! holds it: the answer carries no holders, no read token and no hint, and the chunk's
//! garbage-collection grace is not refreshed. The commit accepts only chunks with a
//! receipt for the committing key.

mod place;
mod registry;

use thiserror::Error;

use crate::chunk::ChunkId;
use crate::coordinator::events::EventKind::FileCommitted;
use crate::coordinator::State;
use crate::meta::MetaError;
use crate::model::{now_ms, Attrs, CommitRequest, EntryInfo, Kind};
use crate::path::DfsPath;
use crate::security::keys::Principal;

pub use place::{ChunkClaim, Placement};
pub use registry::{Limits, UploadInfo, Uploads};

/// Why an upload call failed.
#[derive(Debug, Error)]
pub enum UploadError {
    #[error(
        "access key {owner:?} has {open} uploads open, the limit \
         (coordinator.max_uploads_per_key): commit or abort some first"
    )]
    TooManyUploads { owner: String, open: usize },
    #[error(
        "access key {owner:?}: its open uploads would hold more than {limit} chunks, the limit \
         (coordinator.max_upload_chunks_per_key): commit or abort some first"
    )]
    TooManyChunks { owner: String, limit: usize },
    /// The id (at most 64 characters of it) of an upload this coordinator does not know.
    #[error(
        "upload {0:?}: unknown (the coordinator restarted, or the upload was idle longer than \
         coordinator.upload_idle_timeout or older than coordinator.upload_ttl); begin a new one"
    )]
    Unknown(String),
    #[error("upload {0:?} belongs to another access key")]
    NotOwner(String),
    #[error(
        "chunk {0}: no valid receipt for this access key; a chunk is committed only \
         after this key stored its bytes or read it in a file it may read (upload it)"
    )]
    NoReceipt(ChunkId),
    #[error("stored chunk {0}: no valid receipt for this access key")]
    StoredWithoutReceipt(ChunkId),
    #[error(
        "not enough live datanodes with free space for {path}: write quorum is {quorum}, \
         {alive} alive, {usable} usable"
    )]
    NoRoom {
        path: DfsPath,
        quorum: u32,
        alive: usize,
        usable: usize,
    },
    #[error("{0}: is a directory")]
    IsADirectory(DfsPath),
    #[error("{0}: already exists")]
    AlreadyExists(DfsPath),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// What a caller asks for when it begins an upload (0: the cluster's default).
#[derive(Debug, Clone)]
pub struct NewUpload {
    pub path: DfsPath,
    /// Already checked against the cluster's bounds.
    pub replication: u32,
    pub write_quorum: u32,
    pub no_clobber: bool,
}

/// What a caller says when it commits an upload.
#[derive(Debug, Clone)]
pub struct Commit {
    pub upload_id: String,
    pub chunks: Vec<ChunkClaim>,
    pub size: u64,
    pub no_clobber: bool,
    pub expected_version: Option<u64>,
    pub attrs: Attrs,
}

impl State {
    /// Opens an upload for the caller's key: the write quorum settled (the request's, the
    /// cluster's, or the replication factor, never above it), and what would fail at commit
    /// refused now (the commit checks again atomically).
    pub async fn begin_upload(
        &self,
        who: &Principal,
        req: NewUpload,
    ) -> Result<(String, UploadInfo), UploadError> {
        let default_quorum = match self.cfg.write_quorum {
            0 => req.replication,
            q => q,
        };
        let write_quorum = match req.write_quorum {
            0 => default_quorum,
            q => q,
        }
        .min(req.replication);
        if req.path.is_root() {
            return Err(UploadError::IsADirectory(req.path));
        }
        if let Some(inode) = self.store.resolve(&req.path).await? {
            if inode.kind == Kind::Dir {
                return Err(UploadError::IsADirectory(req.path));
            }
            if req.no_clobber {
                return Err(UploadError::AlreadyExists(req.path));
            }
        }
        let info = UploadInfo {
            path: req.path,
            replication: req.replication,
            write_quorum,
            no_clobber: req.no_clobber,
            owner: who.key_id.clone(),
        };
        let id = self.uploads.begin(info.clone())?;
        self.count_uploads();
        Ok((id, info))
    }

    /// Commits an upload: every chunk must carry a receipt for the upload's key, checked
    /// before the records are read (invariant 9: the refusal tells nothing about them);
    /// then one metadata transaction checks the quorum on record and swaps the file.
    pub async fn commit_upload(
        &self,
        who: &Principal,
        req: Commit,
    ) -> Result<EntryInfo, UploadError> {
        let upload = self.uploads.get(&req.upload_id, who)?;
        self.check_receipts(&req.chunks, &upload.owner)?;
        let commit = CommitRequest {
            path: upload.path.clone(),
            chunks: req.chunks.iter().map(|c| (c.id, c.size)).collect(),
            size: req.size,
            replication: upload.replication,
            write_quorum: upload.write_quorum,
            no_clobber: upload.no_clobber || req.no_clobber,
            expected_version: req.expected_version,
            live_nodes: self.nodes.live_set(now_ms()),
            attrs: req.attrs,
        };
        let info = self.store.commit(commit, now_ms()).await?;
        self.uploads.end(&req.upload_id);
        (self.uploads).committed(&upload.owner, req.chunks.iter().map(|c| c.id));
        let (path, size, v) = (info.path.as_str(), info.inode.size, info.inode.version);
        tracing::info!(path, size, version = v, "file committed");
        (self.events).file(FileCommitted, path, size, 1, format!("version {v}"));
        Ok(info)
    }

    /// Ends an upload of the caller's without committing it.
    pub fn abort_upload(&self, who: &Principal, upload_id: &str) -> Result<(), UploadError> {
        self.uploads.get(upload_id, who)?;
        self.uploads.end(upload_id);
        Ok(())
    }

    /// Sets the open-uploads gauge.
    pub fn count_uploads(&self) {
        crate::metrics::coordinator()
            .uploads_open
            .set(self.uploads.open() as i64);
    }
}
