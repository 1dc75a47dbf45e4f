//! Chunk tokens: the coordinator's signed word that the bearer may do one operation on
//! the chunks named in the request, until a deadline.
//!
//! A token is `<expiry unix seconds>.<hex HMAC-SHA256>`; the MAC covers the operation,
//! the expiry and the chunk ids of the request in order. The ids are not in the token:
//! the datanode recomputes the MAC over the ids it is asked about, so a token cannot be
//! replayed for other chunks or another operation. The key is generated once per cluster
//! (kept in the coordinator's secrets file) and handed to datanodes when they register:
//! over mutual TLS, or without TLS sealed under the cluster's join secret (`join.rs`).
//!
//! A write token is also bound to a [`WriteScope`]: the access key the upload belongs to
//! and the nodes the coordinator chose. A datanode forwards a chunk only to those nodes, and
//! after storing it issues a [`Receipt`] to that key: the proof, checked by the coordinator
//! at commit, that the key had the chunk's bytes (see docs/decisions.md, issue 12).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::Denied;
use crate::chunk::ChunkId;

/// Length of a token key in bytes.
pub const KEY_LEN: usize = 32;
/// Tokens are accepted this long past their expiry, for clocks that differ a little.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

/// The operation a token allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// ReadChunk.
    Read,
    /// WriteChunk, at every node of the pipeline.
    Write,
    /// A coordinator order: VerifyChunk.
    Verify,
    /// A coordinator order: ReplicateChunk.
    Replicate,
    /// A coordinator order: DeleteChunks.
    Delete,
}

impl Op {
    fn label(self) -> &'static [u8] {
        match self {
            Op::Read => b"read",
            Op::Write => b"write",
            Op::Verify => b"verify",
            Op::Replicate => b"replicate",
            Op::Delete => b"delete",
        }
    }
}

#[derive(Clone)]
pub struct TokenKey([u8; KEY_LEN]);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

/// Seconds since the Unix epoch (0 for a clock before it).
pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

