//! The registry of uploads in flight: who began each, what it proved, the per-key
//! bounds, and the sweeping of abandoned ones (see `uploads/mod.rs`).

use crate::sync::Locked;
use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::UploadError;
use crate::chunk::ChunkId;
use crate::path::DfsPath;
use crate::security::keys::Principal;

/// The parts of an upload its calls need.
#[derive(Debug, Clone)]
pub struct UploadInfo {
    pub path: DfsPath,
    pub replication: u32,
    pub write_quorum: u32,
    pub no_clobber: bool,
    /// The access key that began it: only that key may place, commit or abort.
    pub owner: String,
}

struct Upload {
    info: UploadInfo,
    started: Instant,
    /// Last call that used it: an upload quiet for longer than the idle timeout is dropped.
    last_active: Instant,
    /// Chunks this upload proved it may use (see [`Uploads::protected`]).
    chunks: HashSet<ChunkId>,
}

#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub uploads_per_key: usize,
    pub chunks_per_key: usize,
    pub ttl: Duration,
    pub idle: Duration,
}

#[derive(Default)]
struct KeyUsage {
    uploads: usize,
    chunks: usize,
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Upload>,
    per_key: HashMap<String, KeyUsage>,
    /// Chunks datanodes stored from each key's writes, with when, kept while the key has
    /// uploads open (see [`Uploads::stored`]).
    stored: HashMap<String, HashMap<ChunkId, Instant>>,
}

impl Inner {
    fn remove(&mut self, id: &str) -> Option<Upload> {
        let u = self.by_id.remove(id)?;
        if let Some(k) = self.per_key.get_mut(&u.info.owner) {
            k.uploads -= 1;
            k.chunks -= u.chunks.len();
            if k.uploads == 0 {
                self.per_key.remove(&u.info.owner);
                self.stored.remove(&u.info.owner);
            }
        }
        Some(u)
    }
}

/// The registry of uploads in flight.
pub struct Uploads {
    limits: Limits,
    inner: Mutex<Inner>,
}

fn unknown(id: &str) -> UploadError {
    UploadError::Unknown(id.chars().take(64).collect())
}

