//! Replica reports to the coordinator, batched: while one report is on the wire, new ones
//! queue up and travel together in the next, so a busy node makes few metadata
//! transactions without delaying an idle one.

use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::chunk::ChunkId;
use crate::proto::pb;
use crate::security::join::ClusterChannel;

/// Most chunks per report.
const MAX_BATCH: usize = 1024;

type Job = (ChunkId, u64, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Job>,
}

impl Reporter {
    pub fn spawn(node_id: String, coordinator: ClusterChannel) -> Reporter {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
            let mut client = pb::cluster_client::ClusterClient::new(coordinator);
            while let Some(first) = rx.recv().await {
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) => batch.push(j),
                        Err(_) => break,
                    }
                }
                let req = pb::ReportReplicasRequest {
                    node_id: node_id.clone(),
                    chunks: batch
                        .iter()
                        .map(|(id, size, _)| pb::ChunkRef {
                            receipt: None,
                            chunk_id: id.to_hex(),
                            size: *size,
                        })
                        .collect(),
                };
                let mut request = tonic::Request::new(req);
                request.set_timeout(std::time::Duration::from_secs(30));
                let result = client
                    .report_replicas(request)
                    .await
                    .map(|_| ())
                    .map_err(|s: Status| s.message().to_string());
                if let Err(e) = &result {
                    tracing::warn!(chunks = batch.len(), error = %e, "replica report failed");
                }
                for (_, _, done) in batch {
                    let _ = done.send(result.clone());
                }
            }
        });
        Reporter { tx }
    }

    /// Reports one durable chunk and waits until the coordinator has recorded it.
    pub async fn report(&self, id: ChunkId, size: u64) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((id, size, done))
            .await
            .map_err(|_| "reporter stopped".to_string())?;
        wait.await.map_err(|_| "reporter stopped".to_string())?
    }
}