impl TokenKey {
    pub fn generate() -> TokenKey {
        let mut k = [0u8; KEY_LEN];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut k);
        TokenKey(k)
    }

    pub fn from_bytes(b: &[u8]) -> Option<TokenKey> {
        b.try_into().ok().map(TokenKey)
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Names this key without revealing it: HMAC(key, label), which no token MAC can
    /// equal (those start with another label). Datanodes send it in heartbeats so the
    /// coordinator can tell one that holds an old key to register again.
    pub fn digest(&self) -> [u8; 32] {
        let mut m = self.hmac();
        m.update(b"dfsd-token-key-digest-v1");
        m.finalize().into_bytes().into()
    }

    fn hmac(&self) -> Hmac<Sha256> {
        <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length")
    }

    fn mac(&self, op: Op, expires: u64, ids: &[ChunkId], scope: &[u8]) -> Hmac<Sha256> {
        let mut m = self.hmac();
        m.update(b"dfsd-token-v1\n");
        m.update(op.label());
        m.update(b"\n");
        m.update(&expires.to_be_bytes());
        for id in ids {
            m.update(id.as_bytes());
        }
        // Unscoped tokens keep the MAC they always had.
        if !scope.is_empty() {
            m.update(b"\nscope\n");
            m.update(scope);
        }
        m
    }

    /// A token for `op` on exactly `ids`, valid for `ttl`.
    pub fn sign(&self, op: Op, ids: &[ChunkId], ttl: Duration) -> String {
        self.sign_until(op, ids, unix_now() + ttl.as_secs().max(1))
    }

    pub fn sign_until(&self, op: Op, ids: &[ChunkId], expires: u64) -> String {
        self.sign_scoped(op, ids, &[], expires)
    }

    /// A write token for `id`, bound to `scope` (see [`WriteScope`]), valid for `ttl`.
    pub fn sign_write(&self, id: ChunkId, scope: &WriteScope<'_>, ttl: Duration) -> String {
        let expires = unix_now() + ttl.as_secs().max(1);
        self.sign_scoped(Op::Write, &[id], &scope.encode(), expires)
    }

    fn sign_scoped(&self, op: Op, ids: &[ChunkId], scope: &[u8], expires: u64) -> String {
        let tag = self.mac(op, expires, ids, scope).finalize().into_bytes();
        format!("{expires}.{}", hex::encode(tag))
    }

    /// Checks `token` for `op` on `ids`: Unauthenticated when missing, malformed or
    /// expired, PermissionDenied when it was signed for another operation or other chunks.
    pub fn verify(&self, token: &str, op: Op, ids: &[ChunkId]) -> Result<(), Denied> {
        self.verify_scoped(token, op, ids, &[]).map(|_| ())
    }

    /// Checks a write token for `id` and `scope`; returns the token's expiry (receipts
    /// carry it).
    pub fn verify_write(
        &self,
        token: &str,
        id: ChunkId,
        scope: &WriteScope<'_>,
    ) -> Result<u64, Denied> {
        self.verify_scoped(token, Op::Write, &[id], &scope.encode())
    }

    fn verify_scoped(
        &self,
        token: &str,
        op: Op,
        ids: &[ChunkId],
        scope: &[u8],
    ) -> Result<u64, Denied> {
        let what = std::str::from_utf8(op.label()).unwrap_or("op");
        if token.is_empty() {
            return Err(Denied::Unauthenticated(format!(
                "{what}: no chunk token (ask the coordinator for one)"
            )));
        }
        let parsed = token
            .split_once('.')
            .and_then(|(e, t)| Some((e.parse::<u64>().ok()?, hex::decode(t).ok()?)));
        let Some((expires, tag)) = parsed else {
            return Err(Denied::Unauthenticated(format!(
                "{what}: malformed chunk token"
            )));
        };
        if expires + CLOCK_SKEW.as_secs() < unix_now() {
            return Err(Denied::Unauthenticated(format!(
                "{what}: chunk token expired; ask the coordinator for a new one"
            )));
        }
        self.mac(op, expires, ids, scope)
            .verify_slice(&tag)
            .map_err(|_| {
                Denied::Forbidden(format!(
                    "{what}: the chunk token does not cover this operation on these chunks \
                     (or these pipeline nodes)"
                ))
            })?;
        Ok(expires)
    }

    fn receipt_mac(&self, owner: &str, id: ChunkId, size: u64, r: &ReceiptFields) -> Hmac<Sha256> {
        let mut m = self.hmac();
        m.update(b"dfsd-receipt-v1\n");
        put_field(&mut m, owner.as_bytes());
        m.update(id.as_bytes());
        m.update(&size.to_be_bytes());
        put_field(&mut m, r.node_id.as_bytes());
        m.update(&r.token_expires.to_be_bytes());
        m
    }

    /// A receipt for `owner`: node `node_id` (empty: the coordinator) holds chunk `id` of
    /// `size` bytes, stored or granted under a token expiring at `token_expires`.
    pub fn receipt(
        &self,
        owner: &str,
        id: ChunkId,
        size: u64,
        node_id: &str,
        token_expires: u64,
    ) -> Receipt {
        let fields = ReceiptFields {
            node_id: node_id.to_string(),
            token_expires,
        };
        let mac = self
            .receipt_mac(owner, id, size, &fields)
            .finalize()
            .into_bytes();
        Receipt {
            node_id: fields.node_id,
            token_expires,
            mac: mac.to_vec(),
        }
    }

    /// True if `r` proves that `owner` may use chunk `id` of `size` bytes now: signed with
    /// this key for exactly these, and issued no longer than `valid_for` past its token's
    /// expiry.
    pub fn check_receipt(
        &self,
        r: &Receipt,
        owner: &str,
        id: ChunkId,
        size: u64,
        valid_for: Duration,
    ) -> bool {
        let fields = ReceiptFields {
            node_id: r.node_id.clone(),
            token_expires: r.token_expires,
        };
        r.token_expires.saturating_add(valid_for.as_secs()) >= unix_now()
            && self
                .receipt_mac(owner, id, size, &fields)
                .verify_slice(&r.mac)
                .is_ok()
    }
}

/// What a receipt says besides the key, chunk and size it is for.
struct ReceiptFields {
    node_id: String,
    token_expires: u64,
}

/// Proof that an access key may use a chunk (see the module docs). The wire form is
/// `pb::Receipt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    /// The datanode that stored the chunk; empty when the coordinator granted it.
    pub node_id: String,
    pub token_expires: u64,
    pub mac: Vec<u8>,
}

/// What a write token binds besides its chunk: the access key the upload belongs to and
/// the nodes (id, address) the coordinator chose for the chunk, in the placement's order.
pub struct WriteScope<'a> {
    pub owner: &'a str,
    pub targets: Vec<(&'a str, &'a str)>,
}

impl WriteScope<'_> {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut field = |b: &[u8]| {
            out.extend_from_slice(&(b.len() as u32).to_be_bytes());
            out.extend_from_slice(b);
        };
        field(self.owner.as_bytes());
        for (id, addr) in &self.targets {
            field(id.as_bytes());
            field(addr.as_bytes());
        }
        out
    }

    /// True if (`id`, `addr`) is one of the chosen nodes.
    pub fn allows(&self, id: &str, addr: &str) -> bool {
        self.targets.iter().any(|(i, a)| *i == id && *a == addr)
    }
}

