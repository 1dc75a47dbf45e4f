//! The gRPC calls a datanode makes to other datanodes: forwarding a write to the next node
//! of its pipeline ([`Forward`]) and reading a chunk from a repair source
//! ([`read_chunk`]). Their failures come back as [`PeerError`], so the pipeline and the
//! repair code decide on what happened, not on transport types.

use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Streaming};

use crate::chunk::ChunkId;
use crate::net::{ChannelCache, MAX_MESSAGE_BYTES};
use crate::proto::pb;

/// Time for a repair source to start answering.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// A repair source silent for this long between frames is given up.
const FRAME_IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a call to another datanode failed; each carries the peer's (or the transport's)
/// explanation as it came.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The peer does not hold what was asked for.
    #[error("{0}")]
    NotFound(String),
    /// The peer could not be reached, or did not answer in time (its channel is then
    /// worth reconnecting).
    #[error("{0}")]
    Unreachable(String),
    /// The peer's address or the request was refused as invalid.
    #[error("{0}")]
    Invalid(String),
    /// Any other failure of the call.
    #[error("{0}")]
    Failed(String),
}

/// The write of one chunk on its way to the next node of the pipeline.
pub struct Forward {
    node_id: String,
    tx: mpsc::Sender<pb::WriteChunkRequest>,
    task: JoinHandle<Result<pb::WriteChunkResponse, PeerError>>,
}

impl Forward {
    /// Opens the write to `next`, sending it `header` (which names the rest of the chain).
    pub fn start(
        peers: &ChannelCache,
        next: &pb::NodeAddr,
        header: pb::WriteChunkHeader,
    ) -> Result<Forward, PeerError> {
        let channel = peers.get(&next.addr).map_err(PeerError::from)?;
        let (tx, rx) = mpsc::channel(16);
        tx.try_send(pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(header)),
        })
        .map_err(|_| PeerError::Failed("downstream channel closed".into()))?;
        let mut req = Request::new(ReceiverStream::new(rx));
        crate::grpc_layer::tag(&mut req);
        let task = tokio::spawn(async move {
            let mut client = pb::datanode_client::DatanodeClient::new(channel)
                .max_decoding_message_size(MAX_MESSAGE_BYTES);
            Ok(client.write_chunk(req).await?.into_inner())
        });
        Ok(Forward {
            node_id: next.node_id.clone(),
            tx,
            task,
        })
    }

    /// Passes the next bytes on; false if the next node has failed.
    pub async fn send(&self, data: Bytes) -> bool {
        let frame = pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Data(data)),
        };
        self.tx.send(frame).await.is_ok()
    }

    /// Sends the end marker: the next node may verify and install.
    pub async fn end(self) -> Forwarded {
        let end = pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::End(true)),
        };
        let _ = self.tx.send(end).await;
        Forwarded {
            node_id: self.node_id,
            task: self.task,
        }
    }

    /// Cancels the call: without the end marker, no node downstream installs the chunk.
    pub fn abort(self) {
        self.task.abort();
    }

    /// Why the next node stopped taking frames.
    pub async fn failure(self) -> pb::NodeFailure {
        let error = match self.task.await {
            Ok(Err(e)) => e.to_string(),
            Ok(Ok(_)) => "stream closed early".to_string(),
            Err(e) => e.to_string(),
        };
        pb::NodeFailure {
            node_id: self.node_id,
            error,
        }
    }
}

/// A forwarded write whose stream is complete, waiting for the next node's ack.
pub struct Forwarded {
    node_id: String,
    task: JoinHandle<Result<pb::WriteChunkResponse, PeerError>>,
}

impl Forwarded {
    pub fn abort(self) {
        self.task.abort();
    }

    /// The ack of the rest of the pipeline, or its failure as the ack would carry it.
    pub async fn ack(self) -> Result<pb::WriteChunkResponse, pb::NodeFailure> {
        let error = match self.task.await {
            Ok(Ok(resp)) => return Ok(resp),
            Ok(Err(e)) => e.to_string(),
            Err(e) => e.to_string(),
        };
        Err(pb::NodeFailure {
            node_id: self.node_id,
            error,
        })
    }
}

/// A chunk streaming in from a peer.
pub struct ChunkStream(Streaming<pb::ReadChunkResponse>);

impl ChunkStream {
    /// The next bytes; None at the end of the chunk.
    pub async fn next(&mut self) -> Result<Option<Bytes>, PeerError> {
        match tokio::time::timeout(FRAME_IDLE_TIMEOUT, self.0.message()).await {
            Ok(Ok(m)) => Ok(m.map(|m| m.data)),
            Ok(Err(status)) => Err(status.into()),
            Err(_) => Err(PeerError::Unreachable("stream idle".into())),
        }
    }
}

/// Starts reading chunk `id` from the peer at `addr`. A peer that is unreachable or slow
/// to answer is forgotten, so the next call reconnects.
pub async fn read_chunk(
    peers: &ChannelCache,
    addr: &str,
    id: ChunkId,
    read_token: &str,
) -> Result<ChunkStream, PeerError> {
    let channel = peers.get(addr).map_err(PeerError::from)?;
    let mut client = pb::datanode_client::DatanodeClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let req = Request::new(pb::ReadChunkRequest {
        chunk_id: id.to_hex(),
        token: read_token.to_string(),
    });
    match tokio::time::timeout(START_TIMEOUT, client.read_chunk(req)).await {
        Ok(Ok(r)) => Ok(ChunkStream(r.into_inner())),
        Ok(Err(status)) => {
            let e = PeerError::from(status);
            if matches!(e, PeerError::Unreachable(_)) {
                peers.forget(addr);
            }
            Err(e)
        }
        Err(_) => {
            peers.forget(addr);
            Err(PeerError::Unreachable("no answer in time".into()))
        }
    }
}
