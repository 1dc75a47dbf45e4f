//! Namespace changes with what follows them (the log line, the cluster event, the
//! public-bucket set), and the read path's chunk locations: which replicas a reader gets,
//! in which order, with a read token each.

use rand::seq::SliceRandom;
use rand::SeedableRng;

use super::events::EventKind::{FileCommitted, FileDeleted, FileMoved};
use super::{NodeState, NodeView, State};
use crate::chunk::ChunkId;
use crate::meta::MetaError;
use crate::model::{now_ms, ComposeRequest, EntryInfo, FileChunk, MkdirOptions, NodeEndpoint};
use crate::path::DfsPath;
use crate::security::token::Op;

/// One chunk of a file page with the replicas to read it from, best first.
#[derive(Debug, Clone)]
pub struct ChunkLocation {
    pub chunk: FileChunk,
    /// (node id, address): alive and draining holders in random order, then suspect ones.
    pub replicas: Vec<NodeEndpoint>,
    pub read_token: String,
}

/// A page of a file's chunk list: the entry, the chunks, whether more follow.
#[derive(Debug, Clone)]
pub struct FilePage {
    pub entry: EntryInfo,
    pub chunks: Vec<ChunkLocation>,
    pub truncated: bool,
}

impl State {
    pub async fn mkdir(&self, path: &DfsPath, opts: MkdirOptions) -> Result<EntryInfo, MetaError> {
        let info = self.store.mkdir(path, opts, now_ms()).await?;
        tracing::info!(path = %info.path, "directory created");
        Ok(info)
    }

    /// Deletes `path` (see `MetaStore::delete`): (files, directories) removed.
    pub async fn delete(
        &self,
        path: &DfsPath,
        recursive: bool,
        expected_version: Option<u64>,
    ) -> Result<(u64, u64), MetaError> {
        let (files, dirs) = self.store.delete(path, recursive, expected_version).await?;
        tracing::info!(%path, files, dirs, "deleted");
        self.after_namespace_change(path).await;
        (self.events).file(FileDeleted, path.as_str(), 0, files, format!("{dirs} dirs"));
        Ok((files, dirs))
    }

    pub async fn rename(&self, src: &DfsPath, dst: &DfsPath) -> Result<EntryInfo, MetaError> {
        let info = self.store.rename(src, dst, now_ms()).await?;
        tracing::info!(%src, dst = %info.path, "moved");
        self.after_namespace_change(src).await;
        self.after_namespace_change(&info.path).await;
        (self.events).file(FileMoved, src.as_str(), 0, 1, info.path.to_string());
        Ok(info)
    }

    /// A new file version made of other files' chunk lists (S3 copies and multipart
    /// completions): no byte moves.
    pub async fn compose(&self, req: ComposeRequest) -> Result<EntryInfo, MetaError> {
        let n = req.sources.len();
        let info = self.store.compose(req, now_ms()).await?;
        let (path, size, v) = (info.path.as_str(), info.inode.size, info.inode.version);
        tracing::info!(path, size, version = v, sources = n, "file composed");
        let detail = format!("version {v}, composed of {n} file(s)");
        (self.events).file(FileCommitted, path, size, 1, detail);
        Ok(info)
    }

    /// Up to `max` chunks of the file at `path` from chunk `start`, each with its
    /// replicas: alive (and draining) ones shuffled to spread reads, suspect ones last,
    /// dead ones never.
    pub async fn file_page(
        &self,
        path: &DfsPath,
        start: usize,
        max: usize,
    ) -> Result<FilePage, MetaError> {
        let (entry, all) = self.store.file_chunks(path).await?;
        let start = start.min(all.len());
        let end = (start + max).min(all.len());
        let page = &all[start..end];
        let ids: Vec<ChunkId> = page.iter().map(|c| c.chunk_id).collect();
        let on_record = self.store.replicas_of(ids).await?;
        let now = now_ms();
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let chunks = page
            .iter()
            .map(|c| {
                let mut alive = Vec::new();
                let mut suspect = Vec::new();
                for node in on_record.get(&c.chunk_id).into_iter().flatten() {
                    let Some(view) = self.nodes.get(node) else {
                        continue;
                    };
                    match self.nodes.state_of(&view, now) {
                        NodeState::Alive | NodeState::Draining => alive.push(view),
                        NodeState::Suspect => suspect.push(view),
                        NodeState::Dead => {}
                    }
                }
                alive.shuffle(&mut rng);
                suspect.shuffle(&mut rng);
                ChunkLocation {
                    chunk: c.clone(),
                    replicas: alive
                        .into_iter()
                        .chain(suspect)
                        .map(|v: NodeView| v.endpoint())
                        .collect(),
                    read_token: self.token(Op::Read, &[c.chunk_id]),
                }
            })
            .collect();
        Ok(FilePage {
            entry,
            chunks,
            truncated: end < all.len(),
        })
    }
}