/// Feeds a length-prefixed field, so that field boundaries cannot be moved.
fn put_field(m: &mut Hmac<Sha256>, b: &[u8]) {
    m.update(&(b.len() as u32).to_be_bytes());
    m.update(b);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(d: &Denied) -> &'static str {
        match d {
            Denied::Unauthenticated(_) => "unauthenticated",
            Denied::Forbidden(_) => "forbidden",
        }
    }

    fn id(b: u8) -> ChunkId {
        ChunkId::of(&[b])
    }

    #[test]
    fn a_token_covers_its_operation_and_chunks_only() {
        let k = TokenKey::generate();
        let t = k.sign(Op::Read, &[id(1)], Duration::from_secs(60));
        k.verify(&t, Op::Read, &[id(1)]).unwrap();
        let code = |r: Result<(), Denied>| kind(&r.unwrap_err());
        assert_eq!(code(k.verify(&t, Op::Read, &[id(2)])), "forbidden");
        assert_eq!(code(k.verify(&t, Op::Write, &[id(1)])), "forbidden");
        assert_eq!(code(k.verify(&t, Op::Read, &[id(1), id(2)])), "forbidden");
        // Another cluster's key.
        let other = TokenKey::generate();
        assert_eq!(code(other.verify(&t, Op::Read, &[id(1)])), "forbidden");
        // Tampered expiry.
        let (_, tag) = t.split_once('.').unwrap();
        let later = format!("{}.{tag}", unix_now() + 3600);
        assert_eq!(code(k.verify(&later, Op::Read, &[id(1)])), "forbidden");
    }

    #[test]
    fn a_write_token_covers_its_owner_and_targets() {
        let k = TokenKey::generate();
        let scope = WriteScope {
            owner: "DKAAAAAAAAAAAAAAAAAA",
            targets: vec![("dn-1", "http://a:1"), ("dn-2", "http://b:2")],
        };
        let t = k.sign_write(id(1), &scope, Duration::from_secs(60));
        let exp = k.verify_write(&t, id(1), &scope).unwrap();
        assert!(exp > unix_now());
        let other_owner = WriteScope {
            owner: "DKBBBBBBBBBBBBBBBBBB",
            targets: scope.targets.clone(),
        };
        let more_targets = WriteScope {
            owner: scope.owner,
            targets: vec![("dn-1", "http://a:1"), ("dn-2", "http://evil:2")],
        };
        for bad in [&other_owner, &more_targets] {
            assert_eq!(
                kind(&k.verify_write(&t, id(1), bad).unwrap_err()),
                "forbidden"
            );
        }
        // Neither an unscoped write token nor the same scope for another chunk.
        assert!(k.verify(&t, Op::Write, &[id(1)]).is_err());
        assert!(k.verify_write(&t, id(2), &scope).is_err());
        assert!(scope.allows("dn-2", "http://b:2"));
        assert!(!scope.allows("dn-2", "http://a:1"));
    }

    #[test]
    fn receipts_prove_one_chunk_for_one_key() {
        let k = TokenKey::generate();
        let owner = "DKAAAAAAAAAAAAAAAAAA";
        let exp = unix_now() + 60;
        let r = k.receipt(owner, id(1), 1, "dn-1", exp);
        let ttl = Duration::from_secs(3600);
        assert!(k.check_receipt(&r, owner, id(1), 1, ttl));
        assert!(!k.check_receipt(&r, "DKBBBBBBBBBBBBBBBBBB", id(1), 1, ttl));
        assert!(!k.check_receipt(&r, owner, id(2), 1, ttl));
        assert!(!k.check_receipt(&r, owner, id(1), 2, ttl));
        let mut moved = r.clone();
        moved.node_id = "dn-2".into();
        assert!(!k.check_receipt(&moved, owner, id(1), 1, ttl));
        let mut later = r.clone();
        later.token_expires += 3600;
        assert!(!k.check_receipt(&later, owner, id(1), 1, ttl));
        assert!(!TokenKey::generate().check_receipt(&r, owner, id(1), 1, ttl));
        // Too old: its token expired longer ago than the validity.
        let old = k.receipt(owner, id(1), 1, "dn-1", unix_now() - 7200);
        assert!(!k.check_receipt(&old, owner, id(1), 1, ttl));
    }

    #[test]
    fn expired_missing_and_malformed_tokens_are_unauthenticated() {
        let k = TokenKey::generate();
        let old = k.sign_until(Op::Write, &[id(1)], unix_now() - 3600);
        let code = |r: Result<(), Denied>| kind(&r.unwrap_err());
        assert_eq!(code(k.verify(&old, Op::Write, &[id(1)])), "unauthenticated");
        assert_eq!(code(k.verify("", Op::Write, &[id(1)])), "unauthenticated");
        assert_eq!(
            code(k.verify("x.y", Op::Write, &[id(1)])),
            "unauthenticated"
        );
    }
}
