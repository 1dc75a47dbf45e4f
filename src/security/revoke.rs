//! Certificate revocation: a deny-list of certificate fingerprints (SHA-256 of the DER).
//!
//! The coordinator keeps the list in its database (`dfsd cert revoke`, admin only) and
//! hands it to datanodes at registration and in heartbeats whenever it changed (each side
//! compares a digest of the list). Every server checks the peer's certificate against its
//! copy on every call, before any handler runs, so a revoked certificate of any role
//! (gateway, node, client, coordinator) is refused at once by the coordinator and within
//! a heartbeat by every datanode.

use crate::sync::ReadWriteLocked;
use std::collections::HashSet;
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use tonic::Request;

use super::Denied;

/// SHA-256 of a certificate's DER encoding.
pub type Fingerprint = [u8; 32];

pub fn fingerprint(der: &[u8]) -> Fingerprint {
    Sha256::digest(der).into()
}

/// Parses 64 hex characters (either case; colons, as some tools print, are ignored).
pub fn parse_fingerprint(text: &str) -> Result<Fingerprint, String> {
    let clean: String = text.trim().chars().filter(|c| *c != ':').collect();
    hex::decode(&clean)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| {
            format!(
                "invalid certificate fingerprint {:?}: expected the SHA-256 of the DER as 64 hex \
                 characters",
                text.chars().take(80).collect::<String>()
            )
        })
}

/// The digest that names a list: equal lists, equal digests.
pub fn digest(list: &HashSet<Fingerprint>) -> Vec<u8> {
    let mut sorted: Vec<&Fingerprint> = list.iter().collect();
    sorted.sort();
    let mut h = Sha256::new();
    h.update(b"dfsd-revoked-v1\n");
    for f in sorted {
        h.update(f);
    }
    h.finalize().to_vec()
}

#[derive(Default)]
struct Inner {
    set: HashSet<Fingerprint>,
    digest: Vec<u8>,
}

/// This process's copy of the deny-list, shared by its servers' interceptors.
#[derive(Clone, Default)]
pub struct Revoked(Arc<RwLock<Inner>>);

impl Revoked {
    pub fn new(list: impl IntoIterator<Item = Fingerprint>) -> Revoked {
        let r = Revoked::default();
        r.replace(list.into_iter().collect());
        r
    }

    /// Installs a new list.
    pub fn replace(&self, set: HashSet<Fingerprint>) {
        let digest = digest(&set);
        *self.0.write_locked() = Inner { set, digest };
    }

    /// Adds one fingerprint; false if it was there already.
    pub fn insert(&self, f: Fingerprint) -> bool {
        let mut inner = self.0.write_locked();
        let added = inner.set.insert(f);
        inner.digest = digest(&inner.set);
        added
    }

    /// Digest of the current list; empty before any list was installed.
    pub fn digest(&self) -> Vec<u8> {
        self.0.read_locked().digest.clone()
    }

    /// The list, sorted, as hex.
    pub fn to_hex(&self) -> Vec<String> {
        let inner = self.0.read_locked();
        let mut v: Vec<String> = inner.set.iter().map(hex::encode).collect();
        v.sort();
        v
    }

    pub fn contains(&self, f: &Fingerprint) -> bool {
        self.0.read_locked().set.contains(f)
    }

    /// Refuses a call whose peer presented a revoked certificate (PermissionDenied).
    /// Calls without a certificate pass: what they may do is checked elsewhere.
    pub fn check<T>(&self, req: &Request<T>) -> Result<(), Denied> {
        let inner = self.0.read_locked();
        if inner.set.is_empty() {
            return Ok(());
        }
        let Some(certs) = req.peer_certs() else {
            return Ok(());
        };
        let Some(leaf) = certs.first() else {
            return Ok(());
        };
        let f = fingerprint(leaf);
        if inner.set.contains(&f) {
            return Err(Denied::Forbidden(format!(
                "certificate {} has been revoked (`dfsd cert revoked` lists the deny-list)",
                hex::encode(f)
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_parse_in_the_usual_spellings_only() {
        let f = fingerprint(b"der");
        let hex = hex::encode(f);
        assert_eq!(parse_fingerprint(&hex).unwrap(), f);
        assert_eq!(parse_fingerprint(&hex.to_uppercase()).unwrap(), f);
        let colons: Vec<String> = f.iter().map(|b| format!("{b:02X}")).collect();
        assert_eq!(parse_fingerprint(&colons.join(":")).unwrap(), f);
        for bad in [
            "",
            "abc",
            &hex[..62],
            &format!("{hex}00"),
            &hex.replace('a', "g"),
        ] {
            if bad != hex {
                assert!(parse_fingerprint(bad).is_err(), "{bad}");
            }
        }
    }

    #[test]
    fn the_digest_names_the_list_whatever_the_order() {
        let (a, b) = (fingerprint(b"a"), fingerprint(b"b"));
        let r = Revoked::default();
        assert!(r.digest().is_empty());
        r.replace([b, a].into_iter().collect());
        let d = r.digest();
        assert_eq!(d, digest(&[a, b].into_iter().collect()));
        assert_ne!(d, digest(&[a].into_iter().collect()));
        assert!(!r.insert(a));
        assert_eq!(r.digest(), d);
        let c = fingerprint(b"c");
        assert!(r.insert(c) && r.contains(&c));
        assert_ne!(r.digest(), d);
        assert_eq!(r.to_hex().len(), 3);
        // A call without a certificate is not this check's business.
        r.check(&Request::new(())).unwrap();
    }
}
