//! Chunks on local disk, content addressed: `chunks/ab/cd/<id>` under the node's data dir.
//!
//! A chunk becomes visible under its name only once complete, verified and durable: bytes go
//! to a temporary file in `tmp/`, which is hashed while written, fsynced, renamed into place,
//! and the directory fsynced (invariant 2). A writer dropped before it finishes deletes its
//! temporary file. Every chunk path is built by [`DiskStore::chunk_path`] from a validated
//! [`ChunkId`], so nothing is ever written outside the data directory (invariant 7).
//! Directories are created 0700 and chunk files 0600; walks correct older ones they pass.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use crate::chunk::{ChunkHasher, ChunkId, MAX_CHUNK_SIZE};
use crate::security::files::{self, create_private_dir_all, FILE_MODE};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("chunk {id}: stream is longer than the announced {announced} bytes")]
    TooLong { id: ChunkId, announced: u64 },
    #[error("chunk {id}: received {got} bytes, announced {announced}")]
    SizeMismatch {
        id: ChunkId,
        announced: u64,
        got: u64,
    },
    #[error("chunk {id}: received bytes hash to {actual}")]
    HashMismatch { id: ChunkId, actual: ChunkId },
    #[error("chunk {id}: size {size} exceeds the maximum chunk size {MAX_CHUNK_SIZE}")]
    ChunkTooLarge { id: ChunkId, size: u64 },
    #[error("not enough space: {needed} bytes needed, {free} free above the reserve")]
    NoSpace { needed: u64, free: u64 },
    #[error("chunk {0}: not stored on this node")]
    NotFound(ChunkId),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> StoreError {
    let what = what.into();
    move |source| StoreError::Io { what, source }
}

/// Figures a datanode reports about itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
}

/// One stored chunk as a directory walk sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    pub id: ChunkId,
    pub size: u64,
    /// When the chunk was written (its file's mtime), if the file system says.
    pub modified: Option<SystemTime>,
}

/// What re-hashing a stored chunk found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Intact,
    Missing,
    /// Corrupt or truncated; moved to `quarantine/`.
    Quarantined,
}

pub struct DiskStore {
    root: PathBuf,
    chunks: PathBuf,
    tmp: PathBuf,
    quarantine: PathBuf,
    capacity: u64,
    reserve: u64,
    used: AtomicU64,
    count: AtomicU64,
    /// Chunk files and fan-out directories walks found readable by others and corrected.
    made_private: AtomicU64,
}

