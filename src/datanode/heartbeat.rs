//! Registration and heartbeats: the datanode's standing with the coordinator. A node
//! registers (receiving the token key and the certificate deny-list), then heartbeats its
//! figures at the interval the coordinator sets, registering again whenever the
//! coordinator no longer knows it. Every registration is followed by an inventory, which
//! is how a restarted coordinator (or one that forgot this node) learns what it holds.

use crate::sync::ReadWriteLocked;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tonic::{Code, Status};

use super::inventory::Inventory;
use super::scrub::ScrubProgress;
use super::store::ChunkStore;
use super::TokenSlot;
use crate::proto::pb;
use crate::security::join::{ClusterChannel, JoinProof};
use crate::security::revoke::{self, Revoked};
use crate::security::token::TokenKey;

fn stats_pb(store: &dyn ChunkStore, active: u32, scrub: &ScrubProgress) -> pb::NodeStats {
    let s = store.stats();
    pb::NodeStats {
        capacity_bytes: s.capacity_bytes,
        used_bytes: s.used_bytes,
        free_bytes: s.free_bytes,
        chunk_count: s.chunk_count,
        active_transfers: active,
        scrub: Some(scrub.to_pb()),
    }
}

/// What the heartbeat loop reports from and hands out to.
pub(super) struct Heartbeats {
    pub node_id: String,
    pub addr: String,
    /// Where clients outside the cluster's network reach us ('' when `addr` serves all).
    pub public_addr: String,
    pub store: Arc<dyn ChunkStore>,
    pub coordinator: ClusterChannel,
    pub inventory: Inventory,
    pub scrub: Arc<ScrubProgress>,
    pub active: Arc<AtomicU32>,
    /// Filled with the token key at each registration.
    pub tokens: TokenSlot,
    /// The certificate deny-list, from registration and heartbeats.
    pub revoked: Revoked,
    /// The join secret, which opens a token key sealed by a plaintext coordinator.
    pub proof: JoinProof,
    /// Whether the coordinator channel is TLS (then the token key comes in clear).
    pub tls_on: bool,
}

/// The token key of a RegisterResponse: in clear (TLS, or no authentication) or sealed
/// under the join secret (plaintext with access keys).
///
/// A node with a join secret and no TLS takes only the sealed form. The coordinator of
/// its cluster always seals the key for it, so a key in clear comes from something else
/// answering at the `--join` address (a wrong address, a spoofed DNS name): taking it
/// would let that impostor sign orders (DeleteChunks) this node obeys.
fn token_key_of(
    r: &pb::RegisterResponse,
    node_id: &str,
    proof: &JoinProof,
    tls_on: bool,
) -> Result<TokenKey, String> {
    if r.token_key_sealed.is_empty() {
        if proof.secret().is_some() && !tls_on {
            return Err(
                "the coordinator sent the token key in clear, which the coordinator \
                of a cluster without TLS and with access keys never does: refused. Either \
                --join does not name this cluster's coordinator, or that coordinator runs \
                without authentication (then remove datanode.join_secret)"
                    .to_string(),
            );
        }
        return TokenKey::from_bytes(&r.token_key)
            .ok_or_else(|| "the coordinator sent no valid token key".to_string());
    }
    let secret = proof.secret().ok_or(
        "the coordinator sealed the token key under its join secret: set datanode.join_secret",
    )?;
    secret
        .open_token_key(node_id, &r.token_key_sealed)
        .ok()
        .and_then(|k| TokenKey::from_bytes(&k))
        .ok_or_else(|| "the sealed token key does not open with this join secret".to_string())
}

/// Installs the deny-list the coordinator sent, if any.
fn apply_revoked(revoked: &Revoked, list: Option<pb::RevokedCertificates>, node_id: &str) {
    let Some(list) = list else { return };
    let set: Option<std::collections::HashSet<_>> = list
        .fingerprints
        .iter()
        .map(|f| revoke::parse_fingerprint(f).ok())
        .collect();
    match set {
        Some(set) => {
            if !set.is_empty() {
                tracing::info!(node = %node_id, revoked = set.len(), "certificate deny-list updated");
            }
            revoked.replace(set);
        }
        None => tracing::error!(node = %node_id, "the coordinator sent a malformed deny-list"),
    }
}

