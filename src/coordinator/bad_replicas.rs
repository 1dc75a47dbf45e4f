//! Clients' reports of bad replicas. A client's word never drops a replica: the holder
//! re-hashes the chunk (`VerifyChunk`), and only a replica it finds missing or corrupt (and
//! moves aside) is forgotten. Each report makes a datanode read a whole chunk, so reports
//! are bounded: only for a chunk of a file the caller may read, at most one verification
//! pending per replica, none again for a cooldown after one, and a few at once in all.
//! The reason a client gives is logged cut short and escaped.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::{orders, NodeView, State};
use crate::chunk::ChunkId;
use crate::meta::MetaError;
use crate::model::NodeId;
use crate::security::keys::Principal;
use crate::security::Denied;

/// A replica verified lately is not verified again on a client's word for this long.
const COOLDOWN: Duration = Duration::from_secs(600);
/// Verifications asked for by clients, in flight at once in the whole cluster...
const MAX_PENDING: usize = 16;
/// ...and for one access key, so one key cannot take every slot.
const MAX_PENDING_PER_KEY: usize = 4;
/// Replicas remembered for the cooldown, at most.
const MAX_RECENT: usize = 10_000;
/// Characters of a client's reason that reach the log.
const REASON_MAX: usize = 200;

type Replica = (ChunkId, String);

#[derive(Default)]
pub struct BadReplicas {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// Replicas being verified, with the key that asked.
    pending: HashMap<Replica, String>,
    recent: HashMap<Replica, Instant>,
}

/// What became of a report (also the metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admission {
    Verify,
    Pending,
    Cooldown,
    Busy,
}

impl Admission {
    fn label(self) -> &'static str {
        match self {
            Admission::Verify => "verify",
            Admission::Pending => "pending",
            Admission::Cooldown => "cooldown",
            Admission::Busy => "busy",
        }
    }
}

impl BadReplicas {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.locked()
    }

    fn admit(&self, r: &Replica, key: &str) -> Admission {
        let mut inner = self.lock();
        if inner.pending.contains_key(r) {
            return Admission::Pending;
        }
        if inner.recent.get(r).is_some_and(|t| t.elapsed() < COOLDOWN) {
            return Admission::Cooldown;
        }
        let mine = inner.pending.values().filter(|k| *k == key).count();
        if inner.pending.len() >= MAX_PENDING || mine >= MAX_PENDING_PER_KEY {
            return Admission::Busy;
        }
        inner.pending.insert(r.clone(), key.to_string());
        Admission::Verify
    }

    fn done(&self, r: Replica) {
        let mut inner = self.lock();
        inner.pending.remove(&r);
        if inner.recent.len() >= MAX_RECENT {
            inner.recent.retain(|_, t| t.elapsed() < COOLDOWN);
        }
        if inner.recent.len() >= MAX_RECENT {
            // Still full of fresh entries: forget the oldest half rather than stop
            // remembering (which would end the cooldown for every new replica).
            let mut times: Vec<Instant> = inner.recent.values().copied().collect();
            times.sort();
            let cut = times[times.len() / 2];
            inner.recent.retain(|_, t| *t > cut);
        }
        inner.recent.insert(r, Instant::now());
    }
}

/// `reason` cut to [`REASON_MAX`] characters, for a log line (which escapes it).
fn short(reason: &str) -> String {
    reason.chars().take(REASON_MAX).collect()
}

/// Why a bad-replica report was refused.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("invalid node id {0:?}: expected 1 to 64 of [A-Za-z0-9_-]")]
    BadNodeId(String),
    #[error("unknown datanode {0:?}")]
    UnknownNode(String),
    #[error("datanode {node} holds no replica of chunk {chunk} on record")]
    NoSuchReplica { node: String, chunk: ChunkId },
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

