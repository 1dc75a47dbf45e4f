//! Node health as the coordinator sees it: the last report of every datanode, and its state
//! derived from how long ago that was (alive, suspect, dead) and whether it is draining.
//! Last-seen times are wall-clock and kept in SQLite, so a restarted coordinator judges
//! nodes by when they were really last heard from.

use crate::sync::ReadWriteLocked;
use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::time::Duration;

use crate::model::{NodeEndpoint, NodeRecord, NodeStatsRecord};

pub use crate::model::NodeState;

/// Scrub progress a datanode reports in its heartbeats (kept in memory only).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubInfo {
    pub checked: u64,
    pub total: u64,
    pub last_pass_ms: i64,
    pub errors: u64,
}

#[derive(Debug, Clone)]
pub struct NodeView {
    pub id: String,
    pub addr: String,
    /// Where clients outside the cluster's network reach it ('' when `addr` serves all).
    pub public_addr: String,
    pub stats: NodeStatsRecord,
    pub last_seen_ms: i64,
    pub draining: bool,
    pub scrub: ScrubInfo,
}

impl NodeView {
    pub fn endpoint(&self) -> NodeEndpoint {
        NodeEndpoint {
            id: self.id.clone(),
            addr: self.addr.clone(),
            public_addr: self.public_addr.clone(),
        }
    }
}

pub struct NodeTable {
    suspect_after: Duration,
    dead_after: Duration,
    nodes: RwLock<HashMap<String, NodeView>>,
}

impl NodeTable {
    pub fn new(suspect_after: Duration, dead_after: Duration, known: Vec<NodeRecord>) -> Self {
        let nodes = known
            .into_iter()
            .map(|n| {
                let view = NodeView {
                    id: n.id.clone(),
                    addr: n.addr,
                    public_addr: n.public_addr,
                    stats: n.stats,
                    last_seen_ms: n.last_seen_ms,
                    draining: n.draining,
                    scrub: ScrubInfo::default(),
                };
                (n.id, view)
            })
            .collect();
        NodeTable {
            suspect_after,
            dead_after,
            nodes: RwLock::new(nodes),
        }
    }

    /// State of a node last heard from at `last_seen_ms`, judged at `now_ms`.
    pub fn state_of(&self, view: &NodeView, now_ms: i64) -> NodeState {
        let silent = Duration::from_millis(now_ms.saturating_sub(view.last_seen_ms).max(0) as u64);
        if silent >= self.dead_after {
            NodeState::Dead
        } else if silent >= self.suspect_after {
            NodeState::Suspect
        } else if view.draining {
            NodeState::Draining
        } else {
            NodeState::Alive
        }
    }

    pub fn upsert(&self, view: NodeView) {
        self.nodes.write_locked().insert(view.id.clone(), view);
    }

    /// Records a heartbeat; false when the node is unknown.
    pub fn heartbeat(
        &self,
        id: &str,
        stats: NodeStatsRecord,
        scrub: ScrubInfo,
        now_ms: i64,
    ) -> bool {
        let mut nodes = self.nodes.write_locked();
        match nodes.get_mut(id) {
            Some(v) => {
                crate::metrics::coordinator().heartbeats.inc();
                v.stats = stats;
                v.scrub = scrub;
                v.last_seen_ms = now_ms;
                true
            }
            None => false,
        }
    }

    pub fn set_draining(&self, id: &str, draining: bool) -> bool {
        let mut nodes = self.nodes.write_locked();
        nodes.get_mut(id).map(|v| v.draining = draining).is_some()
    }

    pub fn remove(&self, id: &str) {
        self.nodes.write_locked().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<NodeView> {
        self.nodes.read_locked().get(id).cloned()
    }

    /// Every node with its state at `now_ms`.
    pub fn snapshot(&self, now_ms: i64) -> Vec<(NodeView, NodeState)> {
        let nodes = self.nodes.read_locked();
        let mut out: Vec<_> = nodes
            .values()
            .map(|v| (v.clone(), self.state_of(v, now_ms)))
            .collect();
        out.sort_by(|a, b| a.0.id.cmp(&b.0.id));
        out
    }

    /// Nodes whose replicas count (anything not dead).
    pub fn live_set(&self, now_ms: i64) -> HashSet<String> {
        self.snapshot(now_ms)
            .into_iter()
            .filter(|(_, s)| *s != NodeState::Dead)
            .map(|(v, _)| v.id)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(id: &str, last_seen_ms: i64) -> NodeView {
        NodeView {
            id: id.into(),
            addr: "a".into(),
            public_addr: String::new(),
            stats: Default::default(),
            last_seen_ms,
            draining: false,
            scrub: ScrubInfo::default(),
        }
    }

    #[test]
    fn states_follow_silence() {
        let t = NodeTable::new(Duration::from_secs(6), Duration::from_secs(30), vec![]);
        let now = 1_000_000;
        assert_eq!(t.state_of(&view("a", now - 1_000), now), NodeState::Alive);
        assert_eq!(t.state_of(&view("a", now - 6_000), now), NodeState::Suspect);
        assert_eq!(t.state_of(&view("a", now - 30_000), now), NodeState::Dead);
        let mut d = view("a", now);
        d.draining = true;
        assert_eq!(t.state_of(&d, now), NodeState::Draining);
    }

    #[test]
    fn heartbeat_brings_a_node_back() {
        let t = NodeTable::new(Duration::from_secs(6), Duration::from_secs(30), vec![]);
        t.upsert(view("a", 0));
        assert!(t.live_set(100_000).is_empty());
        assert!(t.heartbeat("a", Default::default(), ScrubInfo::default(), 100_000));
        assert!(t.live_set(100_000).contains("a"));
        assert!(!t.heartbeat("nope", Default::default(), ScrubInfo::default(), 100_000));
    }
}
