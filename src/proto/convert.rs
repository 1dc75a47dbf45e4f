//! Every translation between wire messages (`pb`) and domain types (`crate::model`, the
//! security records), in both directions: the coordinator encodes its answers here, the
//! SDK decodes them here, so the rest of dfsd speaks only domain types.
//!
//! Encoding is infallible. Decoding checks what the domain types promise (paths, node
//! ids, chunk ids, roles, enum values) and fails with [`Malformed`]: an answer that does
//! not decode means client and server disagree about the protocol.

use super::pb;
use crate::model::{
    BucketRecord, ClusterStatus, ComposeRequest, Entry, EntryInfo, EventRecord, FsckChunk,
    FsckFile, FsckReport, KeyInfo, Kind, MkdirOptions, NodeEndpoint, NodeId, NodeInfo, NodeState,
    NodeStatsRecord, RevokedCert, S3Credential, ScrubProgress, Timestamp,
};
use crate::path::DfsPath;
use crate::security::keys::{AccessKey, KeyRole};
use crate::security::token::Receipt;

/// A wire message whose content does not make a domain value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed {message} from the server: {reason}")]
pub struct Malformed {
    /// The message, e.g. "Entry".
    pub message: &'static str,
    pub reason: String,
}

fn malformed(message: &'static str, reason: impl ToString) -> Malformed {
    Malformed {
        message,
        reason: reason.to_string(),
    }
}

fn path(message: &'static str, s: &str) -> Result<DfsPath, Malformed> {
    DfsPath::parse(s).map_err(|e| malformed(message, e))
}

fn role(message: &'static str, s: &str) -> Result<KeyRole, Malformed> {
    KeyRole::parse(s).map_err(|e| malformed(message, e))
}

// ---- namespace ----

impl From<&EntryInfo> for pb::Entry {
    fn from(e: &EntryInfo) -> Self {
        pb::Entry {
            path: e.path.to_string(),
            name: e.path.name().to_string(),
            kind: kind_pb(e.inode.kind) as i32,
            size: e.inode.size,
            mtime_ms: e.inode.mtime_ms,
            version: e.inode.version,
            replication: e.inode.replication,
            chunk_count: e.chunk_count,
            attrs: e
                .inode
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        }
    }
}

fn kind_pb(k: Kind) -> pb::EntryKind {
    match k {
        Kind::Dir => pb::EntryKind::Directory,
        Kind::File => pb::EntryKind::File,
    }
}

impl TryFrom<pb::Entry> for Entry {
    type Error = Malformed;
    fn try_from(e: pb::Entry) -> Result<Entry, Malformed> {
        let kind = match pb::EntryKind::try_from(e.kind) {
            Ok(pb::EntryKind::Directory) => Kind::Dir,
            Ok(pb::EntryKind::File) => Kind::File,
            _ => return Err(malformed("Entry", format!("kind {}", e.kind))),
        };
        Ok(Entry {
            path: path("Entry", &e.path)?,
            kind,
            size: e.size,
            mtime: Timestamp::from_ms(e.mtime_ms),
            version: e.version,
            replication: e.replication,
            chunk_count: e.chunk_count,
            attrs: e.attrs.into_iter().collect(),
        })
    }
}

