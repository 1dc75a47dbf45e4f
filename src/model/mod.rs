//! Plain domain types: what crosses the metadata seam (`meta::MetaStore`) and what the
//! coordinator, the gateway and the SDK share. No SQL, no wire types, no I/O: a type here
//! says what a thing is, the modules that use it say how it is stored or sent.
//!
//! The SDK (`crate::client`) takes and returns these types, so the CLI, the gateway and
//! any program built on the SDK never see a protobuf message; `crate::proto::convert` is
//! the one place they are translated to and from the wire.
//!
//! - `namespace.rs`: entries (kind, inode, attributes), chunk lists, the requests that
//!   change the namespace (commit, compose, mkdir).
//! - `cluster.rs`: datanode records, replica health, inventories, fsck walks, counts.
//! - `records.rs`: the cluster's administrative records: events, buckets, revoked
//!   certificates, the rotation of legacy secrets.
//! - `node.rs`: the validated node id, node states, a node as `dfsd nodes` shows it.
//! - `admin.rs`: cluster status, fsck reports, access keys, S3 credentials.
//! - `time.rs`: `Timestamp`, milliseconds since the Unix epoch.

mod admin;
mod cluster;
mod namespace;
mod node;
mod records;
mod time;

use std::time::{SystemTime, UNIX_EPOCH};

pub use admin::{ClusterStatus, FsckChunk, FsckFile, FsckReport, KeyInfo, S3Credential};
pub use cluster::{
    ChunkHealth, Doomed, FileReport, InventoryItem, NodeEndpoint, NodeRecord, NodeStatsRecord,
    Reconciled, StoreCounts,
};
pub use namespace::{
    Attrs, CommitRequest, ComposeRequest, Entry, EntryInfo, FileChunk, Inode, Kind, MkdirOptions,
};
pub use node::{InvalidNodeId, NodeId, NodeInfo, NodeState, ScrubProgress, MAX_NODE_ID};
pub use records::{BucketRecord, BucketUpdate, EventRecord, Resealed, RevokedCert};
pub use time::Timestamp;

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
