//! Sealed S3 secrets: an access key's secret, encrypted so that the coordinator can hand
//! it to S3 gateways (SigV4 verification recomputes an HMAC with the secret itself) while
//! its database holds only ciphertext.
//!
//! ChaCha20-Poly1305 (ring) under the cluster secret `s3_seal_key`: 32 random bytes made
//! once and kept in the coordinator's secrets file (`coordinator::secrets`), never in the
//! database that holds the sealed blobs. A sealed blob is `version || nonce ||
//! ciphertext || tag` with a random nonce per seal (96 random bits: collisions are out of
//! reach for the few keys a cluster makes). The key id is associated data, so a blob
//! copied onto another key's row does not open.

use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};

/// Length of the seal key.
pub const SEAL_KEY_LEN: usize = 32;
/// First byte of every sealed blob: the format, so it can change without guessing.
const VERSION: u8 = 1;
/// Prefix of the associated data (then the key id).
const AAD_CONTEXT: &[u8] = b"dfsd-s3-secret-v1\n";

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("the S3 seal key must be {SEAL_KEY_LEN} bytes")]
    KeyLength,
    #[error("sealed secret is malformed")]
    Malformed,
    #[error(
        "sealed secret does not open: altered, moved from another key, or sealed under \
         another seal key"
    )]
    Open,
}

/// An AEAD key: S3 secrets are sealed under the cluster's `s3_seal_key`; the token key,
/// when a plaintext coordinator hands it to a datanode, under a key derived from the join
/// secret (`join.rs`).
pub struct SealKey(LessSafeKey);

impl SealKey {
    /// Fresh random key material, for the first start of a coordinator.
    pub fn generate() -> Vec<u8> {
        let mut k = vec![0u8; SEAL_KEY_LEN];
        rand::rng().fill_bytes(&mut k);
        k
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<SealKey, SealError> {
        if bytes.len() != SEAL_KEY_LEN {
            return Err(SealError::KeyLength);
        }
        let key = UnboundKey::new(&CHACHA20_POLY1305, bytes).map_err(|_| SealError::KeyLength)?;
        Ok(SealKey(LessSafeKey::new(key)))
    }

    /// Seals `secret` for the key `key_id`.
    pub fn seal(&self, key_id: &str, secret: &str) -> Vec<u8> {
        self.seal_bytes(&aad(key_id), secret.as_bytes())
    }

    /// The secret sealed in `blob` for the key `key_id`.
    pub fn open(&self, key_id: &str, blob: &[u8]) -> Result<String, SealError> {
        let plain = self.open_bytes(&aad(key_id), blob)?;
        String::from_utf8(plain).map_err(|_| SealError::Malformed)
    }

    /// Seals `plain`, bound to the associated data `aad` (which must be given again to
    /// open it): `version || nonce || ciphertext || tag`.
    pub fn seal_bytes(&self, aad: &[u8], plain: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut sealed = plain.to_vec();
        self.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                &mut sealed,
            )
            // Fails only for inputs of gigabytes; dfsd seals keys of a few dozen bytes.
            .expect("a sealed secret is far below the AEAD size limit");
        let mut out = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a blob made by [`SealKey::seal_bytes`] with the same associated data.
    pub fn open_bytes(&self, aad: &[u8], blob: &[u8]) -> Result<Vec<u8>, SealError> {
        let tag_len = CHACHA20_POLY1305.tag_len();
        let (&version, rest) = blob.split_first().ok_or(SealError::Malformed)?;
        if version != VERSION || rest.len() < NONCE_LEN + tag_len {
            return Err(SealError::Malformed);
        }
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| SealError::Malformed)?;
        let mut buf = sealed.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .map_err(|_| SealError::Open)?;
        Ok(plain.to_vec())
    }
}

fn aad(key_id: &str) -> Vec<u8> {
    let mut a = AAD_CONTEXT.to_vec();
    a.extend_from_slice(key_id.as_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_secret_opens_for_its_own_key_only() {
        let key = SealKey::from_bytes(&SealKey::generate()).unwrap();
        let blob = key.seal("DKAAAAAAAAAAAAAAAAAA", "the-secret");
        assert_eq!(
            key.open("DKAAAAAAAAAAAAAAAAAA", &blob).unwrap(),
            "the-secret"
        );
        // Moved onto another key's row.
        assert!(matches!(
            key.open("DKBBBBBBBBBBBBBBBBBB", &blob),
            Err(SealError::Open)
        ));
        // Altered anywhere.
        for i in 1..blob.len() {
            let mut bad = blob.clone();
            bad[i] ^= 1;
            assert!(key.open("DKAAAAAAAAAAAAAAAAAA", &bad).is_err(), "byte {i}");
        }
        // Truncated, unknown version, empty.
        assert!(key.open("DKAAAAAAAAAAAAAAAAAA", &blob[..10]).is_err());
        let mut v2 = blob.clone();
        v2[0] = 2;
        assert!(matches!(
            key.open("DKAAAAAAAAAAAAAAAAAA", &v2),
            Err(SealError::Malformed)
        ));
        assert!(key.open("DKAAAAAAAAAAAAAAAAAA", &[]).is_err());
        // Under another cluster's seal key.
        let other = SealKey::from_bytes(&SealKey::generate()).unwrap();
        assert!(other.open("DKAAAAAAAAAAAAAAAAAA", &blob).is_err());
    }

    #[test]
    fn every_seal_uses_a_fresh_nonce() {
        let key = SealKey::from_bytes(&SealKey::generate()).unwrap();
        let a = key.seal("DKAAAAAAAAAAAAAAAAAA", "s");
        let b = key.seal("DKAAAAAAAAAAAAAAAAAA", "s");
        assert_ne!(a, b);
        assert!(SealKey::from_bytes(&[0u8; 16]).is_err());
    }
}
