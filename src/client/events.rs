//! The event stream, the SDK call (`dfsd events` prints it: `cli::events`).

use futures::StreamExt;

use super::{Client, Result};
use crate::model::EventRecord;
use crate::proto::pb;

impl Client {
    /// Cluster events from `since_ms` (0 = all kept), oldest first; with `follow`, the
    /// stream stays open and `on_event` gets new events as they happen. Stops early when
    /// `on_event` returns false.
    pub async fn events(
        &self,
        since_ms: i64,
        follow: bool,
        mut on_event: impl FnMut(EventRecord) -> bool,
    ) -> Result<()> {
        let msg = pb::EventsRequest {
            since_ms,
            follow,
            after_id: 0,
        };
        let req = if follow {
            self.request_untimed(msg)
        } else {
            self.request(msg)
        };
        let mut stream = self
            .coordinator
            .clone()
            .events(req)
            .await
            .map_err(|s| self.coord_err(s))?
            .into_inner();
        while let Some(ev) = stream.next().await {
            if !on_event(ev.map_err(|s| self.coord_err(s))?.into()) {
                break;
            }
        }
        Ok(())
    }
}
