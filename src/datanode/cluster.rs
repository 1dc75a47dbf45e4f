//! The gRPC calls a datanode makes to the coordinator's Cluster service for its
//! background work: replica reports (`reporter.rs`), corruption reports (`scrub.rs`) and
//! inventory streams (`inventory.rs`). Registration and heartbeats are in `mod.rs`.
//! Failures come back as [`CallError`], which says whether calling again may help.
//!
//! An inventory's end of stream means "complete", so a walk that fails halfway must never
//! end the stream cleanly, or the coordinator would take every chunk not yet listed for
//! lost. Its last item is then [`Outgoing::Abort`], which the codec here refuses to
//! encode, so the HTTP/2 stream is reset with INTERNAL_ERROR and the coordinator's
//! handler sees an error. (Merely dropping the call would not do: the client then resets
//! with CANCEL, and a tonic server reads a cancelled request stream as a clean end.)

use std::time::Duration;

use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic::Status;

use crate::chunk::ChunkId;
use crate::net::MAX_MESSAGE_BYTES;
use crate::proto::pb;
use crate::security::join::ClusterChannel;

/// Bound on one report call.
const REPORT_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on one inventory call, however large: a hung coordinator must not stall the worker.
const INVENTORY_TIMEOUT: Duration = Duration::from_secs(3600);

/// Why a call to the coordinator failed, with its explanation as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// The coordinator is unreachable or not ready for this node (restarting, or not yet
    /// knowing it after a restart): worth calling again.
    #[error("{0}")]
    NotReady(String),
    /// The coordinator refused the call itself.
    #[error("{0}")]
    Refused(String),
}

/// What an inventory stream carries.
pub enum Outgoing {
    Batch(pb::InventoryBatch),
    /// The walk failed: break the stream off instead of ending it.
    Abort,
}

/// The coordinator, as this datanode's background work calls it.
#[derive(Clone)]
pub struct Cluster {
    channel: ClusterChannel,
}

impl Cluster {
    pub fn new(channel: ClusterChannel) -> Cluster {
        Cluster { channel }
    }

    fn client(&self) -> pb::cluster_client::ClusterClient<ClusterChannel> {
        pb::cluster_client::ClusterClient::new(self.channel.clone())
    }

    /// Reports durable replicas stored by a write of access key `owner` (empty for repair
    /// copies): `(id, size)` each.
    pub async fn report_replicas(
        &self,
        node_id: &str,
        owner: &str,
        chunks: &[(ChunkId, u64)],
    ) -> Result<(), CallError> {
        let mut req = tonic::Request::new(pb::ReportReplicasRequest {
            node_id: node_id.to_string(),
            chunks: chunks
                .iter()
                .map(|(id, size)| pb::ChunkRef {
                    receipt: None,
                    chunk_id: id.to_hex(),
                    size: *size,
                })
                .collect(),
            owner: owner.to_string(),
        });
        req.set_timeout(REPORT_TIMEOUT);
        self.client().report_replicas(req).await?;
        Ok(())
    }

    /// Reports chunks found corrupt (and quarantined).
    pub async fn report_corruption(&self, node_id: &str, ids: &[ChunkId]) -> Result<(), CallError> {
        let mut req = tonic::Request::new(pb::ReportCorruptionRequest {
            node_id: node_id.to_string(),
            chunk_ids: ids.iter().map(ChunkId::to_hex).collect(),
        });
        req.set_timeout(REPORT_TIMEOUT);
        self.client().report_corruption(req).await?;
        Ok(())
    }

    /// Streams an inventory: what `ClusterClient::report_inventory` does, with the codec
    /// that turns [`Outgoing::Abort`] into a reset (see the module doc).
    pub async fn report_inventory(
        &self,
        stream: impl futures::Stream<Item = Outgoing> + Send + 'static,
    ) -> Result<pb::InventoryResponse, CallError> {
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        grpc.ready()
            .await
            .map_err(|e| CallError::NotReady(format!("coordinator not ready: {e}")))?;
        let mut request = tonic::Request::new(stream);
        request.set_timeout(INVENTORY_TIMEOUT);
        request
            .extensions_mut()
            .insert(tonic::GrpcMethod::new("dfs.v1.Cluster", "ReportInventory"));
        let path = http::uri::PathAndQuery::from_static("/dfs.v1.Cluster/ReportInventory");
        let response = grpc.client_streaming(request, path, InventoryCodec).await?;
        Ok(response.into_inner())
    }
}

/// Protobuf for the batches and the response, and an encoding error for
/// [`Outgoing::Abort`], which makes the HTTP/2 layer reset the stream with INTERNAL_ERROR.
#[derive(Clone, Copy)]
struct InventoryCodec;

impl Codec for InventoryCodec {
    type Encode = Outgoing;
    type Decode = pb::InventoryResponse;
    type Encoder = InventoryEncoder;
    type Decoder = tonic_prost::ProstDecoder<pb::InventoryResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        InventoryEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::default()
    }
}

struct InventoryEncoder;

impl Encoder for InventoryEncoder {
    type Item = Outgoing;
    type Error = Status;

    fn encode(&mut self, item: Outgoing, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        match item {
            Outgoing::Batch(b) => prost::Message::encode(&b, dst)
                .map_err(|e| Status::internal(format!("encode inventory batch: {e}"))),
            Outgoing::Abort => Err(Status::aborted("inventory walk failed")),
        }
    }
}