/// Registers with the coordinator and heartbeats until the process ends. Failures are
/// retried: a coordinator that restarts finds its nodes again within one interval.
pub(super) async fn heartbeat_loop(hb: Heartbeats) {
    let mut client = pb::cluster_client::ClusterClient::new(hb.coordinator.clone());
    let mut interval = Duration::from_secs(2);
    let mut registered = false;
    let mut warned = false;
    loop {
        let result = if registered {
            hb.beat(&mut client).await.map(|reregister| {
                if reregister {
                    tracing::info!(node = %hb.node_id, "coordinator asks this node to register again");
                    registered = false;
                }
            })
        } else {
            hb.register(&mut client).await.map(|every| {
                if let Some(every) = every {
                    interval = every;
                }
                registered = true;
            })
        };
        let again_now = match result {
            Ok(()) => {
                warned = false;
                // Asked to register again: do it now rather than after a pause.
                !registered
            }
            // A restarted coordinator refuses proofs dated before the second after it
            // started, and says which second that is: date the next proofs from it and
            // call again at once (the floor only rises, so this repeats at most a few
            // times), rather than wait a heartbeat or until our clock catches up.
            Err(status) if hb.proof.learn(&status) => {
                tracing::info!(node = %hb.node_id, "dating join proofs from the coordinator's start");
                true
            }
            Err(status) => {
                if !warned {
                    tracing::warn!(node = %hb.node_id, error = %status.message(), "coordinator unreachable; retrying");
                    warned = true;
                }
                if status.code() == Code::FailedPrecondition || status.code() == Code::NotFound {
                    registered = false;
                }
                false
            }
        };
        if again_now {
            continue;
        }
        tokio::time::sleep(if registered {
            interval
        } else {
            interval.min(Duration::from_millis(500))
        })
        .await;
    }
}

type Client = pb::cluster_client::ClusterClient<ClusterChannel>;

impl Heartbeats {
    /// Sends one heartbeat; `Ok(true)` if the coordinator asks this node to register again.
    async fn beat(&self, client: &mut Client) -> Result<bool, Status> {
        let mut req = tonic::Request::new(pb::HeartbeatRequest {
            node_id: self.node_id.clone(),
            stats: Some(stats_pb(
                &*self.store,
                self.active.load(Ordering::Relaxed),
                &self.scrub,
            )),
            revoked_digest: self.revoked.digest().into(),
            token_key_digest: self
                .tokens
                .read_locked()
                .as_ref()
                .map(|k| k.digest().to_vec())
                .unwrap_or_default()
                .into(),
        });
        req.set_timeout(Duration::from_secs(10));
        let sent = client.heartbeat(req).await;
        crate::metrics::datanode()
            .heartbeats
            .get_or_create(&crate::metrics::result(sent.is_ok()))
            .inc();
        let r = sent?.into_inner();
        apply_revoked(&self.revoked, r.revoked, &self.node_id);
        if !r.reregister && r.send_inventory {
            self.inventory.request();
        }
        Ok(r.reregister)
    }

    /// Registers; returns the heartbeat interval the coordinator asks for, if it does.
    async fn register(&self, client: &mut Client) -> Result<Option<Duration>, Status> {
        let mut req = tonic::Request::new(pb::RegisterRequest {
            node_id: self.node_id.clone(),
            addr: self.addr.clone(),
            stats: Some(stats_pb(&*self.store, 0, &self.scrub)),
            public_addr: self.public_addr.clone(),
        });
        req.set_timeout(Duration::from_secs(10));
        let r = client.register(req).await?.into_inner();
        let ms = r.heartbeat_interval_ms;
        match token_key_of(&r, &self.node_id, &self.proof, self.tls_on) {
            Ok(k) => *self.tokens.write_locked() = Some(k),
            // A key held from an earlier registration stays in use.
            Err(e) => tracing::error!(node = %self.node_id, error = %e,
                "token key refused: chunk requests are not served with it"),
        }
        apply_revoked(&self.revoked, r.revoked, &self.node_id);
        self.inventory.request();
        tracing::info!(node = %self.node_id, "registered with the coordinator");
        Ok((ms > 0).then(|| Duration::from_millis(ms)))
    }
}
