//! Where each file of a [`DiskStore`](super::disk::DiskStore) lives under the data dir:
//! `chunks/ab/cd/<id>` for chunks, `tmp/` for chunks being received, `quarantine/` for
//! corrupt ones. [`Layout::chunk_path`] is the one place a chunk's path is built, from a
//! validated [`ChunkId`], so nothing is ever written outside the data directory
//! (invariant 7). Also the directory fsync every rename and removal needs, and free space.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use super::{io_err, StoreError};
use crate::chunk::ChunkId;

#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub root: PathBuf,
    pub chunks: PathBuf,
    pub tmp: PathBuf,
    pub quarantine: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            chunks: root.join("chunks"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
        }
    }

    /// The one place a chunk's path is built.
    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunks.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    /// A fresh temporary file name for receiving `id` (random, so concurrent writes of
    /// the same chunk never share one).
    pub fn temp_path(&self, id: &ChunkId) -> PathBuf {
        self.tmp
            .join(format!("{}.{:016x}", id.to_hex(), rand::random::<u64>()))
    }

    /// Where a corrupt chunk is moved, stamped with the time.
    pub fn quarantine_path(&self, id: &ChunkId) -> PathBuf {
        self.quarantine
            .join(format!("{}.{}", id.to_hex(), crate::model::now_ms()))
    }
}

pub(super) fn list_dir(p: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let what = || format!("list {}", p.display());
    fs::read_dir(p)
        .map_err(io_err(what()))?
        .map(|e| e.map(|e| e.path()).map_err(io_err(what())))
        .collect()
}

/// Makes renames and removals in `dir` durable.
pub(super) fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

/// Bytes available to unprivileged users on the file system holding `path`.
pub(super) fn fs_available(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `st` a properly sized out-parameter.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return None;
    }
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}
