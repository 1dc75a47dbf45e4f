//! Cluster operations behind the admin RPCs: status, fsck, drain and removal of nodes,
//! and the node list. Kept apart from `service.rs` so that file stays a thin translation.

use crate::sync::Locked;
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::{NodeState, NodeView, State};
use crate::meta::MetaError;
use crate::model::{
    now_ms, ClusterStatus, FsckChunk, FsckFile, FsckReport, NodeId, NodeInfo, ScrubProgress,
    StoreCounts, Timestamp,
};
use crate::path::{DfsPath, PathError};

/// Why an admin operation on the cluster was refused.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("invalid node id {0:?}: expected 1 to 64 of [A-Za-z0-9_-]")]
    BadNodeId(String),
    #[error("unknown datanode {0:?}")]
    UnknownNode(String),
    #[error(
        "datanode {node} is {state}: only a dead or drained node can be removed (drain it first)"
    )]
    NotRemovable { node: String, state: &'static str },
    #[error(
        "datanode {node} holds the only replica of {chunks} chunk(s); wait for repair or drain it"
    )]
    SoleReplicas { node: String, chunks: usize },
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

fn node_id(id: &str) -> Result<&str, AdminError> {
    if NodeId::parse(id).is_ok() {
        Ok(id)
    } else {
        Err(AdminError::BadNodeId(id.chars().take(80).collect()))
    }
}

/// Most files one fsck response lists.
const FSCK_MAX_FILES: usize = 10_000;

fn scrub(v: &NodeView) -> ScrubProgress {
    ScrubProgress {
        checked: v.scrub.checked,
        total: v.scrub.total,
        last_pass: Timestamp::nonzero(v.scrub.last_pass_ms),
        errors: v.scrub.errors,
    }
}

/// The node list: every node on record, those not in the node table as dead. A record
/// whose id is not a valid node id (none is: registration checks it) is left out.
pub async fn list_nodes(state: &Arc<State>) -> Result<Vec<NodeInfo>, AdminError> {
    let records = state.store.list_nodes().await?;
    let now = now_ms();
    Ok(records
        .into_iter()
        .filter_map(|r| match state.nodes.get(&r.id) {
            Some(v) => node_info(state, &v, r.replicas, now),
            None => Some(NodeInfo {
                node_id: NodeId::parse(&r.id).ok()?,
                addr: r.addr,
                public_addr: r.public_addr,
                state: Some(NodeState::Dead),
                capacity_bytes: r.stats.capacity_bytes,
                used_bytes: r.stats.used_bytes,
                free_bytes: r.stats.free_bytes,
                chunk_count: r.stats.chunk_count,
                last_seen: Timestamp::from_ms(r.last_seen_ms),
                replicas: r.replicas,
                safe_to_remove: false,
                scrub: None,
            }),
        })
        .collect())
}

/// The node list from memory (the node table) with the replica counts of the last gauge
/// refresh, for the status page: no query.
pub fn list_nodes_cached(state: &Arc<State>, replicas: &HashMap<String, u64>) -> Vec<NodeInfo> {
    let now = now_ms();
    let mut out: Vec<NodeInfo> = state
        .nodes
        .snapshot(now)
        .into_iter()
        .filter_map(|(v, _)| node_info(state, &v, replicas.get(&v.id).copied().unwrap_or(0), now))
        .collect();
    out.sort_by(|a, b| a.node_id.as_str().cmp(b.node_id.as_str()));
    out
}

fn node_info(state: &State, v: &NodeView, replicas: u64, now: i64) -> Option<NodeInfo> {
    Some(NodeInfo {
        node_id: NodeId::parse(&v.id).ok()?,
        addr: v.addr.clone(),
        public_addr: v.public_addr.clone(),
        state: Some(state.nodes.state_of(v, now)),
        capacity_bytes: v.stats.capacity_bytes,
        used_bytes: v.stats.used_bytes,
        free_bytes: v.stats.free_bytes,
        chunk_count: v.stats.chunk_count,
        last_seen: Timestamp::from_ms(v.last_seen_ms),
        replicas,
        safe_to_remove: v.draining && replicas == 0,
        scrub: Some(scrub(v)),
    })
}

/// `dfsd status`: counted live (an admin call; on a reader of the pool, so client calls
/// go on meanwhile).
pub async fn status(state: &Arc<State>) -> Result<ClusterStatus, AdminError> {
    let counted = state.store.counts().await?;
    Ok(status_with(state, &counted))
}

