//! Where an upload's chunks go: which chunks the caller proved it may use (a receipt, or
//! a file it may read), their live holders, new targets by the one placement rule, and
//! the tokens and receipts that go with them (see `uploads/mod.rs`, invariant 9).

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use rand::SeedableRng;

use super::UploadError;
use crate::chunk::ChunkId;
use crate::coordinator::placement::{choose, eligible, Candidate};
use crate::coordinator::{NodeState, NodeView, State};
use crate::model::{now_ms, NodeEndpoint};
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
    pub existing: Vec<NodeEndpoint>,
    /// New nodes to write to, in pipeline order.
    pub targets: Vec<Candidate>,
    pub write_token: String,
    /// Lets the caller read the chunk from `existing` (empty when there are none).
    pub read_token: String,
    /// Set when the coordinator granted the chunk (a file the caller may read holds it).
    pub grant: Option<Receipt>,
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
    pub fn check_receipts(&self, claims: &[ChunkClaim], owner: &str) -> Result<(), UploadError> {
        let proven: HashSet<ChunkId> = claims
            .iter()
            .filter(|c| self.has_receipt(c, owner))
            .map(|c| c.id)
            .collect();
        match claims.iter().find(|c| !proven.contains(&c.id)) {
            None => Ok(()),
            Some(c) => Err(UploadError::NoReceipt(c.id)),
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
    ) -> Result<Vec<Placement>, UploadError> {
        let upload = self.uploads.get(upload_id, who)?;
        if let Some(bad) = stored.iter().find(|c| !self.has_receipt(c, &upload.owner)) {
            return Err(UploadError::StoredWithoutReceipt(bad.id));
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
        let alive: HashMap<&str, &NodeView> = snapshot
            .iter()
            .filter(|(_, s)| *s == NodeState::Alive)
            .map(|(v, _)| (v.id.as_str(), v))
            .collect();
        let mut rng = rand::rngs::StdRng::from_rng(&mut rand::rng());
        let mut out = Vec::with_capacity(claims.len());
        let mut reused = Vec::new();
        for c in &claims {
            let recorded = match proof.proven(&c.id) {
                true => on_record.get(&c.id).map(Vec::as_slice).unwrap_or_default(),
                false => &[],
            };
            if !recorded.is_empty() {
                reused.push(c.id);
            }
            let holders = live_holders(recorded, &alive);
            let candidates = eligible(&snapshot, c.size, |n| {
                exclude.contains(n) || holders.iter().any(|h| h.id == n)
            });
            let need = (upload.replication as usize).saturating_sub(holders.len());
            let targets = choose(&mut rng, &candidates, need);
            if holders.len() + targets.len() < upload.write_quorum as usize {
                return Err(UploadError::NoRoom {
                    path: upload.path.clone(),
                    quorum: upload.write_quorum,
                    alive: alive.len(),
                    usable: holders.len() + candidates.len(),
                });
            }
            let grant = self.grant(&proof, &upload.owner, c);
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

    /// A receipt the coordinator grants for a chunk proven only by reading (a file the
    /// caller may read holds it), so the commit accepts it.
    fn grant(&self, proof: &Proof, owner: &str, c: &ChunkClaim) -> Option<Receipt> {
        (proof.by_reading.contains(&c.id) && !proof.by_receipt.contains(&c.id)).then(|| {
            let expires = unix_now() + self.cfg.token_ttl.as_secs();
            self.token_key.receipt(owner, c.id, c.size, "", expires)
        })
    }

    /// Which of `claims` the caller proved it may use: by a receipt for `owner`, or
    /// because a file it may read holds the chunk.
    async fn prove(
        &self,
        owner: &str,
        who: &Principal,
        claims: &[ChunkClaim],
    ) -> Result<Proof, UploadError> {
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
        existing: Vec<NodeEndpoint>,
        targets: Vec<Candidate>,
        grant: Option<Receipt>,
    ) -> Placement {
        let scope = WriteScope {
            owner,
            targets: targets
                .iter()
                .map(|t| (t.node.id.as_str(), t.node.addr.as_str()))
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

/// The nodes of `recorded` that are alive, with their addresses.
fn live_holders(recorded: &[String], alive: &HashMap<&str, &NodeView>) -> Vec<NodeEndpoint> {
    recorded
        .iter()
        .filter_map(|n| alive.get(n.as_str()).map(|v| v.endpoint()))
        .collect()
}
