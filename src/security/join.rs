//! The join secret: how datanodes prove they belong to a cluster that runs without TLS.
//!
//! With TLS a node certificate from the cluster CA is the proof, and this module is not
//! used. Without TLS, and with access keys on, the coordinator demands knowledge of the
//! cluster's join secret on every Cluster call, and the secret itself never crosses the
//! wire:
//!
//! - each call carries `x-dfsd-join: <unix secs>.<nonce hex>.<mac hex>`, the MAC being
//!   HMAC-SHA256 under a key derived from the secret, over a context label, the time and
//!   a random nonce. The coordinator accepts a proof within [`WINDOW_SECS`] of its own
//!   clock, and once: it remembers the nonces it accepted for as long as they could
//!   still be valid, so a proof read off the wire cannot be replayed. That memory does
//!   not survive a restart, so a coordinator also refuses every proof dated before the
//!   second after it started (saying from when it accepts them, in
//!   [`NOT_BEFORE_HEADER`]: a datanode whose clock is a little behind dates its next
//!   proofs from then on rather than being locked out until its clock catches up);
//! - `RegisterResponse` carries the chunk-token key sealed (ChaCha20-Poly1305,
//!   `seal.rs`) under a second key derived from the secret and bound to the node id, so a
//!   sniffer learns neither the join secret nor the token key.
//!
//! Both keys are HMAC-SHA256(secret, label) with distinct labels. What this does not do:
//! encrypt anything else, or stop an attacker who can alter traffic in flight (one who
//! relays a real node's calls can change their content); that takes TLS.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use tonic::metadata::{MetadataMap, MetadataValue};
use tonic::service::interceptor::InterceptedService;
use tonic::transport::Channel;
use tonic::{Request, Status};

use super::seal::{SealError, SealKey};

/// Metadata key of the proof.
pub const JOIN_HEADER: &str = "x-dfsd-join";
/// Metadata key, on a refusal of a proof dated before the coordinator started, of the
/// first second (unix) it accepts.
pub const NOT_BEFORE_HEADER: &str = "x-dfsd-join-not-before";
/// A proof is accepted this many seconds either side of the coordinator's clock.
pub const WINDOW_SECS: u64 = 120;
/// Shortest join secret accepted in configuration.
pub const MIN_SECRET_LEN: usize = 20;
/// Length of a generated join secret (about 238 random bits).
const GENERATED_LEN: usize = 40;
const NONCE_LEN: usize = 16;
/// Most nonces remembered at once. Only valid proofs are remembered, so only holders of
/// the secret can fill this; a cluster makes a few calls per node and second.
const MAX_REMEMBERED: usize = 1 << 20;
const PROOF_LABEL: &[u8] = b"dfsd-join-proof-v1";
const SEAL_LABEL: &[u8] = b"dfsd-join-seal-v1";
const MAC_CONTEXT: &[u8] = b"dfsd-join-v1\n";
const TOKEN_KEY_AAD: &[u8] = b"dfsd-token-key-v1\n";

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn derive(secret: &str, label: &[u8]) -> [u8; 32] {
    let mut m = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(label);
    m.finalize().into_bytes().into()
}

/// The keys derived from a join secret (the secret itself is not kept).
pub struct JoinSecret {
    proof: Hmac<Sha256>,
    seal: SealKey,
}

impl std::fmt::Debug for JoinSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JoinSecret(..)")
    }
}

impl JoinSecret {
    pub fn new(secret: &str) -> JoinSecret {
        let proof = <Hmac<Sha256> as Mac>::new_from_slice(&derive(secret, PROOF_LABEL))
            .expect("any key length");
        let seal = SealKey::from_bytes(&derive(secret, SEAL_LABEL)).expect("32 bytes");
        JoinSecret { proof, seal }
    }

    /// A fresh secret for a coordinator's first start: 40 characters of [A-Za-z0-9].
    pub fn generate() -> String {
        rand::rng()
            .sample_iter(rand::distr::Alphanumeric)
            .take(GENERATED_LEN)
            .map(char::from)
            .collect()
    }

    fn mac(&self, secs: u64, nonce: &[u8]) -> Hmac<Sha256> {
        let mut m = self.proof.clone();
        m.update(MAC_CONTEXT);
        m.update(&secs.to_be_bytes());
        m.update(nonce);
        m
    }

    /// A proof for one call, made at `secs`.
    pub fn proof_at(&self, secs: u64) -> String {
        let nonce: [u8; NONCE_LEN] = rand::random();
        let tag = self.mac(secs, &nonce).finalize().into_bytes();
        format!("{secs}.{}.{}", hex::encode(nonce), hex::encode(tag))
    }