/// The cluster status from `counted` and the coordinator's memory.
pub fn status_with(state: &Arc<State>, counted: &StoreCounts) -> ClusterStatus {
    let now = now_ms();
    let mut out = ClusterStatus {
        files: counted.files,
        directories: counted.directories,
        logical_bytes: counted.logical_bytes,
        chunks: counted.chunks,
        gc_backlog_chunks: counted.gc_backlog_chunks,
        gc_backlog_bytes: counted.gc_backlog_bytes,
        gc_freed_bytes: state.maint.gc_freed_bytes.load(Ordering::Relaxed),
        repairs_running: state.maint.running(),
        repairs_done: state.maint.repairs_done.load(Ordering::Relaxed),
        repair_bytes_done: state.maint.repair_bytes.load(Ordering::Relaxed),
        repair_rate_bytes: state.maint.rate(),
        safe_mode: state.safe_mode_now(),
        ..Default::default()
    };
    for (v, s) in state.nodes.snapshot(now) {
        match s {
            NodeState::Alive => out.nodes_alive += 1,
            NodeState::Suspect => out.nodes_suspect += 1,
            NodeState::Dead => out.nodes_dead += 1,
            NodeState::Draining => out.nodes_draining += 1,
        }
        if s != NodeState::Dead {
            out.capacity_bytes += v.stats.capacity_bytes;
            out.used_bytes += v.stats.used_bytes;
            out.free_bytes += v.stats.free_bytes;
            out.scrub_checked += v.scrub.checked;
            out.scrub_total += v.scrub.total;
        }
        out.scrub_errors += v.scrub.errors;
    }
    let summary = *state.maint.summary.locked();
    out.under_replicated = summary.under_replicated;
    out.unrecoverable = summary.unrecoverable;
    out.over_replicated = summary.over_replicated;
    out.repair_queue = summary.queue.saturating_sub(out.repairs_running);
    out
}

/// fsck of the files under `path`: every file with a missing or under-replicated chunk,
/// or every file with `all`.
pub async fn fsck(state: &Arc<State>, path: &DfsPath, all: bool) -> Result<FsckReport, AdminError> {
    let (files, truncated) = state.store.files_under(path, FSCK_MAX_FILES).await?;
    let now = now_ms();
    let live: HashMap<String, NodeState> = state
        .nodes
        .snapshot(now)
        .into_iter()
        .filter(|(_, s)| *s != NodeState::Dead)
        .map(|(v, s)| (v.id, s))
        .collect();
    let mut out = FsckReport {
        truncated,
        ..Default::default()
    };
    for f in files {
        out.files_checked += 1;
        let mut report = FsckFile {
            path: DfsPath::parse(&f.path)?,
            size: f.size,
            chunks: f.chunks.len() as u64,
            replication: f.replication,
            under_replicated: 0,
            missing: 0,
            damaged: Vec::new(),
        };
        for (idx, (id, nodes)) in f.chunks.iter().enumerate() {
            out.chunks_checked += 1;
            let live_nodes: Vec<String> = nodes
                .iter()
                .filter(|n| matches!(live.get(*n), Some(NodeState::Alive | NodeState::Suspect)))
                .cloned()
                .collect();
            let usable = nodes.iter().filter(|n| live.contains_key(*n)).count();
            let n = live_nodes.len() as u32;
            if usable == 0 {
                report.missing += 1;
                out.missing_chunks += 1;
            } else if n < f.replication {
                report.under_replicated += 1;
                out.under_replicated_chunks += 1;
            } else {
                continue;
            }
            report.damaged.push(FsckChunk {
                chunk_id: *id,
                index: idx as u64,
                live_replicas: n,
                target: f.replication,
                nodes: live_nodes,
            });
        }
        let healthy = report.missing == 0 && report.under_replicated == 0;
        if healthy {
            out.healthy_files += 1;
        }
        if !healthy || all {
            out.files.push(report);
        }
    }
    Ok(out)
}

/// Starts (or with `cancel`, stops) draining `node`; returns the node as listed now.
pub async fn drain(
    state: &Arc<State>,
    node: &str,
    cancel: bool,
) -> Result<Option<NodeInfo>, AdminError> {
    node_id(node)?;
    let draining = !cancel;
    let found = state.store.set_draining(node, draining).await?;
    if !found || !state.nodes.set_draining(node, draining) {
        return Err(AdminError::UnknownNode(node.to_string()));
    }
    tracing::info!(node, draining, "drain state changed");
    state.maint.wake.notify_one();
    Ok(list_nodes(state)
        .await?
        .into_iter()
        .find(|n| n.node_id.as_str() == node))
}

/// Removes a dead or drained node that holds no chunk's only replica.
pub async fn remove(state: &Arc<State>, node: &str) -> Result<(), AdminError> {
    node_id(node)?;
    let Some(view) = state.nodes.get(node) else {
        return Err(AdminError::UnknownNode(node.to_string()));
    };
    let now = now_ms();
    let node_state = state.nodes.state_of(&view, now);
    if !matches!(node_state, NodeState::Dead | NodeState::Draining) {
        return Err(AdminError::NotRemovable {
            node: node.to_string(),
            state: node_state.as_str(),
        });
    }
    // Refuse while the node holds the only copy of anything a live node does not have.
    let live = state.nodes.live_set(now);
    let id = node;
    let chunks = state.store.chunks_on_node(id).await?;
    let holders = state.store.replicas_of(chunks).await?;
    let sole = holders
        .values()
        .filter(|nodes| !nodes.iter().any(|n| n != id && live.contains(n)))
        .count();
    if sole > 0 {
        return Err(AdminError::SoleReplicas {
            node: node.to_string(),
            chunks: sole,
        });
    }
    state.store.delete_node(node).await?;
    state.nodes.remove(node);
    tracing::info!(node, "datanode removed");
    state.maint.wake.notify_one();
    Ok(())
}
