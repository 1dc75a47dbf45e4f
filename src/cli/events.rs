//! `dfsd events`: the cluster's event stream, one line (or JSON object) per event.

use std::io::Write;

use super::args::EventsArgs;
use crate::client::Client;
use crate::model::EventRecord;
use crate::units::{parse_time, rfc3339_ms};

/// One event as a JSON object (the `--json` output, one object per line).
pub fn event_json(e: &EventRecord) -> serde_json::Value {
    serde_json::json!({
        "id": e.id,
        "time": rfc3339_ms(e.time_ms),
        "time_ms": e.time_ms,
        "kind": e.kind,
        "node_id": e.node_id,
        "path": e.path,
        "chunk_id": e.chunk_id,
        "bytes": e.bytes,
        "count": e.count,
        "detail": e.detail,
    })
}

/// One event as a line for humans: time, kind, then the fields that apply.
pub fn event_line(e: &EventRecord) -> String {
    let mut line = format!("{}  {:<16}", rfc3339_ms(e.time_ms), e.kind);
    for (k, v) in [
        ("node", &e.node_id),
        ("path", &e.path),
        ("chunk", &e.chunk_id),
    ] {
        if !v.is_empty() {
            line.push_str(&format!(" {k}={v}"));
        }
    }
    if e.count > 0 {
        line.push_str(&format!(" count={}", e.count));
    }
    if e.bytes > 0 {
        line.push_str(&format!(" bytes={}", crate::units::format_size(e.bytes)));
    }
    if !e.detail.is_empty() {
        line.push_str(&format!(" ({})", e.detail));
    }
    line
}

/// `dfsd events [--follow] [--since TIME] [--json]`.
pub async fn command(client: &Client, args: &EventsArgs) -> anyhow::Result<()> {
    let since = match &args.since {
        Some(s) => {
            parse_time(s, crate::model::now_ms()).map_err(|e| anyhow::anyhow!("--since {e}"))?
        }
        None => 0,
    };
    let mut failed = None;
    let mut reader_stopped = false;
    client
        .events(since, args.follow, |e| {
            let mut out = std::io::stdout().lock();
            let written = if args.json {
                writeln!(out, "{}", event_json(&e))
            } else {
                writeln!(out, "{}", event_line(&e))
            };
            // A closed pipe (`dfsd events --follow | head`) ends the stream quietly.
            match written.and_then(|_| out.flush()) {
                Ok(()) => true,
                Err(e) => {
                    if e.kind() != std::io::ErrorKind::BrokenPipe {
                        failed = Some(e);
                    }
                    reader_stopped = true;
                    false
                }
            }
        })
        .await?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if args.follow && !reader_stopped {
        // A follow stream ends only when the coordinator stops: say so, and fail, so a
        // script watching events notices.
        anyhow::bail!("the coordinator ended the event stream (it is shutting down?)");
    }
    Ok(())
}
