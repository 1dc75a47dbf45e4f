//! Generated gRPC code (package `dfs.v1`) and conversions between wire and domain types.
//! Only service layers and the client SDK touch these types.

#[allow(clippy::all, clippy::pedantic)]
pub mod pb {
    tonic::include_proto!("dfs.v1");
}

/// Every RPC of every service, generated from the proto definitions by build.rs.
pub mod methods {
    include!(concat!(env!("OUT_DIR"), "/rpc_methods.rs"));
}

use crate::model::{EntryInfo, Kind, NodeStatsRecord};

impl From<&EntryInfo> for pb::Entry {
    fn from(e: &EntryInfo) -> Self {
        pb::Entry {
            path: e.path.to_string(),
            name: e.path.name().to_string(),
            kind: match e.inode.kind {
                Kind::Dir => pb::EntryKind::Directory as i32,
                Kind::File => pb::EntryKind::File as i32,
            },
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

impl pb::Entry {
    pub fn is_dir(&self) -> bool {
        self.kind == pb::EntryKind::Directory as i32
    }
}

impl From<crate::security::token::Receipt> for pb::Receipt {
    fn from(r: crate::security::token::Receipt) -> Self {
        pb::Receipt {
            node_id: r.node_id,
            token_expires: r.token_expires,
            mac: r.mac.into(),
        }
    }
}

impl From<pb::Receipt> for crate::security::token::Receipt {
    fn from(r: pb::Receipt) -> Self {
        crate::security::token::Receipt {
            node_id: r.node_id,
            token_expires: r.token_expires,
            mac: r.mac.to_vec(),
        }
    }
}
