//! Cluster commands for operators: `dfsd nodes`, `dfsd status`, `dfsd fsck` and
//! `dfsd node drain|remove`, as tables for people or JSON for scripts.

use std::io::Write;

use anyhow::Context;

use super::args::{FsckArgs, NodeCommand};
use crate::client::Client;
use crate::model::{ClusterStatus, NodeId, NodeInfo, NodeState, Timestamp};
use crate::units::format_size;

fn state_name(state: Option<NodeState>) -> String {
    state.map_or("unknown", NodeState::as_str).to_string()
}

fn node_json(n: &NodeInfo) -> serde_json::Value {
    let scrub = n.scrub.unwrap_or_default();
    let last_pass_ms = scrub.last_pass.map_or(0, Timestamp::as_ms);
    serde_json::json!({
        "node_id": n.node_id.as_str(),
        "addr": n.addr,
        "public_addr": n.public_addr,
        "state": state_name(n.state),
        "capacity_bytes": n.capacity_bytes,
        "used_bytes": n.used_bytes,
        "free_bytes": n.free_bytes,
        "chunk_count": n.chunk_count,
        "replicas": n.replicas,
        "last_seen_ms": n.last_seen.as_ms(),
        "safe_to_remove": n.safe_to_remove,
        "scrub": {"checked": scrub.checked, "total": scrub.total, "last_pass_ms": last_pass_ms, "errors": scrub.errors},
    })
}

pub async fn nodes(client: &Client, json: bool) -> anyhow::Result<()> {
    let nodes = client.nodes().await.context("list nodes")?;
    let mut out = std::io::stdout().lock();
    if json {
        let v: Vec<_> = nodes.iter().map(node_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "{:<20} {:<8} {:>10} {:>10} {:>10} {:>9}  ADDRESS",
        "NODE", "STATE", "CAPACITY", "USED", "FREE", "CHUNKS"
    )?;
    for n in nodes {
        let mut state = state_name(n.state);
        if n.safe_to_remove {
            state.push_str(" (safe to remove)");
        }
        writeln!(
            out,
            "{:<20} {:<8} {:>10} {:>10} {:>10} {:>9}  {}",
            n.node_id,
            state,
            format_size(n.capacity_bytes),
            format_size(n.used_bytes),
            format_size(n.free_bytes),
            n.chunk_count,
            n.addr
        )?;
    }
    Ok(())
}

/// `dfsd status --json`.
fn status_json(s: &ClusterStatus) -> serde_json::Value {
    serde_json::json!({
        "nodes": {"alive": s.nodes_alive, "suspect": s.nodes_suspect, "dead": s.nodes_dead, "draining": s.nodes_draining},
        "capacity_bytes": s.capacity_bytes, "used_bytes": s.used_bytes, "free_bytes": s.free_bytes,
        "files": s.files, "directories": s.directories, "logical_bytes": s.logical_bytes, "chunks": s.chunks,
        "under_replicated": s.under_replicated, "unrecoverable": s.unrecoverable, "over_replicated": s.over_replicated,
        "repair": {"queue": s.repair_queue, "running": s.repairs_running, "done": s.repairs_done,
                   "bytes_done": s.repair_bytes_done, "rate_bytes_per_sec": s.repair_rate_bytes},
        "gc": {"backlog_chunks": s.gc_backlog_chunks, "backlog_bytes": s.gc_backlog_bytes, "freed_bytes": s.gc_freed_bytes},
        "scrub": {"checked": s.scrub_checked, "total": s.scrub_total, "errors": s.scrub_errors},
        "safe_mode": s.safe_mode,
    })
}

pub async fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = status_json(&s);
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    let health = if s.unrecoverable > 0 {
        "DATA MISSING"
    } else if s.under_replicated > 0 || s.nodes_dead > 0 || s.nodes_suspect > 0 {
        "degraded"
    } else {
        "healthy"
    };
    writeln!(
        out,
        "cluster:    {health}{}",
        if s.safe_mode {
            " (safe mode: waiting for datanode inventories)"
        } else {
            ""
        }
    )?;
    writeln!(
        out,
        "nodes:      {} alive, {} suspect, {} dead, {} draining",
        s.nodes_alive, s.nodes_suspect, s.nodes_dead, s.nodes_draining
    )?;
    writeln!(
        out,
        "capacity:   {} used of {} ({} free)",
        format_size(s.used_bytes),
        format_size(s.capacity_bytes),
        format_size(s.free_bytes)
    )?;
    writeln!(
        out,
        "namespace:  {} files, {} directories, {} stored in {} chunks",
        s.files,
        s.directories,
        format_size(s.logical_bytes),
        s.chunks
    )?;
    writeln!(
        out,
        "replicas:   {} under-replicated, {} unrecoverable, {} over-replicated chunks",
        s.under_replicated, s.unrecoverable, s.over_replicated
    )?;
    writeln!(
        out,
        "repair:     {} queued, {} running, {} done ({}), {}/s",
        s.repair_queue,
        s.repairs_running,
        s.repairs_done,
        format_size(s.repair_bytes_done),
        format_size(s.repair_rate_bytes)
    )?;
    writeln!(
        out,
        "gc:         {} chunks ({}) awaiting collection, {} freed",
        s.gc_backlog_chunks,
        format_size(s.gc_backlog_bytes),
        format_size(s.gc_freed_bytes)
    )?;
    writeln!(
        out,
        "scrub:      {}/{} chunks checked in current passes, {} errors found",
        s.scrub_checked, s.scrub_total, s.scrub_errors
    )?;
    Ok(())
}