    /// The token key sealed for the datanode `node_id`.
    pub fn seal_token_key(&self, node_id: &str, key: &[u8]) -> Vec<u8> {
        self.seal.seal_bytes(&token_key_aad(node_id), key)
    }

    /// Opens what [`JoinSecret::seal_token_key`] sealed for `node_id`.
    pub fn open_token_key(&self, node_id: &str, blob: &[u8]) -> Result<Vec<u8>, SealError> {
        self.seal.open_bytes(&token_key_aad(node_id), blob)
    }
}

fn token_key_aad(node_id: &str) -> Vec<u8> {
    let mut a = TOKEN_KEY_AAD.to_vec();
    a.extend_from_slice(node_id.as_bytes());
    a
}

/// The coordinator's side: checks proofs and remembers the nonces it accepted.
pub struct JoinGuard {
    secret: JoinSecret,
    seen: Mutex<Seen>,
    /// The first second whose proofs were surely made after this guard existed: `seen`
    /// knows nothing from before, so older proofs could be replays.
    not_before: u64,
}

#[derive(Default)]
struct Seen {
    /// Nonce -> the last second its proof is valid.
    until: HashMap<[u8; NONCE_LEN], u64>,
    /// Size at which expired nonces are next swept out.
    sweep_at: usize,
}

impl JoinGuard {
    /// A guard for a coordinator starting now.
    pub fn new(secret: &str) -> JoinGuard {
        JoinGuard::started_at(secret, unix_now())
    }

    /// A guard for a coordinator that started during the second `started`: it accepts
    /// proofs made from the next second on (one made earlier in that second may predate
    /// the start).
    pub fn started_at(secret: &str, started: u64) -> JoinGuard {
        JoinGuard {
            secret: JoinSecret::new(secret),
            seen: Mutex::default(),
            not_before: started + 1,
        }
    }

    pub fn secret(&self) -> &JoinSecret {
        &self.secret
    }

    /// Lets a call through only with a fresh, valid proof in its metadata.
    pub fn check(&self, md: &MetadataMap) -> Result<(), Status> {
        self.check_at(md, unix_now())
    }

    pub fn check_at(&self, md: &MetadataMap, now: u64) -> Result<(), Status> {
        let Some(value) = md.get(JOIN_HEADER) else {
            return Err(Status::unauthenticated(
                "this coordinator runs without TLS and requires the cluster's join secret: \
                 set datanode.join_secret (DFSD_DATANODE__JOIN_SECRET or --join-secret) to \
                 the coordinator's join secret (coordinator.join_secret, or the one printed \
                 at its first start and kept in its secrets file)",
            ));
        };
        let malformed = || Status::unauthenticated(format!("malformed {JOIN_HEADER} proof"));
        let text = value.to_str().map_err(|_| malformed())?;
        let mut parts = text.splitn(3, '.');
        let (Some(secs), Some(nonce), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed());
        };
        let secs: u64 = secs.parse().map_err(|_| malformed())?;
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or_else(malformed)?;
        let tag = hex::decode(tag).map_err(|_| malformed())?;
        self.secret
            .mac(secs, &nonce)
            .verify_slice(&tag)
            .map_err(|_| {
                Status::unauthenticated(
                    "wrong join secret: datanode.join_secret must equal the coordinator's \
                     join secret",
                )
            })?;
        let skew = secs.abs_diff(now);
        if skew > WINDOW_SECS {
            return Err(Status::unauthenticated(format!(
                "join proof made {skew} s away from the coordinator's clock (at most \
                 {WINDOW_SECS} s allowed): synchronise the clocks"
            )));
        }
        if secs < self.not_before {
            let mut s = Status::unauthenticated(format!(
                "join proof dated {secs}, before this coordinator started (it accepts proofs \
                 dated {} or later, so none sent before a restart can be replayed); a \
                 datanode retries with a later date",
                self.not_before
            ));
            s.metadata_mut()
                .insert(NOT_BEFORE_HEADER, MetadataValue::from(self.not_before));
            return Err(s);
        }
        let mut seen = self.seen.locked();
        if seen.until.len() >= seen.sweep_at {
            seen.until.retain(|_, until| *until >= now);
            seen.sweep_at = (seen.until.len() * 2).max(1024);
        }
        if seen.until.contains_key(&nonce) {
            return Err(Status::unauthenticated(
                "join proof already used: a replayed request is refused",
            ));
        }
        if seen.until.len() >= MAX_REMEMBERED {
            return Err(Status::resource_exhausted(
                "too many cluster calls within the join proof window; try again shortly",
            ));
        }
        seen.until.insert(nonce, secs + WINDOW_SECS);
        Ok(())
    }
}

