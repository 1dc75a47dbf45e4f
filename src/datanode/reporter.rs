//! Replica reports to the coordinator, batched: while one report is on the wire, new ones
//! queue up and travel together in the next, so a busy node makes few metadata
//! transactions without delaying an idle one.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tonic::{Code, Status};

use crate::chunk::ChunkId;
use crate::proto::pb;
use crate::security::join::ClusterChannel;

/// Most chunks per report.
const MAX_BATCH: usize = 1024;
/// How long a report is retried while the coordinator cannot take it.
const REPORT_WAIT: Duration = Duration::from_secs(20);

/// One chunk to report: id, size, the access key whose write stored it (empty for a
/// repair copy), and who waits for the answer.
type Job = (ChunkId, u64, String, oneshot::Sender<Result<(), String>>);

#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Job>,
}

impl Reporter {
    pub fn spawn(node_id: String, coordinator: ClusterChannel) -> Reporter {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
            let mut client = pb::cluster_client::ClusterClient::new(coordinator);
            // A job for another key than the batch's waits for the next batch.
            let mut held: Option<Job> = None;
            while let Some(first) = match held.take() {
                Some(j) => Some(j),
                None => rx.recv().await,
            } {
                let owner = first.2.clone();
                let mut batch = vec![first];
                while batch.len() < MAX_BATCH {
                    match rx.try_recv() {
                        Ok(j) if j.2 == owner => batch.push(j),
                        Ok(j) => {
                            held = Some(j);
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let req = pb::ReportReplicasRequest {
                    node_id: node_id.clone(),
                    chunks: batch
                        .iter()
                        .map(|(id, size, _, _)| pb::ChunkRef {
                            receipt: None,
                            chunk_id: id.to_hex(),
                            size: *size,
                        })
                        .collect(),
                    owner,
                };
                let result = send(&mut client, req).await;
                if let Err(e) = &result {
                    tracing::warn!(chunks = batch.len(), error = %e, "replica report failed");
                }
                for (_, _, _, done) in batch {
                    let _ = done.send(result.clone());
                }
            }
        });
        Reporter { tx }
    }

    /// Reports one durable chunk, stored by a write of access key `owner` (empty for a
    /// repair copy), and waits until the coordinator has recorded it.
    pub async fn report(&self, id: ChunkId, size: u64, owner: &str) -> Result<(), String> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((id, size, owner.to_string(), done))
            .await
            .map_err(|_| "reporter stopped".to_string())?;
        wait.await.map_err(|_| "reporter stopped".to_string())?
    }
}

/// Sends one report, again and again while the coordinator cannot take it (restarting,
/// or not yet knowing this node after its restart), for up to [`REPORT_WAIT`]: the
/// chunks are durable, and a write answered as failed only because the coordinator was
/// briefly away would make the client give up on this node. A refusal of the report
/// itself (bad chunk, size conflict) is final.
async fn send(
    client: &mut pb::cluster_client::ClusterClient<ClusterChannel>,
    req: pb::ReportReplicasRequest,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + REPORT_WAIT;
    let mut pause = Duration::from_millis(50);
    loop {
        let mut request = tonic::Request::new(req.clone());
        request.set_timeout(Duration::from_secs(30));
        match client.report_replicas(request).await {
            Ok(_) => return Ok(()),
            Err(s) if retryable(&s) && tokio::time::Instant::now() + pause < deadline => {
                tracing::debug!(error = %s.message(), "replica report not taken; retrying in {pause:?}");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(2));
            }
            Err(s) => return Err(s.message().to_string()),
        }
    }
}

/// Answers worth sending a report again for: the coordinator unreachable or not ready.
fn retryable(s: &Status) -> bool {
    matches!(
        s.code(),
        Code::Unavailable | Code::NotFound | Code::FailedPrecondition | Code::Unauthenticated
    )
}
