//! Chunk identity: a chunk's id is the SHA-256 of its bytes, written as 64 lowercase hex
//! characters. [`ChunkId`] can only hold a validated id, so any path built from one stays
//! inside the chunk directory (invariant 7).

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

/// Default chunk size: 8 MiB.
pub const DEFAULT_CHUNK_SIZE: u64 = 8 * 1024 * 1024;
/// Largest chunk any node accepts: 64 MiB.
pub const MAX_CHUNK_SIZE: u64 = 64 * 1024 * 1024;
/// Size of the data frames chunks travel in.
pub const FRAME_SIZE: usize = 256 * 1024;

#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChunkId([u8; 32]);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid chunk id {shown:?}: expected 64 lowercase hex characters")]
pub struct InvalidChunkId {
    shown: String,
}

impl ChunkId {
    /// The id of `data`.
    pub fn of(data: &[u8]) -> Self {
        ChunkId(Sha256::digest(data).into())
    }

    pub fn from_digest(digest: [u8; 32]) -> Self {
        ChunkId(digest)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl FromStr for ChunkId {
    type Err = InvalidChunkId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let valid = s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if !valid {
            let shown: String = s.chars().take(80).collect();
            return Err(InvalidChunkId { shown });
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| InvalidChunkId {
            shown: s.to_string(),
        })?;
        Ok(ChunkId(out))
    }
}

impl fmt::Display for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for ChunkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChunkId({})", self.to_hex())
    }
}

/// Incremental hasher for a chunk arriving in frames.
#[derive(Default, Clone)]
pub struct ChunkHasher(Sha256);

impl ChunkHasher {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    pub fn finish(self) -> ChunkId {
        ChunkId(self.0.finalize().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_of_empty_is_the_sha256_of_nothing() {
        assert_eq!(
            ChunkId::of(b"").to_hex(),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }

    #[test]
    fn parse_round_trips() {
        let id = ChunkId::of(b"hello");
        assert_eq!(id.to_hex().parse::<ChunkId>().unwrap(), id);
    }

    #[test]
    fn refuses_anything_but_64_lowercase_hex() {
        let good = ChunkId::of(b"x").to_hex();
        for bad in [
            "".to_string(),
            "../../etc/passwd".to_string(),
            good.to_uppercase(),
            good[..63].to_string(),
            format!("{good}0"),
            format!("{}/", &good[..63]),
            format!("{}\0", &good[..63]),
            format!("{}g", &good[..63]),
        ] {
            assert!(bad.parse::<ChunkId>().is_err(), "accepted {bad:?}");
        }
    }

    #[test]
    fn incremental_hash_matches_one_shot() {
        let data = vec![7u8; 100_000];
        let mut h = ChunkHasher::new();
        for part in data.chunks(4096) {
            h.update(part);
        }
        assert_eq!(h.finish(), ChunkId::of(&data));
    }
}