/// The datanode's side: adds a fresh proof to every call on the coordinator channel
/// (nothing when no join secret is configured, as with TLS).
#[derive(Clone, Default)]
pub struct JoinProof(Option<Arc<Prover>>);

struct Prover {
    secret: JoinSecret,
    /// No proof is dated before this (unix seconds): what a restarted coordinator said it
    /// accepts, when our clock is behind its.
    floor: AtomicU64,
}

impl JoinProof {
    /// From `datanode.join_secret`; empty means none.
    pub fn new(secret: &str) -> JoinProof {
        JoinProof((!secret.is_empty()).then(|| {
            Arc::new(Prover {
                secret: JoinSecret::new(secret),
                floor: AtomicU64::new(0),
            })
        }))
    }

    pub fn secret(&self) -> Option<&JoinSecret> {
        self.0.as_deref().map(|p| &p.secret)
    }

    /// A proof for a call made at `now`, dated no earlier than the learned floor.
    pub fn proof_at(&self, now: u64) -> Option<String> {
        let p = self.0.as_deref()?;
        Some(p.secret.proof_at(now.max(p.floor.load(Ordering::Relaxed))))
    }

    /// Learns from a refusal of a proof dated before the coordinator started when its
    /// proofs may be dated. A date further ahead than a proof could be accepted is
    /// ignored (it would only lock this node out). True if the floor rose.
    pub fn learn_at(&self, refusal: &Status, now: u64) -> bool {
        let Some(p) = self.0.as_deref() else {
            return false;
        };
        let Some(t) = refusal
            .metadata()
            .get(NOT_BEFORE_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return false;
        };
        if t > now + WINDOW_SECS {
            return false;
        }
        p.floor.fetch_max(t, Ordering::Relaxed) < t
    }

    /// [`JoinProof::learn_at`] now.
    pub fn learn(&self, refusal: &Status) -> bool {
        self.learn_at(refusal, unix_now())
    }
}

impl tonic::service::Interceptor for JoinProof {
    fn call(&mut self, mut req: Request<()>) -> Result<Request<()>, Status> {
        if let Some(proof) = self.proof_at(unix_now()) {
            let proof = MetadataValue::try_from(proof)
                .map_err(|_| Status::internal("join proof is not valid metadata"))?;
            req.metadata_mut().insert(JOIN_HEADER, proof);
        }
        Ok(req)
    }
}

/// A datanode's channel to the coordinator's Cluster service: every call proves the join
/// secret when one is configured.
pub type ClusterChannel = InterceptedService<Channel, JoinProof>;

