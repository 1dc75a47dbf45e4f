//! The cluster's administrative records: events, bucket settings, revoked certificates,
//! and what a rotation of legacy secrets did.

use crate::path::DfsPath;

/// One event as stored. Fields that do not apply are empty or 0.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EventRecord {
    /// Assigned on insert; increasing, never reused.
    pub id: u64,
    pub time_ms: i64,
    pub kind: String,
    pub node_id: String,
    pub path: String,
    pub chunk_id: String,
    pub bytes: u64,
    pub count: u64,
    pub detail: String,
}

/// A bucket's settings as stored (defaults when the directory has none).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketRecord {
    pub path: DfsPath,
    pub owner: String,
    pub public_read: bool,
    pub cors: Option<String>,
}

/// A change to a bucket's settings: what is `None` stays as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BucketUpdate {
    pub public_read: Option<bool>,
    /// `Some("")` removes the CORS rules.
    pub cors: Option<String>,
}

/// A certificate on the deny-list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RevokedCert {
    /// SHA-256 of the DER, 64 lowercase hex characters.
    pub fingerprint: String,
    pub role: String,
    pub note: String,
    pub revoked_ms: i64,
}

/// What a rotation of the cluster secrets did to the sealed S3 secrets.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Resealed {
    pub resealed: usize,
    /// Blobs the re-sealing could not open, left as they were.
    pub left: usize,
}
