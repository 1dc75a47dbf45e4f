//! Access keys and what they allow.
//!
//! A key is an id (`DK` + 18 characters, shown freely) and a secret (40 characters,
//! shown once at creation). Calls are checked against a salted SHA-256 of the secret:
//! secrets are 238 random bits, so a slow password hash would add cost and no safety.
//! A key has a role (admin, readwrite, readonly) and a path prefix it is confined to.
//! Keys made since migration 004 also keep their secret sealed (`seal.rs`) so that it can
//! sign S3 requests, under a key the database does not hold (`coordinator::secrets`).

use rand::Rng;
use sha2::{Digest, Sha256};

use super::Denied;
use crate::path::DfsPath;

const ID_PREFIX: &str = "DK";
const ID_LEN: usize = 20;
const SECRET_LEN: usize = 40;
const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// Metadata keys a client sends its credentials in.
pub const KEY_ID_HEADER: &str = "x-dfsd-key-id";
pub const SECRET_HEADER: &str = "x-dfsd-secret";
/// Metadata key naming the access key a gateway calls on behalf of (see
/// `coordinator::access`).
pub const ON_BEHALF_HEADER: &str = "x-dfsd-on-behalf-of";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRole {
    /// Everything, cluster operations and key management included.
    Admin,
    /// Read and write files under the key's prefix.
    ReadWrite,
    /// Read files under the key's prefix.
    ReadOnly,
}

