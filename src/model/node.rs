//! Datanodes as callers of the cluster see them: the validated node id, the health state
//! the coordinator assigns, and a node's figures in `dfsd nodes`.

use std::fmt;

use super::Timestamp;

/// Longest node id, in bytes.
pub const MAX_NODE_ID: usize = 64;

/// A datanode's id: 1 to 64 characters of `[A-Za-z0-9_-]` (it names the node in the
/// store, in metrics labels and in log fields, so nothing else is allowed).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NodeId(String);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid node id {0:?}: expected 1 to 64 of [A-Za-z0-9_-]")]
pub struct InvalidNodeId(pub String);

impl NodeId {
    pub fn parse(s: &str) -> Result<NodeId, InvalidNodeId> {
        let ok = !s.is_empty()
            && s.len() <= MAX_NODE_ID
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if ok {
            Ok(NodeId(s.to_string()))
        } else {
            Err(InvalidNodeId(s.chars().take(80).collect()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `pad`, so tables can align ids with `{:<20}`.
        f.pad(&self.0)
    }
}

impl std::str::FromStr for NodeId {
    type Err = InvalidNodeId;
    fn from_str(s: &str) -> Result<NodeId, InvalidNodeId> {
        NodeId::parse(s)
    }
}

impl AsRef<str> for NodeId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl PartialEq<str> for NodeId {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for NodeId {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

impl PartialEq<String> for NodeId {
    fn eq(&self, other: &String) -> bool {
        &self.0 == other
    }
}

/// A node's health as the coordinator judges it from heartbeats (and the operator's drain).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeState {
    Alive,
    /// Missed heartbeats: read last, not written to.
    Suspect,
    /// Gone long enough that its replicas are repaired elsewhere.
    Dead,
    /// Being emptied on the operator's request.
    Draining,
}

impl NodeState {
    /// The name `dfsd nodes` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Alive => "alive",
            NodeState::Suspect => "suspect",
            NodeState::Dead => "dead",
            NodeState::Draining => "draining",
        }
    }
}

/// A datanode's background re-hashing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubProgress {
    /// Chunks checked in the current pass, and the chunks that pass covers.
    pub checked: u64,
    pub total: u64,
    /// End of the last complete pass; None: none yet.
    pub last_pass: Option<Timestamp>,
    /// Corrupt or missing chunks found since the node started.
    pub errors: u64,
}

/// One datanode as `dfsd nodes` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub node_id: NodeId,
    pub addr: String,
    /// Where clients outside the cluster's network reach it ('' when `addr` serves all).
    pub public_addr: String,
    /// None when the coordinator sent a state this build does not know.
    pub state: Option<NodeState>,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub free_bytes: u64,
    pub chunk_count: u64,
    pub last_seen: Timestamp,
    /// Replicas the coordinator has on record for this node.
    pub replicas: u64,
    /// Draining and every replica it holds exists at full strength elsewhere.
    pub safe_to_remove: bool,
    pub scrub: Option<ScrubProgress>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_ids_are_checked() {
        assert_eq!(NodeId::parse("dn-1_a").unwrap().as_str(), "dn-1_a");
        assert!(NodeId::parse(&"a".repeat(64)).is_ok());
        assert_eq!(format!("[{:<4}]", NodeId::parse("ab").unwrap()), "[ab  ]");
        for bad in ["", "a b", "a/b", "é", &"a".repeat(65)] {
            let e = NodeId::parse(bad).unwrap_err();
            assert!(e.to_string().starts_with("invalid node id"), "{bad:?}: {e}");
        }
    }
}