impl DiskStore {
    /// Opens the store under `root`, removing leftover temporary files and counting chunks.
    pub fn open(root: &Path, capacity: u64, reserve: u64) -> Result<Arc<DiskStore>, StoreError> {
        let store = DiskStore {
            root: root.to_path_buf(),
            chunks: root.join("chunks"),
            tmp: root.join("tmp"),
            quarantine: root.join("quarantine"),
            capacity,
            reserve,
            used: AtomicU64::new(0),
            count: AtomicU64::new(0),
            made_private: AtomicU64::new(0),
        };
        for d in [&store.chunks, &store.tmp, &store.quarantine] {
            create_private_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        // Partial chunks from a crash are never visible; clear them out.
        for entry in fs::read_dir(&store.tmp).map_err(io_err("read tmp dir"))? {
            let entry = entry.map_err(io_err("read tmp dir"))?;
            let _ = fs::remove_file(entry.path());
        }
        let (mut used, mut count) = (0, 0);
        store.for_each_chunk(|_, size| {
            used += size;
            count += 1;
        })?;
        store.used.store(used, Ordering::Relaxed);
        store.count.store(count, Ordering::Relaxed);
        Ok(Arc::new(store))
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Chunk files and fan-out directories made private by walks so far (the walk at
    /// open covers the whole store).
    pub fn made_private(&self) -> u64 {
        self.made_private.load(Ordering::Relaxed)
    }

    fn keep_private(&self, path: &Path, mode: Option<u32>) {
        let fixed = match mode {
            Some(mode) => files::make_private_if_open(path, mode),
            None => matches!(files::make_private(path), Ok(Some(_))),
        };
        self.made_private.fetch_add(fixed as u64, Ordering::Relaxed);
    }

    /// The one place a chunk's path is built.
    pub fn chunk_path(&self, id: &ChunkId) -> PathBuf {
        let hex = id.to_hex();
        self.chunks.join(&hex[0..2]).join(&hex[2..4]).join(hex)
    }

    pub fn contains(&self, id: &ChunkId) -> bool {
        self.chunk_path(id).is_file()
    }

    /// Calls `f(id, size)` for every stored chunk. Files whose names are not chunk ids are
    /// ignored.
    pub fn for_each_chunk(&self, mut f: impl FnMut(ChunkId, u64)) -> Result<(), StoreError> {
        self.walk_chunks(|e| {
            f(e.id, e.size);
            true
        })
        .map(|_| ())
    }

    /// Calls `f` for every stored chunk until it returns false. Returns whether the walk
    /// went through to the end. An error listing a directory aborts the walk: a caller
    /// building an inventory must never take a partial walk for a complete one.
    pub fn walk_chunks(&self, mut f: impl FnMut(ChunkEntry) -> bool) -> Result<bool, StoreError> {
        for a in list_dir(&self.chunks)? {
            if !self.walk_fan_out(&a, &mut f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The chunks whose ids start with the byte `top` (one 256th of the store), so a long
    /// job can work through the store in slices with bounded memory.
    pub fn chunks_with_prefix(&self, top: u8) -> Result<Vec<ChunkEntry>, StoreError> {
        let dir = self.chunks.join(format!("{top:02x}"));
        let mut out = Vec::new();
        match fs::metadata(&dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Ok(out),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
            Err(e) => return Err(io_err(format!("list {}", dir.display()))(e)),
        }
        self.walk_fan_out(&dir, &mut |e| {
            out.push(e);
            true
        })?;
        Ok(out)
    }

    /// Walks `chunks/ab/` (two levels). Only files at their proper fan-out place count, the
    /// same place [`DiskStore::chunk_path`] reads from.
    fn walk_fan_out(
        &self,
        a: &Path,
        f: &mut dyn FnMut(ChunkEntry) -> bool,
    ) -> Result<bool, StoreError> {
        let name = |p: &Path| p.file_name().and_then(|n| n.to_str()).map(str::to_owned);
        let Some(a_name) = name(a) else {
            return Ok(true);
        };
        if !a.is_dir() {
            return Ok(true);
        }
        self.keep_private(a, None);
        for b in list_dir(a)? {
            if !b.is_dir() {
                continue;
            }
            self.keep_private(&b, None);
            let Some(b_name) = name(&b) else { continue };
            for c in fs::read_dir(&b).map_err(io_err(format!("list {}", b.display())))? {
                let c = c.map_err(io_err(format!("list {}", b.display())))?;
                let Some(id) = c
                    .file_name()
                    .to_str()
                    .and_then(|n| n.parse::<ChunkId>().ok())
                else {
                    continue;
                };
                let hex = id.to_hex();
                if hex[0..2] != a_name || hex[2..4] != b_name {
                    continue;
                }
                // A file deleted since the listing is simply skipped.
                let Ok(meta) = c.metadata() else { continue };
                if !meta.is_file() {
                    continue;
                }
                self.keep_private(&c.path(), Some(meta.permissions().mode()));
                let entry = ChunkEntry {
                    id,
                    size: meta.len(),
                    modified: meta.modified().ok(),
                };
                if !f(entry) {
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    pub fn stats(&self) -> StoreStats {
        let used = self.used.load(Ordering::Relaxed);
        let fs_free = fs_available(&self.root)
            .unwrap_or(0)
            .saturating_sub(self.reserve);
        let (capacity, free) = if self.capacity > 0 {
            (
                self.capacity,
                self.capacity.saturating_sub(used).min(fs_free),
            )
        } else {
            (used + fs_free, fs_free)
        };
        StoreStats {
            capacity_bytes: capacity,
            used_bytes: used,
            free_bytes: free,
            chunk_count: self.count.load(Ordering::Relaxed),
        }
    }

    /// Starts receiving a chunk of `size` bytes.
    pub fn begin_write(
        self: &Arc<Self>,
        id: ChunkId,
        size: u64,
    ) -> Result<ChunkWriter, StoreError> {
        if size > MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkTooLarge { id, size });
        }
        // Checked whether or not the chunk is here already, so that a full node's answer
        // does not tell which chunks it holds.
        let free = self.stats().free_bytes;
        if size > free {
            return Err(StoreError::NoSpace { needed: size, free });
        }
        if self.contains(&id) {
            // The bytes are still received and verified, then nothing is written.
            return Ok(ChunkWriter {
                store: self.clone(),
                id,
                size,
                hasher: ChunkHasher::new(),
                written: 0,
                target: None,
            });
        }
        let tmp_path = self
            .tmp
            .join(format!("{}.{:016x}", id.to_hex(), rand::random::<u64>()));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(FILE_MODE)
            .open(&tmp_path)
            .map_err(io_err(format!("create {}", tmp_path.display())))?;
        Ok(ChunkWriter {
            store: self.clone(),
            id,
            size,
            hasher: ChunkHasher::new(),
            written: 0,
            target: Some(TempFile {
                file,
                path: tmp_path,
            }),
        })
    }

    pub fn open_read(&self, id: &ChunkId) -> Result<File, StoreError> {
        File::open(self.chunk_path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(*id),
            _ => StoreError::Io {
                what: format!("open chunk {id}"),
                source: e,
            },
        })
    }

    /// Re-hashes a stored chunk; a corrupt one is moved aside to `quarantine/`.
    pub fn verify(&self, id: &ChunkId) -> Result<Verdict, StoreError> {
        let mut file = match self.open_read(id) {
            Ok(f) => f,
            Err(StoreError::NotFound(_)) => return Ok(Verdict::Missing),
            Err(e) => return Err(e),
        };
        let mut hasher = ChunkHasher::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file
                .read(&mut buf)
                .map_err(io_err(format!("read chunk {id}")))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        if hasher.finish() == *id {
            return Ok(Verdict::Intact);
        }
        self.quarantine(id)?;
        Ok(Verdict::Quarantined)
    }

    /// Moves a chunk out of the way (kept for a human to inspect).
    pub fn quarantine(&self, id: &ChunkId) -> Result<(), StoreError> {
        let from = self.chunk_path(id);
        let size = fs::metadata(&from).map(|m| m.len()).unwrap_or(0);
        let to = self
            .quarantine
            .join(format!("{}.{}", id.to_hex(), crate::model::now_ms()));
        fs::rename(&from, &to).map_err(io_err(format!("quarantine chunk {id}")))?;
        self.forget(size);
        tracing::warn!(chunk = %id, to = %to.display(), "corrupt chunk moved aside");
        Ok(())
    }

    /// Size of a stored chunk's file, None if it is not stored.
    pub fn stored_size(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        match fs::metadata(self.chunk_path(id)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("stat chunk {id}"))(e)),
        }
    }

    /// When a stored chunk was written (its mtime), None if not stored or unknown.
    pub fn modified(&self, id: &ChunkId) -> Option<SystemTime> {
        fs::metadata(self.chunk_path(id))
            .and_then(|m| m.modified())
            .ok()
    }

    /// Deletes a chunk durably (garbage collection, trimming of surplus replicas). Returns
    /// the bytes freed; a chunk that is not there frees 0 and is not an error, so a
    /// repeated order is harmless.
    pub fn delete(&self, id: &ChunkId) -> Result<u64, StoreError> {
        match self.unlink(id)? {
            Some(size) => {
                let dir = self.chunk_path(id);
                self.sync_dir(dir.parent().expect("chunk path has a parent"))?;
                Ok(size)
            }
            None => Ok(0),
        }
    }

    /// Removes a chunk's file without the directory fsync, for callers that delete many
    /// and fsync each directory once ([`DiskStore::sync_dir`]). Returns the size removed,
    /// None if it was not there.
    pub fn unlink(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let path = self.chunk_path(id);
        let size = match fs::symlink_metadata(&path) {
            Ok(m) => m.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("stat chunk {id}"))(e)),
        };
        match fs::remove_file(&path) {
            Ok(()) => {}
            // Removed concurrently (a racing delete or quarantine did the accounting).
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_err(format!("delete chunk {id}"))(e)),
        }
        self.forget(size);
        tracing::debug!(chunk = %id, size, "chunk deleted");
        Ok(Some(size))
    }

    /// Makes renames and removals in `dir` durable.
    pub fn sync_dir(&self, dir: &Path) -> Result<(), StoreError> {
        fsync_dir(dir)
    }

    /// Takes a removed chunk out of the used and count figures (never below zero).
    fn forget(&self, size: u64) {
        let sub = |n: u64| move |v: u64| Some(v.saturating_sub(n));
        let _ = self
            .used
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, sub(size));
        let _ = self
            .count
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, sub(1));
    }
}

