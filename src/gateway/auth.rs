//! Who may call the gateway: a static list of S3 credentials from the config
//! (`gateway.s3_keys`), each readwrite or readonly.
//!
//! A stop-gap. SigV4 needs the secret itself on the verifying side, and the coordinator
//! keeps only a salted hash of each dfsd key's secret, so dfsd keys cannot sign S3
//! requests yet. ARCHITECTURE.md (S3 gateway) records the options for the real design.

use std::collections::HashMap;

use s3s::auth::{S3Auth, SecretKey};
use s3s::{s3_error, S3Result};

/// What an S3 key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum S3Role {
    ReadWrite,
    ReadOnly,
}

#[derive(Debug, Clone)]
struct S3Key {
    secret: String,
    role: S3Role,
}

/// The credentials the gateway accepts.
#[derive(Debug, Clone, Default)]
pub struct S3Keys {
    keys: HashMap<String, S3Key>,
}

impl S3Keys {
    /// Parses `[[id, secret], [id, secret, role], ...]`, naming the first bad entry.
    pub fn from_config(entries: &[Vec<String>]) -> Result<S3Keys, String> {
        let mut keys = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let (id, secret, role) = match e.as_slice() {
                [id, secret] => (id, secret, S3Role::ReadWrite),
                [id, secret, role] => {
                    let role = match role.as_str() {
                        "readwrite" => S3Role::ReadWrite,
                        "readonly" => S3Role::ReadOnly,
                        other => {
                            return Err(format!(
                                "entry {i}: role {other:?} is not \"readwrite\" or \"readonly\""
                            ))
                        }
                    };
                    (id, secret, role)
                }
                _ => {
                    return Err(format!(
                        "entry {i}: expected [access key id, secret] or [id, secret, role]"
                    ))
                }
            };
            let id_ok = (3..=128).contains(&id.len())
                && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
            if !id_ok {
                return Err(format!(
                    "entry {i}: access key id must be 3 to 128 characters of [A-Za-z0-9_]"
                ));
            }
            if secret.len() < 8 {
                return Err(format!("entry {i}: secret must be at least 8 characters"));
            }
            let key = S3Key {
                secret: secret.clone(),
                role,
            };
            if keys.insert(id.clone(), key).is_some() {
                return Err(format!("entry {i}: access key id {id:?} appears twice"));
            }
        }
        Ok(S3Keys { keys })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// The role of an authenticated key (`None`: unknown key).
    pub fn role(&self, access_key: &str) -> Option<S3Role> {
        self.keys.get(access_key).map(|k| k.role)
    }
}

#[async_trait::async_trait]
impl S3Auth for S3Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        match self.keys.get(access_key) {
            Some(k) => Ok(SecretKey::from(k.secret.as_str())),
            None => Err(s3_error!(
                InvalidAccessKeyId,
                "The AWS access key Id you provided does not exist in our records."
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(e: &[&[&str]]) -> Vec<Vec<String>> {
        e.iter()
            .map(|x| x.iter().map(|s| s.to_string()).collect())
            .collect()
    }

    #[test]
    fn parses_roles_and_refuses_bad_entries() {
        let k = S3Keys::from_config(&v(&[
            &["AKIDRW", "secret-rw-1"],
            &["AKIDRO", "secret-ro-1", "readonly"],
        ]))
        .unwrap();
        assert_eq!(k.role("AKIDRW"), Some(S3Role::ReadWrite));
        assert_eq!(k.role("AKIDRO"), Some(S3Role::ReadOnly));
        assert_eq!(k.role("nope"), None);
        assert!(S3Keys::from_config(&v(&[&["AKID"]])).is_err());
        assert!(S3Keys::from_config(&v(&[&["AKID", "short"]])).is_err());
        assert!(S3Keys::from_config(&v(&[&["AKID", "secret-123", "admin"]])).is_err());
        assert!(S3Keys::from_config(&v(&[&["AK ID", "secret-123"]])).is_err());
        let dup = S3Keys::from_config(&v(&[&["AKID", "secret-123"], &["AKID", "secret-456"]]));
        assert!(dup.unwrap_err().contains("twice"));
    }
}