/// A mkdir as sent: `owner` is not (the coordinator takes it from the caller's key).
pub fn mkdir_request(path: &DfsPath, opts: &MkdirOptions) -> pb::MkdirRequest {
    pb::MkdirRequest {
        path: path.to_string(),
        parents: opts.parents,
        set_attrs: opts.attrs.is_some(),
        attrs: opts
            .attrs
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

impl From<&ComposeRequest> for pb::ComposeRequest {
    fn from(r: &ComposeRequest) -> Self {
        pb::ComposeRequest {
            sources: r
                .sources
                .iter()
                .map(|(p, v)| pb::ComposeSource {
                    path: p.to_string(),
                    expected_version: *v,
                })
                .collect(),
            dst: r.dst.to_string(),
            replication: r.replication,
            no_clobber: r.no_clobber,
            expected_version: r.expected_version,
            attrs: r
                .attrs
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
            delete_after: r.delete_after.iter().map(ToString::to_string).collect(),
        }
    }
}

// ---- administrative records ----

impl From<BucketRecord> for pb::BucketInfo {
    fn from(b: BucketRecord) -> Self {
        pb::BucketInfo {
            path: b.path.to_string(),
            owner: b.owner,
            public_read: b.public_read,
            cors: b.cors.unwrap_or_default(),
        }
    }
}

impl TryFrom<pb::BucketInfo> for BucketRecord {
    type Error = Malformed;
    fn try_from(b: pb::BucketInfo) -> Result<BucketRecord, Malformed> {
        Ok(BucketRecord {
            path: path("BucketInfo", &b.path)?,
            owner: b.owner,
            public_read: b.public_read,
            cors: (!b.cors.is_empty()).then_some(b.cors),
        })
    }
}

impl From<RevokedCert> for pb::RevokedCertificate {
    fn from(r: RevokedCert) -> Self {
        pb::RevokedCertificate {
            fingerprint: r.fingerprint,
            role: r.role,
            note: r.note,
            revoked_ms: r.revoked_ms,
        }
    }
}

impl From<pb::RevokedCertificate> for RevokedCert {
    fn from(r: pb::RevokedCertificate) -> Self {
        RevokedCert {
            fingerprint: r.fingerprint,
            role: r.role,
            note: r.note,
            revoked_ms: r.revoked_ms,
        }
    }
}

impl From<EventRecord> for pb::ClusterEvent {
    fn from(e: EventRecord) -> Self {
        pb::ClusterEvent {
            id: e.id,
            time_ms: e.time_ms,
            kind: e.kind,
            node_id: e.node_id,
            path: e.path,
            chunk_id: e.chunk_id,
            bytes: e.bytes,
            count: e.count,
            detail: e.detail,
        }
    }
}

impl From<pb::ClusterEvent> for EventRecord {
    fn from(e: pb::ClusterEvent) -> Self {
        EventRecord {
            id: e.id,
            time_ms: e.time_ms,
            kind: e.kind,
            node_id: e.node_id,
            path: e.path,
            chunk_id: e.chunk_id,
            bytes: e.bytes,
            count: e.count,
            detail: e.detail,
        }
    }
}

// ---- keys ----

impl From<&AccessKey> for pb::AccessKeyInfo {
    fn from(k: &AccessKey) -> Self {
        pb::AccessKeyInfo {
            key_id: k.id.clone(),
            name: k.name.clone(),
            role: k.role.as_str().into(),
            prefix: k.prefix.to_string(),
            created_ms: k.created_ms,
            revoked_ms: k.revoked_ms.unwrap_or(0),
        }
    }
}

impl TryFrom<pb::AccessKeyInfo> for KeyInfo {
    type Error = Malformed;
    fn try_from(k: pb::AccessKeyInfo) -> Result<KeyInfo, Malformed> {
        Ok(KeyInfo {
            role: role("AccessKeyInfo", &k.role)?,
            prefix: path("AccessKeyInfo", &k.prefix)?,
            key_id: k.key_id,
            name: k.name,
            created: Timestamp::from_ms(k.created_ms),
            revoked: Timestamp::nonzero(k.revoked_ms),
        })
    }
}

impl TryFrom<pb::GetS3CredentialResponse> for S3Credential {
    type Error = Malformed;
    fn try_from(c: pb::GetS3CredentialResponse) -> Result<S3Credential, Malformed> {
        Ok(S3Credential {
            role: role("GetS3CredentialResponse", &c.role)?,
            prefix: path("GetS3CredentialResponse", &c.prefix)?,
            secret: c.secret,
        })
    }
}

impl From<Receipt> for pb::Receipt {
    fn from(r: Receipt) -> Self {
        pb::Receipt {
            node_id: r.node_id,
            token_expires: r.token_expires,
            mac: r.mac.into(),
        }
    }
}

impl From<pb::Receipt> for Receipt {
    fn from(r: pb::Receipt) -> Self {
        Receipt {
            node_id: r.node_id,
            token_expires: r.token_expires,
            mac: r.mac.to_vec(),
        }
    }
}

// ---- nodes and the cluster ----

impl From<Option<pb::NodeStats>> for NodeStatsRecord {
    fn from(s: Option<pb::NodeStats>) -> Self {
        let s = s.unwrap_or_default();
        NodeStatsRecord {
            capacity_bytes: s.capacity_bytes,
            used_bytes: s.used_bytes,
            free_bytes: s.free_bytes,
            chunk_count: s.chunk_count,
        }
    }
}

impl From<pb::ScrubProgress> for ScrubProgress {
    fn from(s: pb::ScrubProgress) -> Self {
        ScrubProgress {
            checked: s.checked,
            total: s.total,
            last_pass: Timestamp::nonzero(s.last_pass_ms),
            errors: s.errors,
        }
    }
}

/// A node state from the wire; `None` for one this build does not know.
pub fn node_state(state: i32) -> Option<NodeState> {
    match pb::NodeState::try_from(state).ok()? {
        pb::NodeState::Alive => Some(NodeState::Alive),
        pb::NodeState::Suspect => Some(NodeState::Suspect),
        pb::NodeState::Dead => Some(NodeState::Dead),
        pb::NodeState::Draining => Some(NodeState::Draining),
        pb::NodeState::Unspecified => None,
    }
}

impl From<NodeState> for pb::NodeState {
    fn from(s: NodeState) -> Self {
        match s {
            NodeState::Alive => pb::NodeState::Alive,
            NodeState::Suspect => pb::NodeState::Suspect,
            NodeState::Dead => pb::NodeState::Dead,
            NodeState::Draining => pb::NodeState::Draining,
        }
    }
}

impl TryFrom<pb::NodeInfo> for NodeInfo {
    type Error = Malformed;
    fn try_from(n: pb::NodeInfo) -> Result<NodeInfo, Malformed> {
        Ok(NodeInfo {
            node_id: NodeId::parse(&n.node_id).map_err(|e| malformed("NodeInfo", e))?,
            addr: n.addr,
            public_addr: n.public_addr,
            state: node_state(n.state),
            capacity_bytes: n.capacity_bytes,
            used_bytes: n.used_bytes,
            free_bytes: n.free_bytes,
            chunk_count: n.chunk_count,
            last_seen: Timestamp::from_ms(n.last_seen_ms),
            replicas: n.replicas,
            safe_to_remove: n.safe_to_remove,
            scrub: n.scrub.map(Into::into),
        })
    }
}

impl From<pb::StatusResponse> for ClusterStatus {
    fn from(s: pb::StatusResponse) -> Self {
        ClusterStatus {
            nodes_alive: s.nodes_alive,
            nodes_suspect: s.nodes_suspect,
            nodes_dead: s.nodes_dead,
            nodes_draining: s.nodes_draining,
            capacity_bytes: s.capacity_bytes,
            used_bytes: s.used_bytes,
            free_bytes: s.free_bytes,
            files: s.files,
            directories: s.directories,
            chunks: s.chunks,
            logical_bytes: s.logical_bytes,
            under_replicated: s.under_replicated,
            unrecoverable: s.unrecoverable,
            over_replicated: s.over_replicated,
            repair_queue: s.repair_queue,
            repairs_running: s.repairs_running,
            repairs_done: s.repairs_done,
            repair_bytes_done: s.repair_bytes_done,
            repair_rate_bytes: s.repair_rate_bytes,
            gc_backlog_chunks: s.gc_backlog_chunks,
            gc_backlog_bytes: s.gc_backlog_bytes,
            gc_freed_bytes: s.gc_freed_bytes,
            safe_mode: s.safe_mode,
            scrub_checked: s.scrub_checked,
            scrub_total: s.scrub_total,
            scrub_errors: s.scrub_errors,
        }
    }
}

impl TryFrom<pb::FsckResponse> for FsckReport {
    type Error = Malformed;
    fn try_from(r: pb::FsckResponse) -> Result<FsckReport, Malformed> {
        let files = r
            .files
            .into_iter()
            .map(|f| {
                let damaged = f
                    .damaged
                    .into_iter()
                    .map(|c| {
                        Ok(FsckChunk {
                            chunk_id: c.chunk_id.parse().map_err(|e| malformed("FsckChunk", e))?,
                            index: c.index,
                            live_replicas: c.live_replicas,
                            target: c.target,
                            nodes: c.nodes,
                        })
                    })
                    .collect::<Result<_, Malformed>>()?;
                Ok(FsckFile {
                    path: path("FsckFile", &f.path)?,
                    size: f.size,
                    chunks: f.chunks,
                    replication: f.replication,
                    under_replicated: f.under_replicated,
                    missing: f.missing,
                    damaged,
                })
            })
            .collect::<Result<_, Malformed>>()?;
        Ok(FsckReport {
            files_checked: r.files_checked,
            chunks_checked: r.chunks_checked,
            healthy_files: r.healthy_files,
            under_replicated_chunks: r.under_replicated_chunks,
            missing_chunks: r.missing_chunks,
            files,
            truncated: r.truncated,
        })
    }
}

impl From<NodeEndpoint> for pb::NodeAddr {
    fn from(n: NodeEndpoint) -> Self {
        pb::NodeAddr {
            node_id: n.id,
            addr: n.addr,
            public_addr: n.public_addr,
        }
    }
}

impl From<ScrubProgress> for pb::ScrubProgress {
    fn from(s: ScrubProgress) -> Self {
        pb::ScrubProgress {
            checked: s.checked,
            total: s.total,
            last_pass_ms: s.last_pass.map_or(0, Timestamp::as_ms),
            errors: s.errors,
        }
    }
}

impl From<NodeInfo> for pb::NodeInfo {
    fn from(n: NodeInfo) -> Self {
        pb::NodeInfo {
            node_id: n.node_id.as_str().to_string(),
            addr: n.addr,
            public_addr: n.public_addr,
            state: n.state.map_or(pb::NodeState::Unspecified, Into::into) as i32,
            capacity_bytes: n.capacity_bytes,
            used_bytes: n.used_bytes,
            free_bytes: n.free_bytes,
            chunk_count: n.chunk_count,
            last_seen_ms: n.last_seen.as_ms(),
            replicas: n.replicas,
            safe_to_remove: n.safe_to_remove,
            scrub: n.scrub.map(Into::into),
        }
    }
}

impl From<ClusterStatus> for pb::StatusResponse {
    fn from(s: ClusterStatus) -> Self {
        pb::StatusResponse {
            nodes_alive: s.nodes_alive,
            nodes_suspect: s.nodes_suspect,
            nodes_dead: s.nodes_dead,
            nodes_draining: s.nodes_draining,
            capacity_bytes: s.capacity_bytes,
            used_bytes: s.used_bytes,
            free_bytes: s.free_bytes,
            files: s.files,
            directories: s.directories,
            chunks: s.chunks,
            logical_bytes: s.logical_bytes,
            under_replicated: s.under_replicated,
            unrecoverable: s.unrecoverable,
            over_replicated: s.over_replicated,
            repair_queue: s.repair_queue,
            repairs_running: s.repairs_running,
            repairs_done: s.repairs_done,
            repair_bytes_done: s.repair_bytes_done,
            repair_rate_bytes: s.repair_rate_bytes,
            gc_backlog_chunks: s.gc_backlog_chunks,
            gc_backlog_bytes: s.gc_backlog_bytes,
            gc_freed_bytes: s.gc_freed_bytes,
            safe_mode: s.safe_mode,
            scrub_checked: s.scrub_checked,
            scrub_total: s.scrub_total,
            scrub_errors: s.scrub_errors,
        }
    }
}

impl From<FsckReport> for pb::FsckResponse {
    fn from(r: FsckReport) -> Self {
        pb::FsckResponse {
            files_checked: r.files_checked,
            chunks_checked: r.chunks_checked,
            healthy_files: r.healthy_files,
            under_replicated_chunks: r.under_replicated_chunks,
            missing_chunks: r.missing_chunks,
            truncated: r.truncated,
            files: r
                .files
                .into_iter()
                .map(|f| pb::FsckFile {
                    path: f.path.to_string(),
                    size: f.size,
                    chunks: f.chunks,
                    replication: f.replication,
                    under_replicated: f.under_replicated,
                    missing: f.missing,
                    damaged: f
                        .damaged
                        .into_iter()
                        .map(|c| pb::FsckChunk {
                            chunk_id: c.chunk_id.to_hex(),
                            index: c.index,
                            live_replicas: c.live_replicas,
                            target: c.target,
                            nodes: c.nodes,
                        })
                        .collect(),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Attrs, Inode};

    #[test]
    fn entries_round_trip_and_bad_ones_are_refused() {
        let mut attrs = Attrs::new();
        attrs.insert("etag".into(), "\"x\"".into());
        let info = EntryInfo {
            path: DfsPath::parse("/a/b").unwrap(),
            inode: Inode {
                id: 7,
                kind: Kind::File,
                size: 5,
                mtime_ms: 1_000,
                version: 3,
                replication: 2,
                attrs,
            },
            chunk_count: 1,
        };
        let wire = pb::Entry::from(&info);
        assert_eq!(wire.name, "b");
        let back = Entry::try_from(wire.clone()).unwrap();
        assert_eq!(back, Entry::from(&info));
        assert_eq!(back.name(), "b");
        assert!(!back.is_dir());

        let bad_path = pb::Entry {
            path: "a//b".into(),
            ..wire.clone()
        };
        assert!(Entry::try_from(bad_path).is_err());
        let bad_kind = pb::Entry { kind: 0, ..wire };
        let e = Entry::try_from(bad_kind).unwrap_err();
        assert_eq!(e.to_string(), "malformed Entry from the server: kind 0");
    }

    #[test]
    fn node_info_checks_the_id_and_keeps_unknown_states() {
        let n = pb::NodeInfo {
            node_id: "dn-1".into(),
            state: pb::NodeState::Dead as i32,
            last_seen_ms: 9,
            ..Default::default()
        };
        let m = NodeInfo::try_from(n.clone()).unwrap();
        assert_eq!(m.node_id, "dn-1");
        assert_eq!(m.state, Some(NodeState::Dead));
        assert_eq!(m.last_seen.as_ms(), 9);
        let unknown = NodeInfo::try_from(pb::NodeInfo {
            state: 99,
            ..n.clone()
        })
        .unwrap();
        assert_eq!(unknown.state, None);
        assert!(NodeInfo::try_from(pb::NodeInfo {
            node_id: "a b".into(),
            ..n
        })
        .is_err());
    }

    #[test]
    fn compose_and_mkdir_requests_carry_every_field() {
        let p = |s: &str| DfsPath::parse(s).unwrap();
        let req = ComposeRequest {
            sources: vec![(p("/b/1"), Some(4)), (p("/b/2"), None)],
            dst: p("/b/o"),
            replication: 2,
            no_clobber: true,
            expected_version: Some(0),
            attrs: Attrs::from([("k".to_string(), "v".to_string())]),
            delete_after: vec![p("/b/.parts")],
        };
        let w = pb::ComposeRequest::from(&req);
        assert_eq!(w.sources.len(), 2);
        assert_eq!(w.sources[0].path, "/b/1");
        assert_eq!(w.sources[0].expected_version, Some(4));
        assert_eq!(w.sources[1].expected_version, None);
        assert_eq!(
            (w.dst.as_str(), w.replication, w.no_clobber),
            ("/b/o", 2, true)
        );
        assert_eq!(w.expected_version, Some(0));
        assert_eq!(w.attrs.get("k").map(String::as_str), Some("v"));
        assert_eq!(w.delete_after, vec!["/b/.parts".to_string()]);

        let plain = mkdir_request(&p("/d"), &MkdirOptions::default());
        assert!(!plain.set_attrs && !plain.parents && plain.attrs.is_empty());
        let marked = mkdir_request(
            &p("/d"),
            &MkdirOptions {
                parents: true,
                attrs: Some(Attrs::new()),
                owner: "ignored".into(),
            },
        );
        assert!(marked.set_attrs && marked.parents);
    }

    #[test]
    fn keys_buckets_and_credentials_decode() {
        let k = KeyInfo::try_from(pb::AccessKeyInfo {
            key_id: "AK".into(),
            name: "n".into(),
            role: "readonly".into(),
            prefix: "/p".into(),
            created_ms: 5,
            revoked_ms: 0,
        })
        .unwrap();
        assert_eq!(k.role, KeyRole::ReadOnly);
        assert_eq!(k.prefix.as_str(), "/p");
        assert_eq!(k.revoked, None);
        let bad = pb::GetS3CredentialResponse {
            secret: "s".into(),
            role: "root".into(),
            prefix: "/".into(),
        };
        assert!(S3Credential::try_from(bad).is_err());
        let b = BucketRecord::try_from(pb::BucketInfo {
            path: "/photos".into(),
            owner: "AK".into(),
            public_read: true,
            cors: String::new(),
        })
        .unwrap();
        assert_eq!(b.cors, None);
        assert_eq!(pb::BucketInfo::from(b).cors, "");
    }
}
