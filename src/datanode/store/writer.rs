//! Receiving one chunk: bytes go to a temporary file in `tmp/`, hashed as they are
//! written; [`ChunkWriter::finish`] checks size and hash, fsyncs, renames the file into
//! place and fsyncs the directory (invariant 2). The temporary file is a guard: a writer
//! dropped before it finishes, or failing to install, deletes it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use super::layout::{fsync_dir, Layout};
use super::{io_err, ChunkWrite, StoreError};
use crate::chunk::{ChunkHasher, ChunkId};
use crate::security::files::{create_private_dir_all, FILE_MODE};

/// The bytes and chunks a store holds, kept up to date by installs and removals.
#[derive(Default)]
pub(super) struct Usage {
    used: AtomicU64,
    count: AtomicU64,
}

impl Usage {
    pub fn new(used: u64, count: u64) -> Usage {
        Usage {
            used: AtomicU64::new(used),
            count: AtomicU64::new(count),
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn add(&self, size: u64) {
        self.used.fetch_add(size, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
    }

    /// Takes a removed chunk out of the figures (never below zero).
    pub fn forget(&self, size: u64) {
        let sub = |n: u64| move |v: u64| Some(v.saturating_sub(n));
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, sub(size));
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, sub(1));
    }
}

/// A temporary file, deleted unless installed.
struct TempFile {
    file: File,
    path: PathBuf,
}

/// Receives one chunk. Dropped without [`ChunkWrite::finish`], it leaves nothing behind.
pub struct ChunkWriter {
    layout: Arc<Layout>,
    usage: Arc<Usage>,
    id: ChunkId,
    size: u64,
    hasher: ChunkHasher,
    written: u64,
    /// None when the chunk is already stored: the bytes are then only counted and hashed.
    target: Option<TempFile>,
}

impl ChunkWriter {
    /// A writer that only counts and hashes (the chunk is already stored).
    pub(super) fn verify_only(
        layout: Arc<Layout>,
        usage: Arc<Usage>,
        id: ChunkId,
        size: u64,
    ) -> ChunkWriter {
        ChunkWriter {
            layout,
            usage,
            id,
            size,
            hasher: ChunkHasher::new(),
            written: 0,
            target: None,
        }
    }

    /// A writer into a new temporary file.
    pub(super) fn create(
        layout: Arc<Layout>,
        usage: Arc<Usage>,
        id: ChunkId,
        size: u64,
    ) -> Result<ChunkWriter, StoreError> {
        let path = layout.temp_path(&id);
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&path)
            .map_err(io_err(format!("create {}", path.display())))?;
        let mut w = ChunkWriter::verify_only(layout, usage, id, size);
        w.target = Some(TempFile { file, path });
        Ok(w)
    }

    fn install(&self, tmp: &TempFile) -> Result<(), StoreError> {
        let id = self.id;
        // fdatasync: the bytes and the size, without the timestamps a full fsync adds.
        tmp.file
            .sync_data()
            .map_err(io_err(format!("fsync chunk {id}")))?;
        let dest = self.layout.chunk_path(&id);
        let leaf = dest.parent().expect("chunk path has a parent");
        let mid = leaf.parent().expect("fan-out dir has a parent");
        let (mid_created, leaf_created) = (!mid.is_dir(), !leaf.is_dir());
        if leaf_created {
            create_private_dir_all(leaf).map_err(io_err(format!("create {}", leaf.display())))?;
        }
        fs::rename(&tmp.path, &dest).map_err(io_err(format!("install chunk {id}")))?;
        fsync_dir(leaf)?;
        // A new fan-out directory must itself survive a crash: fsync the directory holding
        // its entry, and no more than that (each fsync costs a disk flush).
        if leaf_created {
            fsync_dir(mid)?;
        }
        if mid_created {
            fsync_dir(&self.layout.chunks)?;
        }
        self.usage.add(self.size);
        Ok(())
    }
}

impl ChunkWrite for ChunkWriter {
    fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
        if self.written + data.len() as u64 > self.size {
            return Err(StoreError::TooLong {
                id: self.id,
                announced: self.size,
            });
        }
        self.hasher.update(data);
        if let Some(t) = &mut self.target {
            t.file
                .write_all(data)
                .map_err(io_err(format!("write chunk {}", self.id)))?;
        }
        self.written += data.len() as u64;
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<(), StoreError> {
        let id = self.id;
        if self.written != self.size {
            return Err(StoreError::SizeMismatch {
                id,
                announced: self.size,
                got: self.written,
            });
        }
        let actual = std::mem::take(&mut self.hasher).finish();
        if actual != id {
            return Err(StoreError::HashMismatch { id, actual });
        }
        let Some(tmp) = self.target.take() else {
            return Ok(());
        };
        let result = self.install(&tmp);
        if result.is_err() {
            let _ = fs::remove_file(&tmp.path);
        }
        result
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            let _ = fs::remove_file(&t.path);
        }
    }
}