impl State {
    /// A client says the replica of `chunk` on `node` is bad: see the module docs.
    pub async fn report_bad_replica(
        self: &Arc<Self>,
        who: &Principal,
        chunk: ChunkId,
        node: &str,
        reason: &str,
    ) -> Result<(), ReportError> {
        if NodeId::parse(node).is_err() {
            return Err(ReportError::BadNodeId(node.chars().take(80).collect()));
        }
        let scope = who.read_scope().cloned();
        let readable = self.store.readable_chunks(vec![chunk], scope).await?;
        let refused = |what: &str| {
            crate::metrics::coordinator()
                .bad_replica_reports
                .get_or_create(&crate::metrics::kind("refused"))
                .inc();
            ReportError::Denied(Denied::Forbidden(format!("chunk {chunk}: {what}")))
        };
        if !readable.contains(&chunk) {
            // The same answer whether or not the chunk is stored.
            return Err(refused("in no file this access key may read"));
        }
        let Some(view) = self.nodes.get(node) else {
            return Err(ReportError::UnknownNode(node.to_string()));
        };
        let on_record = self.store.replicas_of(vec![chunk]).await?;
        if !on_record
            .get(&chunk)
            .is_some_and(|n| n.iter().any(|n| n == node))
        {
            return Err(ReportError::NoSuchReplica {
                node: node.to_string(),
                chunk,
            });
        }
        let replica = (chunk, node.to_string());
        let admission = self.bad_replicas.admit(&replica, &who.key_id);
        crate::metrics::coordinator()
            .bad_replica_reports
            .get_or_create(&crate::metrics::kind(admission.label()))
            .inc();
        tracing::warn!(%chunk, %node, reason = ?short(reason), outcome = admission.label(), "client reported a bad replica");
        if admission == Admission::Verify {
            let state = self.clone();
            tokio::spawn(async move {
                verify_replica(&state, chunk, view).await;
                state.bad_replicas.done(replica);
            });
        }
        Ok(())
    }
}

async fn verify_replica(state: &Arc<State>, chunk: ChunkId, node: NodeView) {
    let outcome = orders::verify(state, &node.addr, chunk).await;
    match outcome {
        Ok(v) if v.present && v.intact => {
            tracing::info!(%chunk, node = %node.id, "replica verified intact")
        }
        Ok(_) => {
            let id = node.id.clone();
            match state.store.remove_replicas(vec![(chunk, id)]).await {
                Ok(_) => {
                    tracing::warn!(%chunk, node = %node.id, "bad replica confirmed and forgotten");
                    (state.events).corrupt(&node.id, &[chunk], "reported by a client, confirmed");
                    state.maint.wake.notify_one();
                }
                Err(e) => {
                    tracing::error!(%chunk, node = %node.id, error = %e, "forget bad replica")
                }
            }
        }
        Err(e) => tracing::warn!(%chunk, node = %node.id, error = %e, "could not verify replica"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(n: u32) -> Replica {
        (ChunkId::of(&n.to_le_bytes()), format!("dn-{n}"))
    }

    #[test]
    fn one_verification_per_replica_then_a_cooldown_and_caps() {
        let b = BadReplicas::default();
        assert_eq!(b.admit(&r(0), "k0"), Admission::Verify);
        assert_eq!(b.admit(&r(0), "k0"), Admission::Pending);
        b.done(r(0));
        assert_eq!(b.admit(&r(0), "k0"), Admission::Cooldown);
        // One key gets a few slots...
        for n in 1..=MAX_PENDING_PER_KEY as u32 {
            assert_eq!(b.admit(&r(n), "greedy"), Admission::Verify);
        }
        assert_eq!(b.admit(&r(100), "greedy"), Admission::Busy);
        // ...others the rest, up to the global cap.
        let free = MAX_PENDING - MAX_PENDING_PER_KEY;
        for n in 0..free as u32 {
            let key = format!("k{}", n / MAX_PENDING_PER_KEY as u32);
            assert_eq!(b.admit(&r(200 + n), &key), Admission::Verify);
        }
        assert_eq!(b.admit(&r(300), "another"), Admission::Busy);
    }

    #[test]
    fn the_cooldown_keeps_working_past_its_memory() {
        let b = BadReplicas::default();
        for n in 0..(MAX_RECENT as u32 + 50) {
            assert_eq!(b.admit(&r(n), "k"), Admission::Verify);
            b.done(r(n));
        }
        let last = r(MAX_RECENT as u32 + 100);
        assert_eq!(b.admit(&last, "k"), Admission::Verify);
        b.done(last.clone());
        assert_eq!(b.admit(&last, "k"), Admission::Cooldown);
        assert!(b.lock().recent.len() <= MAX_RECENT);
    }

    #[test]
    fn reasons_are_cut_short() {
        let long = "x\n".repeat(1000);
        assert_eq!(short(&long).chars().count(), REASON_MAX);
        assert_eq!(short("ok"), "ok");
    }
}
