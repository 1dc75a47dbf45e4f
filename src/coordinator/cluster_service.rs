//! The Cluster gRPC service (datanodes only): each call decoded into domain types, one
//! call into `nodes.rs`, the answer encoded.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use tonic::{Request, Response, Status, Streaming};

use super::nodes::Beat;
use super::wire::{parse_chunks, BATCH_MAX};
use super::{ScrubInfo, State};
use crate::chunk::ChunkId;
use crate::model::{now_ms, InventoryItem, NodeStatsRecord};
use crate::proto::pb;
use crate::wire_error::check_node_id;

pub struct ClusterService {
    state: Arc<State>,
}

impl ClusterService {
    pub fn new(state: Arc<State>) -> Self {
        ClusterService { state }
    }
}

/// A datanode listening on a wildcard address is reached at the address we see it from.
fn effective_addr(advertised: &str, peer: Option<SocketAddr>) -> Result<String, Status> {
    endpoint(advertised, peer, "--advertise")
}

/// A datanode's public address (`--public-advertise`): a real host and port, or none.
fn public_addr(advertised: &str) -> Result<String, Status> {
    if advertised.is_empty() {
        return Ok(String::new());
    }
    endpoint(advertised, None, "--public-advertise")
}

fn endpoint(advertised: &str, peer: Option<SocketAddr>, flag: &str) -> Result<String, Status> {
    let uri = crate::config::endpoint_uri(advertised);
    let parsed: http::Uri = uri
        .parse()
        .map_err(|e| Status::invalid_argument(format!("invalid address {advertised:?}: {e}")))?;
    let host = parsed.host().unwrap_or("");
    let port = parsed
        .port_u16()
        .ok_or_else(|| Status::invalid_argument(format!("address {advertised:?} has no port")))?;
    let wildcard = host.is_empty() || host == "0.0.0.0" || host == "[::]" || host == "::";
    if !wildcard {
        return Ok(uri);
    }
    let ip = peer.map(|p| p.ip()).ok_or_else(|| {
        Status::invalid_argument(format!("address {advertised:?} is a wildcard; set {flag}"))
    })?;
    Ok(match ip {
        std::net::IpAddr::V4(v4) => format!("http://{v4}:{port}"),
        std::net::IpAddr::V6(v6) => format!("http://[{v6}]:{port}"),
    })
}

/// Reads a whole inventory stream: the node it names and its chunks. Only the `last`
/// marker proves the list whole (a cancelled stream also ends cleanly on the server), and
/// a partial list would make replicas look lost.
async fn read_inventory(
    mut stream: Streaming<pb::InventoryBatch>,
) -> Result<(String, HashMap<ChunkId, InventoryItem>), Status> {
    let mut node: Option<String> = None;
    let mut inventory = HashMap::new();
    let mut complete = false;
    while let Some(batch) = stream.message().await? {
        if complete {
            return Err(Status::invalid_argument(
                "inventory batch after the last one",
            ));
        }
        complete = batch.last;
        check_node_id(&batch.node_id)?;
        match &node {
            None => node = Some(batch.node_id.clone()),
            Some(n) if *n != batch.node_id => {
                return Err(Status::invalid_argument("inventory names two nodes"))
            }
            Some(_) => {}
        }
        for c in batch.chunks {
            let id: ChunkId = c.chunk_id.parse()?;
            let (size, age_secs) = (c.size, c.age_secs);
            inventory.insert(id, InventoryItem { size, age_secs });
        }
    }
    let Some(node) = node else {
        return Err(Status::invalid_argument("empty inventory stream"));
    };
    if !complete {
        return Err(Status::aborted(format!(
            "inventory from {node} ended before its last batch"
        )));
    }
    Ok((node, inventory))
}

