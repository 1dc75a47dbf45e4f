//! Plain domain types: what crosses the metadata seam (`meta::MetaStore`) and what the
//! coordinator, the gateway and the SDK share. No SQL, no wire types, no I/O: a type here
//! says what a thing is, the modules that use it say how it is stored or sent.
//!
//! - `namespace.rs`: entries (kind, inode, attributes), chunk lists, the requests that
//!   change the namespace (commit, compose, mkdir).
//! - `cluster.rs`: datanode records, replica health, inventories, fsck reports, counts.
//! - `records.rs`: the cluster's administrative records: events, buckets, revoked
//!   certificates, the rotation of legacy secrets.

mod cluster;
mod namespace;
mod records;

use std::time::{SystemTime, UNIX_EPOCH};

pub use cluster::{
    ChunkHealth, Doomed, FileReport, InventoryItem, NodeEndpoint, NodeRecord, NodeStatsRecord,
    Reconciled, StoreCounts,
};
pub use namespace::{
    Attrs, CommitRequest, ComposeRequest, EntryInfo, FileChunk, Inode, Kind, MkdirOptions,
};
pub use records::{BucketRecord, EventRecord, Resealed, RevokedCert};

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
