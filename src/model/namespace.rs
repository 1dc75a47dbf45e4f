//! The namespace as the rest of dfsd sees it: entries, chunk lists, and the requests
//! that change them.

use std::collections::HashSet;

use crate::chunk::ChunkId;
use crate::path::DfsPath;

/// Per-file attributes set with each committed version (S3 keeps its ETag, Content-Type
/// and user metadata here). Small, checked by the coordinator.
pub type Attrs = std::collections::BTreeMap<String, String>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
}

/// One namespace entry as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    pub id: i64,
    pub kind: Kind,
    pub size: u64,
    pub mtime_ms: i64,
    pub version: u64,
    pub replication: u32,
    /// Empty for directories and for files committed without attributes.
    pub attrs: Attrs,
}

/// An entry with its path and chunk count, as returned to callers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub path: DfsPath,
    pub inode: Inode,
    pub chunk_count: u64,
}

/// One chunk of a committed file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileChunk {
    pub chunk_id: ChunkId,
    pub size: u64,
    /// Offset of the chunk within the file.
    pub offset: u64,
}

/// Everything a commit needs to decide, in one transaction.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    pub path: DfsPath,
    pub chunks: Vec<(ChunkId, u64)>,
    pub size: u64,
    pub replication: u32,
    pub write_quorum: u32,
    pub no_clobber: bool,
    pub expected_version: Option<u64>,
    /// Nodes whose replicas count (not dead).
    pub live_nodes: HashSet<String>,
    pub attrs: Attrs,
}

/// A new file version made of other files' chunk lists, in order, in one transaction:
/// no byte is read or written (S3 CopyObject and CompleteMultipartUpload). The chunks are
/// already committed, so no quorum check: they are as durable as their sources.
#[derive(Debug, Clone)]
pub struct ComposeRequest {
    /// Source files, each with the version it must still have (None: any).
    pub sources: Vec<(DfsPath, Option<u64>)>,
    pub dst: DfsPath,
    pub replication: u32,
    pub no_clobber: bool,
    pub expected_version: Option<u64>,
    pub attrs: Attrs,
    /// Removed (recursively) in the same transaction, e.g. a multipart upload's parts.
    pub delete_after: Vec<DfsPath>,
}

/// What a mkdir sets besides the directory itself.
#[derive(Debug, Clone, Default)]
pub struct MkdirOptions {
    /// An existing directory is fine (and missing parents are created).
    pub parents: bool,
    /// Replace the directory's attributes (new or existing).
    pub attrs: Option<Attrs>,
    /// The access key creating it: recorded as the owner of a new top-level directory
    /// (a bucket).
    pub owner: String,
}