pub async fn fsck(client: &Client, args: &FsckArgs) -> anyhow::Result<()> {
    let r = client
        .fsck(super::files::remote_path(&args.path)?, args.all)
        .await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let files: Vec<_> = r
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path.as_str(), "size": f.size, "chunks": f.chunks, "replication": f.replication,
                    "under_replicated": f.under_replicated, "missing": f.missing,
                    "damaged": f.damaged.iter().map(|c| serde_json::json!({
                        "chunk_id": c.chunk_id.to_hex(), "index": c.index, "live_replicas": c.live_replicas,
                        "target": c.target, "nodes": c.nodes})).collect::<Vec<_>>(),
                })
            })
            .collect();
        let v = serde_json::json!({
            "files_checked": r.files_checked, "chunks_checked": r.chunks_checked, "healthy_files": r.healthy_files,
            "under_replicated_chunks": r.under_replicated_chunks, "missing_chunks": r.missing_chunks,
            "truncated": r.truncated, "files": files,
        });
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for f in &r.files {
            let verdict = if f.missing > 0 {
                format!("MISSING {} chunk(s)", f.missing)
            } else if f.under_replicated > 0 {
                format!("{} chunk(s) under-replicated", f.under_replicated)
            } else {
                "ok".to_string()
            };
            writeln!(
                out,
                "{}: {} chunk(s), replication {}: {verdict}",
                f.path, f.chunks, f.replication
            )?;
            for c in &f.damaged {
                writeln!(
                    out,
                    "  chunk {} #{}: {}/{} live replicas {:?}",
                    c.chunk_id, c.index, c.live_replicas, c.target, c.nodes
                )?;
            }
        }
        writeln!(
            out,
            "{} files, {} chunks checked: {} healthy files, {} under-replicated chunks, {} missing chunks{}",
            r.files_checked,
            r.chunks_checked,
            r.healthy_files,
            r.under_replicated_chunks,
            r.missing_chunks,
            if r.truncated { " (file list truncated)" } else { "" }
        )?;
    }
    if r.missing_chunks > 0 {
        anyhow::bail!("{} chunk(s) have no live replica", r.missing_chunks);
    }
    Ok(())
}

pub async fn node(client: &Client, cmd: NodeCommand) -> anyhow::Result<()> {
    match cmd {
        NodeCommand::Drain { node, cancel, wait } => {
            let node = NodeId::parse(&node)?;
            let info = client.drain_node(&node, cancel).await?;
            if cancel {
                eprintln!("{node}: drain cancelled");
                return Ok(());
            }
            let mut info = info;
            if wait {
                while !info.as_ref().is_some_and(|n| n.safe_to_remove) {
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    info = client
                        .nodes()
                        .await?
                        .into_iter()
                        .find(|n| n.node_id == node);
                }
            }
            match info {
                Some(n) if n.safe_to_remove => eprintln!("{node}: drained, safe to remove"),
                Some(n) => eprintln!(
                    "{node}: draining, {} replica(s) still to move (see `dfsd nodes`)",
                    n.replicas
                ),
                None => eprintln!("{node}: draining"),
            }
        }
        NodeCommand::Remove { node } => {
            let node = NodeId::parse(&node)?;
            client.remove_node(&node).await?;
            eprintln!("{node}: removed");
        }
    }
    Ok(())
}
