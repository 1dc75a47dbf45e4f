//! [`DiskStore`]: the [`ChunkStore`] on a local disk, content addressed under the node's
//! data dir (paths in `layout.rs`, receiving in `writer.rs`).
//!
//! Opening the store removes leftover temporary files (partial chunks from a crash are never
//! visible) and counts the chunks. Directories are created 0700 and chunk files 0600; walks
//! correct older ones they pass.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::SystemTime;

use super::layout::{fs_available, fsync_dir, list_dir, Layout};
use super::writer::{ChunkWriter, Usage};
use super::{io_err, ChunkEntry, ChunkStore, ChunkWrite, StoreError, StoreStats, Verdict};
use crate::chunk::{ChunkHasher, ChunkId, MAX_CHUNK_SIZE};
use crate::security::files::{self, create_private_dir_all};

pub struct DiskStore {
    layout: Arc<Layout>,
    capacity: u64,
    reserve: u64,
    usage: Arc<Usage>,
    /// Chunk files and fan-out directories walks found readable by others and corrected.
    made_private: AtomicU64,
}

impl DiskStore {
    /// Opens the store under `root`, removing leftover temporary files and counting chunks.
    pub fn open(root: &Path, capacity: u64, reserve: u64) -> Result<Arc<DiskStore>, StoreError> {
        let layout = Layout::new(root);
        for d in [&layout.chunks, &layout.tmp, &layout.quarantine] {
            create_private_dir_all(d).map_err(io_err(format!("create {}", d.display())))?;
        }
        // Partial chunks from a crash are never visible; clear them out.
        for entry in fs::read_dir(&layout.tmp).map_err(io_err("read tmp dir"))? {
            let entry = entry.map_err(io_err("read tmp dir"))?;
            let _ = fs::remove_file(entry.path());
        }
        let mut store = DiskStore {
            layout: Arc::new(layout),
            capacity,
            reserve,
            usage: Arc::default(),
            made_private: AtomicU64::new(0),
        };
        let (mut used, mut count) = (0, 0);
        store.walk_chunks(&mut |e| {
            used += e.size;
            count += 1;
            true
        })?;
        store.usage = Arc::new(Usage::new(used, count));
        Ok(Arc::new(store))
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

    /// Where a chunk's file is (see [`Layout::chunk_path`]).
    pub fn chunk_path(&self, id: &ChunkId) -> std::path::PathBuf {
        self.layout.chunk_path(id)
    }

    /// Deletes a chunk durably. Returns the bytes freed; a chunk that is not there frees
    /// 0 and is not an error, so a repeated order is harmless.
    pub fn delete(&self, id: &ChunkId) -> Result<u64, StoreError> {
        match self.remove(id)? {
            Some(size) => {
                self.sync_removals(&[*id])?;
                Ok(size)
            }
            None => Ok(0),
        }
    }

    /// Walks `chunks/ab/` (two levels). Only files at their proper fan-out place count, the
    /// same place [`Layout::chunk_path`] reads from.
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

    fn open_file(&self, id: &ChunkId) -> Result<File, StoreError> {
        File::open(self.layout.chunk_path(id)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => StoreError::NotFound(*id),
            _ => StoreError::Io {
                what: format!("open chunk {id}"),
                source: e,
            },
        })
    }
}

impl ChunkStore for DiskStore {
    fn begin_write(&self, id: ChunkId, size: u64) -> Result<Box<dyn ChunkWrite>, StoreError> {
        if size > MAX_CHUNK_SIZE {
            return Err(StoreError::ChunkTooLarge { id, size });
        }
        // Checked whether or not the chunk is here already (see the trait).
        let free = self.stats().free_bytes;
        if size > free {
            return Err(StoreError::NoSpace { needed: size, free });
        }
        let (layout, usage) = (self.layout.clone(), self.usage.clone());
        if self.contains(&id) {
            return Ok(Box::new(ChunkWriter::verify_only(layout, usage, id, size)));
        }
        Ok(Box::new(ChunkWriter::create(layout, usage, id, size)?))
    }

    fn open_read(&self, id: &ChunkId) -> Result<Box<dyn Read + Send>, StoreError> {
        Ok(Box::new(self.open_file(id)?))
    }

    fn contains(&self, id: &ChunkId) -> bool {
        self.layout.chunk_path(id).is_file()
    }

    fn stored_size(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        match fs::metadata(self.layout.chunk_path(id)) {
            Ok(m) if m.is_file() => Ok(Some(m.len())),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err(format!("stat chunk {id}"))(e)),
        }
    }

    /// The chunk file's mtime.
    fn modified(&self, id: &ChunkId) -> Option<SystemTime> {
        fs::metadata(self.layout.chunk_path(id))
            .and_then(|m| m.modified())
            .ok()
    }

    fn verify(&self, id: &ChunkId) -> Result<Verdict, StoreError> {
        let mut file = match self.open_file(id) {
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

    /// Moves the chunk's file to `quarantine/`.
    fn quarantine(&self, id: &ChunkId) -> Result<(), StoreError> {
        let from = self.layout.chunk_path(id);
        let size = fs::metadata(&from).map(|m| m.len()).unwrap_or(0);
        let to = self.layout.quarantine_path(id);
        fs::rename(&from, &to).map_err(io_err(format!("quarantine chunk {id}")))?;
        self.usage.forget(size);
        tracing::warn!(chunk = %id, to = %to.display(), "corrupt chunk moved aside");
        Ok(())
    }

    /// Unlinks the chunk's file, without the directory fsync.
    fn remove(&self, id: &ChunkId) -> Result<Option<u64>, StoreError> {
        let path = self.layout.chunk_path(id);
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
        self.usage.forget(size);
        tracing::debug!(chunk = %id, size, "chunk deleted");
        Ok(Some(size))
    }

    /// One fsync per directory the chunks were in.
    fn sync_removals(&self, ids: &[ChunkId]) -> Result<(), StoreError> {
        let dirs: std::collections::BTreeSet<_> = ids
            .iter()
            .filter_map(|id| self.layout.chunk_path(id).parent().map(Path::to_path_buf))
            .collect();
        let mut first = None;
        for dir in dirs {
            if let Err(e) = fsync_dir(&dir) {
                first.get_or_insert(e);
            }
        }
        first.map_or(Ok(()), Err)
    }

    fn walk_chunks(&self, f: &mut dyn FnMut(ChunkEntry) -> bool) -> Result<bool, StoreError> {
        for a in list_dir(&self.layout.chunks)? {
            if !self.walk_fan_out(&a, f)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn chunks_with_prefix(&self, top: u8) -> Result<Vec<ChunkEntry>, StoreError> {
        let dir = self.layout.chunks.join(format!("{top:02x}"));
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

    fn stats(&self) -> StoreStats {
        let used = self.usage.used();
        let fs_free = fs_available(&self.layout.root)
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
            chunk_count: self.usage.count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

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
            .walk_chunks(&mut |e| {
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
            .walk_chunks(&mut |_| {
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