pub fn cluster_channel(channel: Channel, proof: JoinProof) -> ClusterChannel {
    InterceptedService::new(channel, proof)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    const SECRET: &str = "join-secret-for-tests-0123456789";

    fn md(proof: &str) -> MetadataMap {
        let mut m = MetadataMap::new();
        m.insert(JOIN_HEADER, proof.parse().unwrap());
        m
    }

    fn refused(r: Result<(), Status>, what: &str) -> String {
        let e = r.unwrap_err();
        assert_eq!(e.code(), Code::Unauthenticated, "{what}: {e:?}");
        e.message().to_string()
    }

    #[test]
    fn a_proof_is_accepted_once_within_the_window() {
        let now = 1_800_000_000;
        let guard = JoinGuard::started_at(SECRET, now - WINDOW_SECS - 10);
        let node = JoinSecret::new(SECRET);
        let p = node.proof_at(now - 60);
        guard.check_at(&md(&p), now).unwrap();
        let e = refused(guard.check_at(&md(&p), now), "replay");
        assert!(e.contains("replayed"), "{e}");
        // Each call makes a fresh one.
        guard.check_at(&md(&node.proof_at(now)), now).unwrap();
        // Outside the window, either way.
        for t in [now - WINDOW_SECS - 1, now + WINDOW_SECS + 1] {
            let e = refused(guard.check_at(&md(&node.proof_at(t)), now), "skew");
            assert!(e.contains("clocks"), "{e}");
        }
        // Nonces are swept once they cannot be valid any more, never before.
        let later = now + 10 * WINDOW_SECS;
        for _ in 0..2000 {
            guard.check_at(&md(&node.proof_at(later)), later).unwrap();
        }
        let seen = guard.seen.lock().unwrap();
        assert!(seen.until.len() <= 2000, "{}", seen.until.len());
        assert!(seen.until.values().all(|u| *u >= later));
    }

    #[test]
    fn wrong_missing_and_malformed_proofs_are_refused_with_the_fix() {
        let now = 1_800_000_000;
        let guard = JoinGuard::started_at(SECRET, now - WINDOW_SECS - 10);
        let e = refused(guard.check_at(&MetadataMap::new(), now), "missing");
        assert!(e.contains("DFSD_DATANODE__JOIN_SECRET"), "{e}");
        let other = JoinSecret::new("another-secret-0123456789");
        let e = refused(guard.check_at(&md(&other.proof_at(now)), now), "wrong");
        assert!(e.contains("wrong join secret"), "{e}");
        let good = JoinSecret::new(SECRET).proof_at(now);
        let (secs, rest) = good.split_once('.').unwrap();
        // The time, the nonce or the tag changed: the MAC no longer matches.
        let later = format!("{}.{rest}", secs.parse::<u64>().unwrap() + 1);
        refused(guard.check_at(&md(&later), now), "moved time");
        let mut flipped = good.clone().into_bytes();
        let i = secs.len() + 3;
        flipped[i] = if flipped[i] == b'0' { b'1' } else { b'0' };
        refused(
            guard.check_at(&md(std::str::from_utf8(&flipped).unwrap()), now),
            "altered nonce",
        );
        for bad in [
            "",
            "x",
            "1.2",
            "1.zz.00",
            "abc.00.00",
            &format!("{secs}.00.00"),
        ] {
            refused(guard.check_at(&md(bad), now), bad);
        }
        // None of that was remembered.
        assert!(guard.seen.lock().unwrap().until.is_empty());
    }

    #[test]
    fn proofs_from_before_a_restart_are_refused_and_a_late_clock_catches_up() {
        let started = 1_800_000_000;
        let guard = JoinGuard::started_at(SECRET, started);
        let node = JoinProof::new(SECRET);
        // Sniffed during the old process's life, or the very second it started: a new
        // process has no record of them, so it refuses them all.
        for t in [started - 100, started - 1, started] {
            let e = guard
                .check_at(&md(&node.proof_at(t).unwrap()), started + 1)
                .unwrap_err();
            assert_eq!(e.code(), Code::Unauthenticated);
            assert!(
                e.message().contains("before this coordinator started"),
                "{e:?}"
            );
        }
        guard
            .check_at(&md(&node.proof_at(started + 1).unwrap()), started + 1)
            .unwrap();
        // A node whose clock is 30 s behind learns from the refusal when to date its
        // proofs, and is let in at once instead of 30 s later.
        let late = started + 2 - 30;
        let e = guard
            .check_at(&md(&node.proof_at(late).unwrap()), started + 2)
            .unwrap_err();
        assert!(node.learn_at(&e, late));
        assert!(!node.learn_at(&e, late), "learnt twice");
        guard
            .check_at(&md(&node.proof_at(late).unwrap()), started + 2)
            .unwrap();
        // A floor further ahead than any proof could be accepted is not taken.
        let mut far = Status::unauthenticated("x");
        far.metadata_mut().insert(
            NOT_BEFORE_HEADER,
            MetadataValue::from(late + WINDOW_SECS + 1),
        );
        assert!(!node.learn_at(&far, late));
        assert!(!JoinProof::default().learn_at(&e, late));
        assert!(JoinProof::default().proof_at(late).is_none());
    }

    #[test]
    fn the_token_key_opens_with_the_secret_and_node_id_only() {
        let coord = JoinSecret::new(SECRET);
        let key = [7u8; 32];
        let blob = coord.seal_token_key("dn-1", &key);
        assert!(!blob.windows(32).any(|w| w == key));
        let node = JoinSecret::new(SECRET);
        assert_eq!(node.open_token_key("dn-1", &blob).unwrap(), key);
        assert!(node.open_token_key("dn-2", &blob).is_err());
        let other = JoinSecret::new("another-secret-0123456789");
        assert!(other.open_token_key("dn-1", &blob).is_err());
        // The two derived keys are unrelated to each other and to the secret.
        assert_ne!(derive(SECRET, PROOF_LABEL), derive(SECRET, SEAL_LABEL));
        let s = JoinSecret::generate();
        assert_eq!(s.len(), GENERATED_LEN);
        assert!(s.bytes().all(|b| b.is_ascii_alphanumeric()));
    }
}