impl Uploads {
    pub fn new(limits: Limits) -> Uploads {
        Uploads {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    /// Opens an upload for `info.owner`, within its limit of open uploads.
    pub fn begin(&self, info: UploadInfo) -> Result<String, UploadError> {
        let mut inner = self.lock();
        let usage = inner.per_key.entry(info.owner.clone()).or_default();
        if usage.uploads >= self.limits.uploads_per_key {
            return Err(UploadError::TooManyUploads {
                owner: info.owner,
                open: usage.uploads,
            });
        }
        usage.uploads += 1;
        let id = random_id();
        let now = Instant::now();
        inner.by_id.insert(
            id.clone(),
            Upload {
                info,
                started: now,
                last_active: now,
                chunks: HashSet::new(),
            },
        );
        Ok(id)
    }

    /// The upload `id`, if it exists and `who` began it; marks it active.
    pub fn get(&self, id: &str, who: &Principal) -> Result<UploadInfo, UploadError> {
        let mut inner = self.lock();
        let u = inner.by_id.get_mut(id).ok_or_else(|| unknown(id))?;
        if u.info.owner != who.key_id {
            return Err(UploadError::NotOwner(id.to_string()));
        }
        u.last_active = Instant::now();
        Ok(u.info.clone())
    }

    /// Records that upload `id` proved `ids`, within its key's chunk budget.
    pub(super) fn register(&self, id: &str, ids: &[ChunkId]) -> Result<(), UploadError> {
        let mut inner = self.lock();
        let Inner { by_id, per_key, .. } = &mut *inner;
        let u = by_id.get_mut(id).ok_or_else(|| unknown(id))?;
        let new: HashSet<ChunkId> = ids
            .iter()
            .filter(|c| !u.chunks.contains(c))
            .copied()
            .collect();
        let usage = per_key.entry(u.info.owner.clone()).or_default();
        if usage.chunks + new.len() > self.limits.chunks_per_key {
            return Err(UploadError::TooManyChunks {
                owner: u.info.owner.clone(),
                limit: self.limits.chunks_per_key,
            });
        }
        usage.chunks += new.len();
        u.chunks.extend(new);
        u.last_active = Instant::now();
        Ok(())
    }

    /// Forgets an upload (committed or aborted).
    pub fn end(&self, id: &str) {
        self.lock().remove(id);
    }

    /// A datanode stored `ids` from a write of access key `owner` (before acknowledging
    /// it): while `owner` has uploads open, garbage collection leaves them alone, so a
    /// commit that follows finds them on record however short the grace period. Kept for
    /// the idle timeout, at most `max_upload_chunks_per_key` per key (beyond, a chunk is
    /// protected once the client reports it in a placement, as before). Writes can only
    /// come with a write token from a placement of one of `owner`'s uploads, and storing
    /// means sending the bytes, so this protects nothing the key does not have.
    pub fn stored(&self, owner: &str, ids: &[ChunkId]) {
        let mut inner = self.lock();
        if !inner.per_key.contains_key(owner) {
            return;
        }
        let limit = self.limits.chunks_per_key;
        let set = inner.stored.entry(owner.to_string()).or_default();
        let now = Instant::now();
        for id in ids {
            if set.len() >= limit && !set.contains_key(id) {
                tracing::debug!(key = owner, "stored-chunk protection full for this key");
                break;
            }
            set.insert(*id, now);
        }
    }

    /// A commit of `owner` took `ids`: they are referenced now and need no protection.
    pub fn committed(&self, owner: &str, ids: impl IntoIterator<Item = ChunkId>) {
        let mut inner = self.lock();
        if let Some(set) = inner.stored.get_mut(owner) {
            for id in ids {
                set.remove(&id);
            }
        }
    }

    /// Drops uploads older than the TTL or idle past the idle timeout. Returns how many.
    pub fn sweep(&self) -> usize {
        let mut inner = self.lock();
        let stale: Vec<String> = inner
            .by_id
            .iter()
            .filter(|(_, u)| {
                u.started.elapsed() >= self.limits.ttl
                    || u.last_active.elapsed() >= self.limits.idle
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in &stale {
            inner.remove(id);
        }
        let idle = self.limits.idle;
        inner.stored.retain(|_, set| {
            set.retain(|_, at| at.elapsed() < idle);
            !set.is_empty()
        });
        stale.len()
    }

    /// Chunks proven by uploads in flight: garbage collection leaves them alone.
    pub fn protected(&self) -> HashSet<ChunkId> {
        let inner = self.lock();
        let idle = self.limits.idle;
        let by_uploads = inner
            .by_id
            .values()
            .filter(|u| u.started.elapsed() < self.limits.ttl && u.last_active.elapsed() < idle)
            .flat_map(|u| u.chunks.iter().copied());
        let by_stores = inner
            .stored
            .values()
            .flat_map(|set| set.iter())
            .filter(|(_, at)| at.elapsed() < idle)
            .map(|(id, _)| *id);
        by_uploads.chain(by_stores).collect()
    }

    /// Uploads open now.
    pub fn open(&self) -> usize {
        self.lock().by_id.len()
    }
}

fn random_id() -> String {
    let mut b = [0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(owner: &str) -> UploadInfo {
        UploadInfo {
            path: DfsPath::parse("/f").unwrap(),
            replication: 1,
            write_quorum: 1,
            no_clobber: false,
            owner: owner.into(),
        }
    }

    fn limits() -> Limits {
        Limits {
            uploads_per_key: 2,
            chunks_per_key: 3,
            ttl: Duration::from_secs(3600),
            idle: Duration::from_secs(300),
        }
    }

    #[test]
    fn open_uploads_and_chunks_are_bounded_per_key() {
        let u = Uploads::new(limits());
        let a = u.begin(info("A")).unwrap();
        let _b = u.begin(info("A")).unwrap();
        assert!(matches!(
            u.begin(info("A")).unwrap_err(),
            UploadError::TooManyUploads { .. }
        ));
        // Another key has its own budget.
        let c = u.begin(info("B")).unwrap();
        let id = |b: u8| ChunkId::of(&[b]);
        u.register(&a, &[id(1), id(2)]).unwrap();
        // Placing the same chunk again costs nothing.
        u.register(&a, &[id(1), id(2)]).unwrap();
        let err = u.register(&a, &[id(3), id(4)]).unwrap_err();
        assert!(matches!(err, UploadError::TooManyChunks { .. }), "{err:?}");
        assert!(
            err.to_string().contains("max_upload_chunks_per_key"),
            "{err:?}"
        );
        u.register(&c, &[id(3), id(4), id(5)]).unwrap();
        // Ending an upload gives its budget back.
        u.end(&a);
        u.begin(info("A")).unwrap();
        assert_eq!(u.open(), 3);
    }

    #[test]
    fn chunks_a_key_stored_are_protected_while_it_has_uploads_open() {
        let u = Uploads::new(limits());
        let id = |b: u8| ChunkId::of(&[b]);
        // No upload open for the key: a report protects nothing.
        u.stored("A", &[id(1)]);
        assert!(u.protected().is_empty());
        let a = u.begin(info("A")).unwrap();
        let b = u.begin(info("A")).unwrap();
        u.stored("A", &[id(1), id(2)]);
        // Another key's stores protect nothing for it, and cost A nothing.
        u.stored("B", &[id(9)]);
        assert_eq!(u.protected(), HashSet::from([id(1), id(2)]));
        // At most chunks_per_key (3) per key.
        u.stored("A", &[id(3), id(4), id(5)]);
        assert_eq!(u.protected().len(), 3);
        // A commit takes its chunks out; the key's last upload ending clears the rest.
        u.committed("A", [id(1)]);
        assert!(!u.protected().contains(&id(1)));
        u.end(&a);
        assert!(u.protected().contains(&id(2)), "A still has an upload open");
        u.end(&b);
        assert!(u.protected().is_empty());
    }

    #[test]
    fn the_sweeper_drops_idle_uploads() {
        let u = Uploads::new(Limits {
            idle: Duration::from_millis(20),
            ..limits()
        });
        let a = u.begin(info("A")).unwrap();
        u.register(&a, &[ChunkId::of(b"x")]).unwrap();
        assert!(u.protected().contains(&ChunkId::of(b"x")));
        std::thread::sleep(Duration::from_millis(40));
        assert!(u.protected().is_empty(), "an idle upload protects nothing");
        assert_eq!(u.sweep(), 1);
        assert_eq!(u.open(), 0);
        let who = Principal {
            key_id: "A".into(),
            ..Principal::open()
        };
        assert!(matches!(
            u.get(&a, &who).unwrap_err(),
            UploadError::Unknown(_)
        ));
        // Its key's budget is free again.
        u.begin(info("A")).unwrap();
        u.begin(info("A")).unwrap();
    }
}
