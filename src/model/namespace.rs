//! The namespace as the rest of dfsd sees it: entries, chunk lists, and the requests
//! that change them.

use std::collections::HashSet;

use super::Timestamp;
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

/// An entry as callers of the cluster see it (`stat`, `ls`, the answer to a change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: DfsPath,
    pub kind: Kind,
    /// Bytes; 0 for directories.
    pub size: u64,
    pub mtime: Timestamp,
    /// Bumped on every commit of a file; compare-and-swap uses it.
    pub version: u64,
    pub replication: u32,
    pub chunk_count: u64,
    /// Attributes committed with this version of a file (the S3 gateway keeps "etag",
    /// "content-type" and "meta:NAME" user metadata here).
    pub attrs: Attrs,
}

impl Entry {
    /// An entry with nothing recorded yet: no bytes, no attributes, times and versions 0.
    pub fn new(path: DfsPath, kind: Kind) -> Entry {
        Entry {
            path,
            kind,
            size: 0,
            mtime: Timestamp::default(),
            version: 0,
            replication: 0,
            chunk_count: 0,
            attrs: Attrs::new(),
        }
    }

    /// The last segment of the path ("" for the root).
    pub fn name(&self) -> &str {
        self.path.name()
    }

    pub fn is_dir(&self) -> bool {
        self.kind == Kind::Dir
    }
}

impl From<&EntryInfo> for Entry {
    fn from(e: &EntryInfo) -> Self {
        Entry {
            path: e.path.clone(),
            kind: e.inode.kind,
            size: e.inode.size,
            mtime: Timestamp::from_ms(e.inode.mtime_ms),
            version: e.inode.version,
            replication: e.inode.replication,
            chunk_count: e.chunk_count,
            attrs: e.inode.attrs.clone(),
        }
    }
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
