//! Uploads in flight, and where their chunks go.
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

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::SeedableRng;
use tonic::Status;

use super::placement::{choose, eligible, Candidate};
use super::{NodeState, State};
use crate::chunk::ChunkId;
use crate::model::now_ms;
use crate::path::DfsPath;
use crate::security::keys::Principal;
use crate::security::token::{unix_now, Op, Receipt, WriteScope};

/// What a caller says about one chunk it wants placed or committed.
#[derive(Debug, Clone)]
pub struct ChunkClaim {
    pub id: ChunkId,
    pub size: u64,
    pub receipt: Option<Receipt>,
}

/// Where one chunk goes.
#[derive(Debug, Clone)]
pub struct Placement {
    pub id: ChunkId,
    /// Live holders on record (id, address); only for chunks the caller proved.
    pub existing: Vec<(String, String)>,
    /// New nodes to write to, in pipeline order.
    pub targets: Vec<Candidate>,
    pub write_token: String,
    /// Lets the caller read the chunk from `existing` (empty when there are none).
    pub read_token: String,
    /// Set when the coordinator granted the chunk (a file the caller may read holds it).
    pub grant: Option<Receipt>,
}

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

fn unknown(id: &str) -> Status {
    Status::not_found(format!(
        "upload {:?}: unknown (the coordinator restarted, or the upload was idle longer than \
         coordinator.upload_idle_timeout or older than coordinator.upload_ttl); begin a new one",
        id.chars().take(64).collect::<String>()
    ))
}