impl KeyRole {
    pub fn parse(s: &str) -> Result<KeyRole, String> {
        match s {
            "admin" => Ok(KeyRole::Admin),
            "readwrite" => Ok(KeyRole::ReadWrite),
            "readonly" => Ok(KeyRole::ReadOnly),
            other => Err(format!(
                "invalid role {other:?}: expected admin, readwrite or readonly"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            KeyRole::Admin => "admin",
            KeyRole::ReadWrite => "readwrite",
            KeyRole::ReadOnly => "readonly",
        }
    }
}

/// A stored access key.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub name: String,
    pub role: KeyRole,
    pub prefix: DfsPath,
    pub salt: Vec<u8>,
    pub secret_hash: Vec<u8>,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
    /// The secret sealed for S3 (`seal.rs`); `None` for keys made before migration 004,
    /// which cannot sign S3 requests.
    pub s3_secret_sealed: Option<Vec<u8>>,
}

fn random_string(len: usize) -> String {
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A fresh key id and secret, and the salt and hash to store.
pub fn generate() -> (String, String, Vec<u8>, Vec<u8>) {
    let id = format!("{ID_PREFIX}{}", random_string(ID_LEN - ID_PREFIX.len())).to_uppercase();
    let secret = random_string(SECRET_LEN);
    let mut salt = vec![0u8; 16];
    rand::RngCore::fill_bytes(&mut rand::rng(), &mut salt);
    let hash = hash_secret(&salt, &secret);
    (id, secret, salt, hash)
}

pub fn hash_secret(salt: &[u8], secret: &str) -> Vec<u8> {
    let mut h = Sha256::new();
    h.update(b"dfsd-key-v1\n");
    h.update(salt);
    h.update(secret.as_bytes());
    h.finalize().to_vec()
}

/// Checks the shape of a key id before it is looked up, so junk never reaches the store.
pub fn check_key_id(id: &str) -> Result<(), Denied> {
    let ok = id.len() == ID_LEN && id.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(Denied::Unauthenticated(format!(
            "malformed access key id {:?}",
            id.chars().take(40).collect::<String>()
        )))
    }
}

impl AccessKey {
    /// Whether `secret` is this key's, in time independent of where they differ.
    pub fn secret_matches(&self, secret: &str) -> bool {
        let h = hash_secret(&self.salt, secret);
        h.len() == self.secret_hash.len()
            && h.iter()
                .zip(&self.secret_hash)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The caller of a coordinator method, as its credentials establish.
#[derive(Debug, Clone)]
pub struct Principal {
    /// Empty when authentication is off (then the caller may do anything).
    pub key_id: String,
    pub role: KeyRole,
    pub prefix: DfsPath,
}

impl Principal {
    /// Anyone, when the coordinator runs without authentication (`dfsd dev`).
    pub fn open() -> Principal {
        Principal {
            key_id: String::new(),
            role: KeyRole::Admin,
            prefix: DfsPath::root(),
        }
    }

    pub fn of(key: &AccessKey) -> Principal {
        Principal {
            key_id: key.id.clone(),
            role: key.role,
            prefix: key.prefix.clone(),
        }
    }

    fn within(&self, p: &DfsPath) -> bool {
        self.role == KeyRole::Admin || p.starts_with(&self.prefix)
    }

    /// True if `p` is a strict ancestor of the prefix: the key may see that it exists
    /// (to walk down to its own subtree) but not what else is in it.
    pub fn is_on_the_way(&self, p: &DfsPath) -> bool {
        self.role != KeyRole::Admin && self.prefix.starts_with(p) && self.prefix != *p
    }

    /// The child of `dir` on the way to the prefix, when `dir` is on the way.
    pub fn next_on_the_way(&self, dir: &DfsPath) -> Option<&str> {
        if !self.is_on_the_way(dir) {
            return None;
        }
        self.prefix.segments().nth(dir.segments().count())
    }

    fn denied(&self, what: &str, p: &DfsPath) -> Denied {
        Denied::Forbidden(format!(
            "{what} {p}: access key {} ({}) is limited to {}",
            self.key_id,
            self.role.as_str(),
            self.prefix
        ))
    }

    /// The subtree this key may read: `None` for everything (admin keys, no
    /// authentication).
    pub fn read_scope(&self) -> Option<&DfsPath> {
        (self.role != KeyRole::Admin && !self.prefix.is_root()).then_some(&self.prefix)
    }

    pub fn require_read(&self, p: &DfsPath) -> Result<(), Denied> {
        if self.within(p) {
            Ok(())
        } else {
            Err(self.denied("read", p))
        }
    }

    /// Stat: the subtree, or the directories on the way to it.
    pub fn require_visible(&self, p: &DfsPath) -> Result<(), Denied> {
        if self.within(p) || self.is_on_the_way(p) {
            Ok(())
        } else {
            Err(self.denied("read", p))
        }
    }

    pub fn require_write(&self, p: &DfsPath) -> Result<(), Denied> {
        if self.role == KeyRole::ReadOnly {
            return Err(Denied::Forbidden(format!(
                "write {p}: access key {} is read-only",
                self.key_id
            )));
        }
        if self.within(p) {
            Ok(())
        } else {
            Err(self.denied("write", p))
        }
    }

    pub fn require_admin(&self, what: &str) -> Result<(), Denied> {
        if self.role == KeyRole::Admin {
            Ok(())
        } else {
            Err(Denied::Forbidden(format!(
                "{what} needs an admin key; access key {} is {}",
                self.key_id,
                self.role.as_str()
            )))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> DfsPath {
        DfsPath::parse(s).unwrap()
    }

    fn key(role: KeyRole, prefix: &str) -> Principal {
        Principal {
            key_id: "DKTEST".into(),
            role,
            prefix: p(prefix),
        }
    }

    #[test]
    fn secrets_verify_against_their_salted_hash_only() {
        let (id, secret, salt, hash) = generate();
        check_key_id(&id).unwrap();
        assert_eq!(secret.len(), SECRET_LEN);
        let k = AccessKey {
            id,
            name: "n".into(),
            role: KeyRole::ReadOnly,
            prefix: DfsPath::root(),
            salt,
            secret_hash: hash,
            created_ms: 0,
            revoked_ms: None,
            s3_secret_sealed: None,
        };
        assert!(k.secret_matches(&secret));
        assert!(!k.secret_matches(&secret[1..]));
        assert!(!k.secret_matches(""));
    }

    #[test]
    fn prefix_keys_reach_their_subtree_only() {
        let k = key(KeyRole::ReadWrite, "/team/a");
        k.require_write(&p("/team/a")).unwrap();
        k.require_write(&p("/team/a/x/y")).unwrap();
        assert!(k.require_read(&p("/team/ab")).is_err());
        assert!(k.require_read(&p("/team")).is_err());
        k.require_visible(&p("/team")).unwrap();
        k.require_visible(&p("/")).unwrap();
        assert!(k.require_write(&p("/team")).is_err());
        assert_eq!(k.next_on_the_way(&p("/")), Some("team"));
        assert_eq!(k.next_on_the_way(&p("/team")), Some("a"));
        assert_eq!(k.next_on_the_way(&p("/team/a")), None);
        assert!(k.require_admin("drain").is_err());
    }

    #[test]
    fn readonly_keys_cannot_write_and_admins_can_do_anything() {
        let r = key(KeyRole::ReadOnly, "/");
        r.require_read(&p("/x")).unwrap();
        assert!(matches!(
            r.require_write(&p("/x")).unwrap_err(),
            Denied::Forbidden(_)
        ));
        let a = key(KeyRole::Admin, "/ignored");
        a.require_write(&p("/elsewhere")).unwrap();
        a.require_admin("drain").unwrap();
    }
}
