//! Chunk tokens: the coordinator's signed word that the bearer may do one operation on
//! the chunks named in the request, until a deadline.
//!
//! A token is `<expiry unix seconds>.<hex HMAC-SHA256>`; the MAC covers the operation,
//! the expiry and the chunk ids of the request in order. The ids are not in the token:
//! the datanode recomputes the MAC over the ids it is asked about, so a token cannot be
//! replayed for other chunks or another operation. The key is generated once per cluster
//! (kept in the coordinator's secrets file) and handed to datanodes when they register:
//! over mutual TLS, or without TLS sealed under the cluster's join secret (`join.rs`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tonic::Status;

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

fn unix_now() -> u64 {
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

    fn mac(&self, op: Op, expires: u64, ids: &[ChunkId]) -> Hmac<Sha256> {
        let mut m = <Hmac<Sha256> as Mac>::new_from_slice(&self.0).expect("any key length");
        m.update(b"dfsd-token-v1\n");
        m.update(op.label());
        m.update(b"\n");
        m.update(&expires.to_be_bytes());
        for id in ids {
            m.update(id.as_bytes());
        }
        m
    }

    /// A token for `op` on exactly `ids`, valid for `ttl`.
    pub fn sign(&self, op: Op, ids: &[ChunkId], ttl: Duration) -> String {
        self.sign_until(op, ids, unix_now() + ttl.as_secs().max(1))
    }

    pub fn sign_until(&self, op: Op, ids: &[ChunkId], expires: u64) -> String {
        let tag = self.mac(op, expires, ids).finalize().into_bytes();
        format!("{expires}.{}", hex::encode(tag))
    }

    /// Checks `token` for `op` on `ids`: Unauthenticated when missing, malformed or
    /// expired, PermissionDenied when it was signed for another operation or other chunks.
    pub fn verify(&self, token: &str, op: Op, ids: &[ChunkId]) -> Result<(), Status> {
        let what = std::str::from_utf8(op.label()).unwrap_or("op");
        if token.is_empty() {
            return Err(Status::unauthenticated(format!(
                "{what}: no chunk token (ask the coordinator for one)"
            )));
        }
        let parsed = token
            .split_once('.')
            .and_then(|(e, t)| Some((e.parse::<u64>().ok()?, hex::decode(t).ok()?)));
        let Some((expires, tag)) = parsed else {
            return Err(Status::unauthenticated(format!(
                "{what}: malformed chunk token"
            )));
        };
        if expires + CLOCK_SKEW.as_secs() < unix_now() {
            return Err(Status::unauthenticated(format!(
                "{what}: chunk token expired; ask the coordinator for a new one"
            )));
        }
        self.mac(op, expires, ids).verify_slice(&tag).map_err(|_| {
            Status::permission_denied(format!(
                "{what}: the chunk token does not cover this operation on these chunks"
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    fn id(b: u8) -> ChunkId {
        ChunkId::of(&[b])
    }

    #[test]
    fn a_token_covers_its_operation_and_chunks_only() {
        let k = TokenKey::generate();
        let t = k.sign(Op::Read, &[id(1)], Duration::from_secs(60));
        k.verify(&t, Op::Read, &[id(1)]).unwrap();
        let code = |r: Result<(), Status>| r.unwrap_err().code();
        assert_eq!(
            code(k.verify(&t, Op::Read, &[id(2)])),
            Code::PermissionDenied
        );
        assert_eq!(
            code(k.verify(&t, Op::Write, &[id(1)])),
            Code::PermissionDenied
        );
        assert_eq!(
            code(k.verify(&t, Op::Read, &[id(1), id(2)])),
            Code::PermissionDenied
        );
        // Another cluster's key.
        let other = TokenKey::generate();
        assert_eq!(
            code(other.verify(&t, Op::Read, &[id(1)])),
            Code::PermissionDenied
        );
        // Tampered expiry.
        let (_, tag) = t.split_once('.').unwrap();
        let later = format!("{}.{tag}", unix_now() + 3600);
        assert_eq!(
            code(k.verify(&later, Op::Read, &[id(1)])),
            Code::PermissionDenied
        );
    }

    #[test]
    fn expired_missing_and_malformed_tokens_are_unauthenticated() {
        let k = TokenKey::generate();
        let old = k.sign_until(Op::Write, &[id(1)], unix_now() - 3600);
        let code = |r: Result<(), Status>| r.unwrap_err().code();
        assert_eq!(
            code(k.verify(&old, Op::Write, &[id(1)])),
            Code::Unauthenticated
        );
        assert_eq!(
            code(k.verify("", Op::Write, &[id(1)])),
            Code::Unauthenticated
        );
        assert_eq!(
            code(k.verify("x.y", Op::Write, &[id(1)])),
            Code::Unauthenticated
        );
    }
}