impl Uploads {
    pub fn new(limits: Limits) -> Uploads {
        Uploads {
            limits,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Opens an upload for `info.owner`, within its limit of open uploads.
    pub fn begin(&self, info: UploadInfo) -> Result<String, Status> {
        let mut inner = self.lock();
        let usage = inner.per_key.entry(info.owner.clone()).or_default();
        if usage.uploads >= self.limits.uploads_per_key {
            return Err(Status::resource_exhausted(format!(
                "access key {:?} has {} uploads open, the limit \
                 (coordinator.max_uploads_per_key): commit or abort some first",
                info.owner, usage.uploads
            )));
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
    pub fn get(&self, id: &str, who: &Principal) -> Result<UploadInfo, Status> {
        let mut inner = self.lock();
        let u = inner.by_id.get_mut(id).ok_or_else(|| unknown(id))?;
        if u.info.owner != who.key_id {
            return Err(Status::permission_denied(format!(
                "upload {id:?} belongs to another access key"
            )));
        }
        u.last_active = Instant::now();
        Ok(u.info.clone())
    }

    /// Records that upload `id` proved `ids`, within its key's chunk budget.
    fn register(&self, id: &str, ids: &[ChunkId]) -> Result<(), Status> {
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
            return Err(Status::resource_exhausted(format!(
                "access key {:?}: its open uploads would hold more than {} chunks, the limit \
                 (coordinator.max_upload_chunks_per_key): commit or abort some first",
                u.info.owner, self.limits.chunks_per_key
            )));
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

/// What placing one batch needs to know about each chunk.
struct Proof {
    /// Chunks with a valid receipt for the owner.
    by_receipt: HashSet<ChunkId>,
    /// Chunks a committed file the caller may read holds.
    by_reading: HashSet<ChunkId>,
}

impl Proof {
    fn proven(&self, id: &ChunkId) -> bool {
        self.by_receipt.contains(id) || self.by_reading.contains(id)
    }
}

impl State {
    /// How long a receipt stays good after its token expired: an upload may last this long.
    fn receipt_validity(&self) -> Duration {
        self.cfg.upload_ttl
    }

    /// True if `c` carries a receipt proving that `owner` may use the chunk.
    pub fn has_receipt(&self, c: &ChunkClaim, owner: &str) -> bool {
        c.receipt.as_ref().is_some_and(|r| {
            self.token_key
                .check_receipt(r, owner, c.id, c.size, self.receipt_validity())
        })
    }

    /// Checks that every distinct chunk of a commit has a receipt for `owner`. The refusal
    /// reads the same whether or not the cluster holds the chunk.
    pub fn check_receipts(&self, claims: &[ChunkClaim], owner: &str) -> Result<(), Status> {
        let proven: HashSet<ChunkId> = claims
            .iter()
            .filter(|c| self.has_receipt(c, owner))
            .map(|c| c.id)
            .collect();
        match claims.iter().find(|c| !proven.contains(&c.id)) {
            None => Ok(()),
            Some(c) => Err(Status::failed_precondition(format!(
                "chunk {}: no valid receipt for this access key; a chunk is committed only \
                 after this key stored its bytes or read it in a file it may read (upload it)",
                c.id
            ))),
        }
    }

    /// Places one batch of chunks for upload `upload_id` (see the module docs). `stored`
    /// are chunks the upload stored since its last placement: with valid receipts, they are
    /// protected from garbage collection until the upload ends.
    pub async fn place(
        self: &Arc<Self>,
        upload_id: &str,
        who: &Principal,
        claims: Vec<ChunkClaim>,
        stored: Vec<ChunkClaim>,
        exclude: &HashSet<String>,
    ) -> Result<Vec<Placement>, Status> {
        let upload = self.uploads.get(upload_id, who)?;
        if let Some(bad) = stored.iter().find(|c| !self.has_receipt(c, &upload.owner)) {
            return Err(Status::invalid_argument(format!(
                "stored chunk {}: no valid receipt for this access key",
                bad.id
            )));
        }
        let proof = self.prove(&upload.owner, who, &claims).await?;
        // Register the proven chunks before anything else, so a collection racing this
        // placement either sees them protected or has already removed them (and the touch
        // below then reports them gone).
        let mut protect: Vec<ChunkId> = stored.iter().map(|c| c.id).collect();
        protect.extend(claims.iter().map(|c| c.id).filter(|id| proof.proven(id)));
        self.uploads.register(upload_id, &protect)?;

        let lookup: Vec<ChunkId> = claims
            .iter()
            .map(|c| c.id)
            .filter(|id| proof.proven(id))
            .collect();
        let on_record = self.store.replicas_of(lookup).await?;
        let now = now_ms();
        let snapshot = self.nodes.snapshot(now);
        let alive: HashMap<&str, &str> = snapshot
            .iter()
            .filter(|(_, s)| *s == NodeState::Alive)
            .map(|(v, _)| (v.id.as_str(), v.addr.as_str()))
            .collect();
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let mut out = Vec::with_capacity(claims.len());
        let mut reused = Vec::new();
        for c in &claims {
            let holders: Vec<(String, String)> = if proof.proven(&c.id) {
                let recorded = on_record.get(&c.id).map(Vec::as_slice).unwrap_or_default();
                if !recorded.is_empty() {
                    reused.push(c.id);
                }
                recorded
                    .iter()
                    .filter_map(|n| alive.get(n.as_str()).map(|a| (n.clone(), a.to_string())))
                    .collect()
            } else {
                Vec::new()
            };
            let candidates = eligible(&snapshot, c.size, |n| {
                exclude.contains(n) || holders.iter().any(|(h, _)| h == n)
            });
            let need = (upload.replication as usize).saturating_sub(holders.len());
            let targets = choose(&mut rng, &candidates, need);
            if holders.len() + targets.len() < upload.write_quorum as usize {
                return Err(Status::unavailable(format!(
                    "not enough live datanodes with free space for {}: write quorum is {}, {} alive, {} usable",
                    upload.path,
                    upload.write_quorum,
                    alive.len(),
                    holders.len() + candidates.len()
                )));
            }
            let grant = (proof.by_reading.contains(&c.id) && !proof.by_receipt.contains(&c.id))
                .then(|| {
                    let expires = unix_now() + self.cfg.token_ttl.as_secs();
                    self.token_key
                        .receipt(&upload.owner, c.id, c.size, "", expires)
                });
            out.push(self.placement(c.id, &upload.owner, holders, targets, grant));
        }
        if !reused.is_empty() {
            // Restart the garbage-collection grace of proven chunks this upload reuses. A
            // chunk collected in the meantime is placed afresh on new targets.
            let gone = self.store.touch_chunks(reused, now).await?;
            for (p, c) in out.iter_mut().zip(&claims) {
                if gone.contains(&c.id) {
                    let candidates = eligible(&snapshot, c.size, |n| exclude.contains(n));
                    let targets = choose(&mut rng, &candidates, upload.replication as usize);
                    *p = self.placement(c.id, &upload.owner, Vec::new(), targets, None);
                }
            }
        }
        Ok(out)
    }

    /// Which of `claims` the caller proved it may use: by a receipt for `owner`, or
    /// because a file it may read holds the chunk.
    async fn prove(
        &self,
        owner: &str,
        who: &Principal,
        claims: &[ChunkClaim],
    ) -> Result<Proof, Status> {
        let by_receipt: HashSet<ChunkId> = claims
            .iter()
            .filter(|c| self.has_receipt(c, owner))
            .map(|c| c.id)
            .collect();
        let unproven: Vec<ChunkId> = claims
            .iter()
            .map(|c| c.id)
            .filter(|id| !by_receipt.contains(id))
            .collect();
        let scope = who.read_scope().cloned();
        let by_reading = self.store.readable_chunks(unproven, scope).await?;
        Ok(Proof {
            by_receipt,
            by_reading,
        })
    }

    fn placement(
        &self,
        id: ChunkId,
        owner: &str,
        existing: Vec<(String, String)>,
        targets: Vec<Candidate>,
        grant: Option<Receipt>,
    ) -> Placement {
        let scope = WriteScope {
            owner,
            targets: targets
                .iter()
                .map(|t| (t.id.as_str(), t.addr.as_str()))
                .collect(),
        };
        let write_token = self.token_key.sign_write(id, &scope, self.cfg.token_ttl);
        let read_token = if existing.is_empty() {
            String::new()
        } else {
            self.token(Op::Read, &[id])
        };
        Placement {
            id,
            existing,
            targets,
            write_token,
            read_token,
            grant,
        }
    }
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
        assert_eq!(
            u.begin(info("A")).unwrap_err().code(),
            tonic::Code::ResourceExhausted
        );
        // Another key has its own budget.
        let c = u.begin(info("B")).unwrap();
        let id = |b: u8| ChunkId::of(&[b]);
        u.register(&a, &[id(1), id(2)]).unwrap();
        // Placing the same chunk again costs nothing.
        u.register(&a, &[id(1), id(2)]).unwrap();
        let err = u.register(&a, &[id(3), id(4)]).unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert!(
            err.message().contains("max_upload_chunks_per_key"),
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
        assert_eq!(u.get(&a, &who).unwrap_err().code(), tonic::Code::NotFound);
        // Its key's budget is free again.
        u.begin(info("A")).unwrap();
        u.begin(info("A")).unwrap();
    }
}