#[tonic::async_trait]
impl pb::cluster_server::Cluster for ClusterService {
    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let peer = req.remote_addr();
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let addr = effective_addr(&req.addr, peer)?;
        let public = public_addr(&req.public_addr)?;
        let stats: NodeStatsRecord = req.stats.into();
        self.state
            .register_node(&req.node_id, &addr, &public, stats)
            .await?;
        let trust = &self.state.trust;
        let (token_key, token_key_sealed) =
            trust.token_key_for(&req.node_id, &self.state.token_key);
        Ok(Response::new(pb::RegisterResponse {
            heartbeat_interval_ms: self.state.cfg.heartbeat_interval.as_millis() as u64,
            token_key,
            token_key_sealed,
            revoked: Some(trust.revoked_pb()),
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let scrub = req.stats.as_ref().and_then(|s| s.scrub).map(|s| ScrubInfo {
            checked: s.checked,
            total: s.total,
            last_pass_ms: s.last_pass_ms,
            errors: s.errors,
        });
        let stats: NodeStatsRecord = req.stats.into();
        let beat = (self.state)
            .heartbeat(
                &req.node_id,
                stats,
                scrub.unwrap_or_default(),
                &req.token_key_digest,
            )
            .await?;
        Ok(Response::new(match beat {
            Beat::Reregister => pb::HeartbeatResponse {
                reregister: true,
                ..Default::default()
            },
            Beat::Carry { send_inventory } => pb::HeartbeatResponse {
                reregister: false,
                send_inventory,
                revoked: self.state.trust.revoked_update(&req.revoked_digest),
            },
        }))
    }

    async fn report_replicas(
        &self,
        req: Request<pb::ReportReplicasRequest>,
    ) -> Result<Response<pb::ReportReplicasResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        if req.chunks.len() > BATCH_MAX {
            return Err(Status::invalid_argument(format!(
                "at most {BATCH_MAX} chunks per report"
            )));
        }
        let chunks = parse_chunks(&req.chunks, self.state.cfg.max_chunk_size)?;
        (self.state)
            .record_replicas(&req.node_id, &req.owner, chunks)
            .await?;
        Ok(Response::new(pb::ReportReplicasResponse {}))
    }

    async fn report_inventory(
        &self,
        req: Request<Streaming<pb::InventoryBatch>>,
    ) -> Result<Response<pb::InventoryResponse>, Status> {
        let started = now_ms();
        let (node, inventory) = read_inventory(req.into_inner()).await?;
        let r = (self.state)
            .reconcile_inventory(&node, inventory, started)
            .await?;
        Ok(Response::new(pb::InventoryResponse {
            lost: r.lost.len() as u64,
            added: r.added,
            orphans: r.orphans.len() as u64,
        }))
    }

    async fn report_corruption(
        &self,
        req: Request<pb::ReportCorruptionRequest>,
    ) -> Result<Response<pb::ReportCorruptionResponse>, Status> {
        let req = req.into_inner();
        check_node_id(&req.node_id)?;
        let ids: Vec<ChunkId> = req
            .chunk_ids
            .iter()
            .map(|s| s.parse())
            .collect::<Result<_, _>>()?;
        self.state.forget_corrupt(&req.node_id, ids).await?;
        Ok(Response::new(pb::ReportCorruptionResponse {}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_addresses_take_the_peer_ip() {
        let peer: SocketAddr = "10.1.2.3:5555".parse().unwrap();
        assert_eq!(
            effective_addr("0.0.0.0:7071", Some(peer)).unwrap(),
            "http://10.1.2.3:7071"
        );
        assert_eq!(
            effective_addr("http://node4:7071", Some(peer)).unwrap(),
            "http://node4:7071"
        );
        assert!(effective_addr("0.0.0.0", Some(peer)).is_err());
        assert_eq!(public_addr("").unwrap(), "");
        assert_eq!(
            public_addr("127.0.0.1:17071").unwrap(),
            "http://127.0.0.1:17071"
        );
        let wild = public_addr("0.0.0.0:17071").unwrap_err();
        assert!(wild.message().contains("--public-advertise"), "{wild:?}");
        assert!(public_addr("localhost").is_err());
    }
}