struct TempFile {
    file: File,
    path: PathBuf,
}

/// Receives one chunk. Dropped without [`ChunkWriter::finish`], it leaves nothing behind.
pub struct ChunkWriter {
    store: Arc<DiskStore>,
    id: ChunkId,
    size: u64,
    hasher: ChunkHasher,
    written: u64,
    /// None when the chunk is already stored: the bytes are then only counted and hashed.
    target: Option<TempFile>,
}

impl ChunkWriter {
    pub fn write(&mut self, data: &[u8]) -> Result<(), StoreError> {
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

    /// Verifies size and hash, then makes the chunk durable and visible.
    pub fn finish(mut self) -> Result<(), StoreError> {
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

    fn install(&self, tmp: &TempFile) -> Result<(), StoreError> {
        let id = self.id;
        // fdatasync: the bytes and the size, without the timestamps a full fsync adds.
        tmp.file
            .sync_data()
            .map_err(io_err(format!("fsync chunk {id}")))?;
        let dest = self.store.chunk_path(&id);
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
            fsync_dir(&self.store.chunks)?;
        }
        self.store.used.fetch_add(self.size, Ordering::Relaxed);
        self.store.count.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

impl Drop for ChunkWriter {
    fn drop(&mut self) {
        if let Some(t) = self.target.take() {
            let _ = fs::remove_file(&t.path);
        }
    }
}

fn list_dir(p: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let what = || format!("list {}", p.display());
    fs::read_dir(p)
        .map_err(io_err(what()))?
        .map(|e| e.map(|e| e.path()).map_err(io_err(what())))
        .collect()
}

fn fsync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err(format!("fsync directory {}", dir.display())))
}

/// Bytes available to unprivileged users on the file system holding `path`.
fn fs_available(path: &Path) -> Option<u64> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Arc<DiskStore>) {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path(), 0, 0).unwrap();
        (dir, s)
    }

    fn files_under(p: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e);
                } else {
                    out.push(e);
                }
            }
        }
        out
    }

    #[test]
    fn stores_under_fan_out_path_and_counts() {
        let (dir, s) = store();
        let data = b"hello chunk".to_vec();
        let id = ChunkId::of(&data);
        let mut w = s.begin_write(id, data.len() as u64).unwrap();
        w.write(&data[..5]).unwrap();
        w.write(&data[5..]).unwrap();
        w.finish().unwrap();
        let hex = id.to_hex();
        let expect = dir
            .path()
            .join("chunks")
            .join(&hex[..2])
            .join(&hex[2..4])
            .join(&hex);
        assert_eq!(fs::read(&expect).unwrap(), data);
        assert_eq!(s.stats().chunk_count, 1);
        assert_eq!(s.stats().used_bytes, data.len() as u64);
        // Reopening counts it again.
        let s2 = DiskStore::open(dir.path(), 0, 0).unwrap();
        assert_eq!(s2.stats().chunk_count, 1);
        assert!(files_under(&dir.path().join("tmp")).is_empty());
    }

    #[test]
    fn refuses_wrong_hash_short_and_long_streams_leaving_nothing() {
        let (dir, s) = store();
        let data = vec![1u8; 1000];
        let id = ChunkId::of(&data);

        let mut w = s.begin_write(id, 1000).unwrap();
        w.write(&[2u8; 1000]).unwrap();
        assert!(matches!(w.finish(), Err(StoreError::HashMismatch { .. })));

        let mut w = s.begin_write(id, 1000).unwrap();
        w.write(&data[..999]).unwrap();
        assert!(matches!(w.finish(), Err(StoreError::SizeMismatch { .. })));

        let mut w = s.begin_write(id, 1000).unwrap();
        w.write(&data).unwrap();
        assert!(matches!(w.write(&[0]), Err(StoreError::TooLong { .. })));
        drop(w);

        assert!(files_under(&dir.path().join("chunks")).is_empty());
        assert!(files_under(&dir.path().join("tmp")).is_empty());
        assert!(!s.contains(&id));
    }

    #[test]
    fn verify_quarantines_corruption() {
        let (dir, s) = store();
        let data = vec![9u8; 4096];
        let id = ChunkId::of(&data);
        let mut w = s.begin_write(id, 4096).unwrap();
        w.write(&data).unwrap();
        w.finish().unwrap();
        assert_eq!(s.verify(&id).unwrap(), Verdict::Intact);
        let mut bytes = fs::read(s.chunk_path(&id)).unwrap();
        bytes[100] ^= 0xff;
        fs::write(s.chunk_path(&id), bytes).unwrap();
        assert_eq!(s.verify(&id).unwrap(), Verdict::Quarantined);
        assert!(!s.contains(&id));
        assert_eq!(files_under(&dir.path().join("quarantine")).len(), 1);
        assert_eq!(s.verify(&id).unwrap(), Verdict::Missing);
        assert_eq!(s.stats().chunk_count, 0);
    }

    fn put(s: &Arc<DiskStore>, data: &[u8]) -> ChunkId {
        let id = ChunkId::of(data);
        let mut w = s.begin_write(id, data.len() as u64).unwrap();
        w.write(data).unwrap();
        w.finish().unwrap();
        id
    }

    #[test]
    fn delete_removes_the_file_and_updates_counters() {
        let (dir, s) = store();
        let a = put(&s, &[1u8; 3000]);
        let b = put(&s, &[2u8; 500]);
        assert_eq!(s.stats().chunk_count, 2);
        assert_eq!(s.stats().used_bytes, 3500);

        assert_eq!(s.delete(&a).unwrap(), 3000);
        assert!(!s.chunk_path(&a).exists());
        assert!(!s.contains(&a));
        assert!(matches!(s.open_read(&a), Err(StoreError::NotFound(_))));
        assert_eq!(s.stats().chunk_count, 1);
        assert_eq!(s.stats().used_bytes, 500);

        // Deleting again, or a chunk never stored, frees nothing and is no error.
        assert_eq!(s.delete(&a).unwrap(), 0);
        assert_eq!(s.delete(&ChunkId::of(b"never")).unwrap(), 0);
        assert_eq!(s.stats().chunk_count, 1);
        assert_eq!(s.stats().used_bytes, 500);

        // The other chunk is untouched, and a reopened store counts the same.
        assert!(s.contains(&b));
        let s2 = DiskStore::open(dir.path(), 0, 0).unwrap();
        assert_eq!(s2.stats().chunk_count, 1);
        assert_eq!(s2.stats().used_bytes, 500);

        // A deleted chunk can be stored again.
        put(&s, &[1u8; 3000]);
        assert_eq!(s.stats().chunk_count, 2);
        assert_eq!(s.stats().used_bytes, 3500);
    }

    #[test]
    fn walks_report_entries_and_prefix_slices_cover_the_store() {
        let (dir, s) = store();
        let ids: Vec<ChunkId> = (0..50u32).map(|i| put(&s, &i.to_le_bytes())).collect();
        // Stray files are not chunks: a bad name, and a valid id in the wrong directory.
        fs::write(dir.path().join("chunks").join("README"), b"x").unwrap();
        let wrong = s
            .chunk_path(&ids[0])
            .parent()
            .unwrap()
            .join(ChunkId::of(b"z").to_hex());
        fs::write(wrong, b"z").unwrap();

        let mut walked = Vec::new();
        assert!(s
            .walk_chunks(|e| {
                assert_eq!(e.size, 4);
                assert!(e.modified.is_some());
                walked.push(e.id);
                true
            })
            .unwrap());
        let mut sliced: Vec<ChunkId> = (0..=255u8)
            .flat_map(|p| s.chunks_with_prefix(p).unwrap())
            .map(|e| e.id)
            .collect();
        walked.sort();
        sliced.sort();
        let mut expect = ids.clone();
        expect.sort();
        assert_eq!(walked, expect);
        assert_eq!(sliced, expect);

        let mut n = 0;
        assert!(!s
            .walk_chunks(|_| {
                n += 1;
                n < 10
            })
            .unwrap());
        assert_eq!(n, 10);
    }

    #[test]
    fn verify_quarantines_truncated_chunks() {
        let (_dir, s) = store();
        let id = put(&s, &[5u8; 10_000]);
        let f = fs::OpenOptions::new()
            .write(true)
            .open(s.chunk_path(&id))
            .unwrap();
        f.set_len(9_999).unwrap();
        assert_eq!(s.verify(&id).unwrap(), Verdict::Quarantined);
        assert_eq!(s.stats().chunk_count, 0);
    }

    #[test]
    fn refuses_writes_beyond_capacity() {
        let dir = tempfile::tempdir().unwrap();
        let s = DiskStore::open(dir.path(), 100, 0).unwrap();
        let data = vec![0u8; 200];
        assert!(matches!(
            s.begin_write(ChunkId::of(&data), 200),
            Err(StoreError::NoSpace { .. })
        ));
    }

    fn tree(p: &Path) -> Vec<PathBuf> {
        let mut out = vec![];
        let mut stack = vec![p.to_path_buf()];
        while let Some(d) = stack.pop() {
            for e in fs::read_dir(&d).unwrap() {
                let e = e.unwrap().path();
                if e.is_dir() {
                    stack.push(e.clone());
                }
                out.push(e);
            }
        }
        out.sort();
        out
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(500))]

        /// Any string offered as a chunk id is refused or is exactly 64 lowercase hex
        /// characters, and whatever a client then does with it (write wrong bytes, read,
        /// verify) leaves no file anywhere: the tree around the data directory is the same
        /// before and after.
        #[test]
        fn hostile_chunk_ids_never_touch_the_file_system(
            s in proptest::prop_oneof![
                "[0-9a-f]{64}",
                "[0-9a-fA-F./\\\\%]{60,70}",
                "\\PC{0,80}",
                proptest::strategy::Just("../".repeat(21) + "x"),
                proptest::strategy::Just(format!("{}%2e%2e", "a".repeat(58))),
            ],
            data in proptest::collection::vec(proptest::num::u8::ANY, 0..64),
        ) {
            let outer = tempfile::tempdir().unwrap();
            let root = outer.path().join("data");
            let store = DiskStore::open(&root, 0, 0).unwrap();
            let before = tree(outer.path());
            match s.parse::<ChunkId>() {
                Err(_) => {}
                Ok(id) => {
                    proptest::prop_assert_eq!(id.to_hex(), s.clone());
                    proptest::prop_assert!(store.chunk_path(&id).starts_with(root.join("chunks")));
                    // Bytes that (almost surely) do not hash to the id.
                    let mut w = store.begin_write(id, data.len() as u64).unwrap();
                    w.write(&data).unwrap();
                    let stored = w.finish().is_ok();
                    proptest::prop_assert_eq!(stored, ChunkId::of(&data) == id);
                    proptest::prop_assert!(store.open_read(&id).is_err() || stored);
                    proptest::prop_assert_eq!(store.verify(&id).unwrap() == Verdict::Missing, !stored);
                }
            }
            // Fan-out directories may appear under chunks/, nothing else anywhere.
            let after: Vec<PathBuf> = tree(outer.path())
                .into_iter()
                .filter(|p| !(p.starts_with(root.join("chunks")) && p.is_dir()))
                .collect();
            let before: Vec<PathBuf> = before
                .into_iter()
                .filter(|p| !(p.starts_with(root.join("chunks")) && p.is_dir()))
                .collect();
            proptest::prop_assert_eq!(after, before);
        }
    }
}
