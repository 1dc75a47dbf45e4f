//! The coordinator's orders to datanodes, the one place it calls them: copy a chunk from
//! other replicas (repair), delete chunks (trimming, garbage collection), verify a replica
//! (a client reported it bad). Each order carries a chunk token signed for its operation,
//! so a datanode obeys only what the coordinator signed; callers get plain domain answers.

use std::time::Duration;

use tonic::Request;

use super::{NodeView, State};
use crate::chunk::ChunkId;
use crate::proto::pb;
use crate::security::token::Op;

/// An order a datanode did not carry out (unreachable, refused, failed).
#[derive(Debug, thiserror::Error)]
#[error("{order} at datanode {addr}: {message}")]
pub struct OrderFailed {
    pub order: &'static str,
    pub addr: String,
    pub message: String,
}

/// What a delete order did.
#[derive(Debug, Clone, Default)]
pub struct Deleted {
    pub deleted: usize,
    /// Chunks the node kept: written to within the protection window.
    pub kept: Vec<ChunkId>,
    pub freed_bytes: u64,
}

/// What a verify order found.
#[derive(Debug, Clone, Copy)]
pub struct Verified {
    pub present: bool,
    pub intact: bool,
}

fn client(
    state: &State,
    order: &'static str,
    addr: &str,
) -> Result<pb::datanode_client::DatanodeClient<tonic::transport::Channel>, OrderFailed> {
    let ch = state.peers.get(addr).map_err(|s| failed(order, addr, s))?;
    Ok(pb::datanode_client::DatanodeClient::new(ch))
}

fn failed(order: &'static str, addr: &str, s: tonic::Status) -> OrderFailed {
    OrderFailed {
        order,
        addr: addr.to_string(),
        message: s.message().to_string(),
    }
}

/// Has datanode `dest` copy chunk `id` (`size` bytes) from one of `sources` (the cluster
/// addresses: datanodes reach each other inside the cluster's network). Returns the
/// source it copied from.
pub async fn replicate(
    state: &State,
    dest: &str,
    id: ChunkId,
    size: u64,
    sources: &[NodeView],
) -> Result<String, OrderFailed> {
    const ORDER: &str = "replicate";
    let mut req = Request::new(pb::ReplicateChunkRequest {
        chunk_id: id.to_hex(),
        size,
        sources: sources
            .iter()
            .map(|v| pb::NodeAddr {
                node_id: v.id.clone(),
                addr: v.addr.clone(),
                public_addr: String::new(),
            })
            .collect(),
        token: state.token(Op::Replicate, &[id]),
        read_token: state.token(Op::Read, &[id]),
    });
    req.set_timeout(Duration::from_secs(300));
    let r = client(state, ORDER, dest)?
        .replicate_chunk(req)
        .await
        .map_err(|s| failed(ORDER, dest, s))?;
    Ok(r.into_inner().source)
}

/// Has datanode `addr` delete `ids`, keeping any written within `protect_secs`.
pub async fn delete(
    state: &State,
    addr: &str,
    ids: &[ChunkId],
    protect_secs: u64,
) -> Result<Deleted, OrderFailed> {
    const ORDER: &str = "delete";
    let mut req = Request::new(pb::DeleteChunksRequest {
        chunk_ids: ids.iter().map(|i| i.to_hex()).collect(),
        protect_secs,
        token: state.token(Op::Delete, ids),
    });
    req.set_timeout(Duration::from_secs(60));
    let r = client(state, ORDER, addr)?
        .delete_chunks(req)
        .await
        .map_err(|s| failed(ORDER, addr, s))?
        .into_inner();
    Ok(Deleted {
        deleted: r.deleted.len(),
        kept: r.kept.iter().filter_map(|k| k.parse().ok()).collect(),
        freed_bytes: r.freed_bytes,
    })
}

/// Has datanode `addr` read and hash its replica of `id`.
pub async fn verify(state: &State, addr: &str, id: ChunkId) -> Result<Verified, OrderFailed> {
    const ORDER: &str = "verify";
    let mut req = Request::new(pb::VerifyChunkRequest {
        chunk_id: id.to_hex(),
        token: state.token(Op::Verify, &[id]),
    });
    req.set_timeout(Duration::from_secs(60));
    let r = client(state, ORDER, addr)?
        .verify_chunk(req)
        .await
        .map_err(|s| failed(ORDER, addr, s))?
        .into_inner();
    Ok(Verified {
        present: r.present,
        intact: r.intact,
    })
}
