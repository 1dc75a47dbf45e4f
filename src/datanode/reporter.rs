//! Replica reports to the coordinator, batched: while one report is on the wire, new ones
//! queue up and travel together in the next, so a busy node makes few metadata
//! transactions without delaying an idle one.

use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use super::cluster::{CallError, Cluster};
use crate::chunk::ChunkId;
use crate::retry::Backoff;

/// Most chunks per report.
const MAX_BATCH: usize = 1024;
/// How long a report is retried while the coordinator cannot take it.
const REPORT_WAIT: Duration = Duration::from_secs(20);

/// Why a replica was not recorded by the coordinator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    /// The reporter task is gone (the node is shutting down).
    #[error("reporter stopped")]
    Stopped,
    /// The coordinator refused the report, or stayed unreachable for [`REPORT_WAIT`].
    #[error(transparent)]
    NotRecorded(#[from] CallError),
}

/// One chunk to report: id, size, the access key whose write stored it (empty for a
/// repair copy), and who waits for the answer.
type Job = (
    ChunkId,
    u64,
    String,
    oneshot::Sender<Result<(), ReportError>>,
);

#[derive(Clone)]
pub struct Reporter {
    tx: mpsc::Sender<Job>,
}

impl Reporter {
    pub fn spawn(node_id: String, coordinator: Cluster) -> Reporter {
        let (tx, mut rx) = mpsc::channel::<Job>(4096);
        tokio::spawn(async move {
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
                let chunks: Vec<(ChunkId, u64)> =
                    batch.iter().map(|(id, size, _, _)| (*id, *size)).collect();
                let result = send(&coordinator, &node_id, &owner, &chunks).await;
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
    pub async fn report(&self, id: ChunkId, size: u64, owner: &str) -> Result<(), ReportError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send((id, size, owner.to_string(), done))
            .await
            .map_err(|_| ReportError::Stopped)?;
        wait.await.map_err(|_| ReportError::Stopped)?
    }
}

/// Sends one report, again and again while the coordinator cannot take it (restarting,
/// or not yet knowing this node after its restart), for up to [`REPORT_WAIT`]: the
/// chunks are durable, and a write answered as failed only because the coordinator was
/// briefly away would make the client give up on this node. A refusal of the report
/// itself (bad chunk, size conflict) is final.
async fn send(
    coordinator: &Cluster,
    node_id: &str,
    owner: &str,
    chunks: &[(ChunkId, u64)],
) -> Result<(), ReportError> {
    Backoff::patient(REPORT_WAIT)
        .retry(
            || coordinator.report_replicas(node_id, owner, chunks),
            |e| matches!(e, CallError::NotReady(_)),
            |e, pause| tracing::debug!(error = %e, "replica report not taken; retrying in {pause:?}"),
        )
        .await
        .map_err(ReportError::from)
}
