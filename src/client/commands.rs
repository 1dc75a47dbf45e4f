//! The client commands of the CLI, on top of the SDK. Output goes to stdout; a one-line
//! summary of writes goes to stderr so `get -` and pipes stay clean.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{Client, PutOptions, ReadRange};
use crate::cli::{
    CertCommand, FsckArgs, GetArgs, KeyCommand, LsArgs, MkdirArgs, MvArgs, NodeCommand, PutArgs,
    RmArgs,
};
use crate::proto::pb;
use crate::units::{format_size, format_time, rfc3339_ms};

pub async fn put(client: &Client, args: &PutArgs) -> anyhow::Result<()> {
    let opts = PutOptions {
        replication: args.replication.unwrap_or(0),
        write_quorum: args.write_quorum.unwrap_or(0),
        no_clobber: args.no_clobber,
        expected_version: None,
        chunk_size: args.chunk_size,
        ..Default::default()
    };
    let report = if args.local == "-" {
        match super::progress::bar(None, args.quiet) {
            Some(pb) => {
                let input = pb.wrap_async_read(tokio::io::stdin());
                let r = client.put(input, &args.remote, &opts).await;
                pb.finish_and_clear();
                r?
            }
            None => client.put(tokio::io::stdin(), &args.remote, &opts).await?,
        }
    } else {
        let len = std::fs::metadata(&args.local).map(|m| m.len()).ok();
        match super::progress::bar(len, args.quiet) {
            Some(pb) => {
                let f = tokio::fs::File::open(&args.local)
                    .await
                    .with_context(|| format!("open {}", args.local))?;
                let r = client.put(pb.wrap_async_read(f), &args.remote, &opts).await;
                pb.finish_and_clear();
                r?
            }
            None => {
                client
                    .put_file(Path::new(&args.local), &args.remote, &opts)
                    .await?
            }
        }
    };
    if !args.quiet {
        eprintln!(
            "stored {} ({}, {} chunk(s), {} already stored, replication {}, version {})",
            report.entry.path,
            format_size(report.entry.size),
            report.chunks,
            report.deduplicated_chunks,
            report.entry.replication,
            report.entry.version
        );
    }
    Ok(())
}

pub async fn get(client: &Client, args: &GetArgs) -> anyhow::Result<()> {
    let range = ReadRange {
        offset: args.offset,
        length: args.length,
    };
    // The bar needs the size first: one stat, only when a bar is shown.
    let pb = match super::progress::bar(Some(0), args.quiet) {
        Some(pb) => {
            let size = client.stat(&args.remote).await?.size;
            let left = size.saturating_sub(args.offset);
            pb.set_length(args.length.map_or(left, |l| l.min(left)));
            Some(pb)
        }
        None => None,
    };
    let result = match args.local.as_deref() {
        None | Some("-") => {
            let mut out = tokio::io::stdout();
            match &pb {
                Some(pb) => {
                    let mut out = pb.wrap_async_write(&mut out);
                    client.get(&args.remote, &mut out, range).await
                }
                None => client.get(&args.remote, &mut out, range).await,
            }
            .map(|_| ())
        }
        Some(local) => client
            .get_to_file_progress(&args.remote, Path::new(local), range, pb.clone())
            .await
            .map(|_| ()),
    };
    if let Some(pb) = pb {
        pb.finish_and_clear();
    }
    result?;
    Ok(())
}

fn long_line(e: &pb::Entry) -> String {
    let kind = if e.is_dir() { 'd' } else { '-' };
    let name = if e.is_dir() {
        format!("{}/", e.name)
    } else {
        e.name.clone()
    };
    format!(
        "{kind} {:>10} {:>4} {} {name}",
        format_size(e.size),
        e.version,
        format_time(e.mtime_ms)
    )
}

/// An entry as JSON (`ls --json`, `stat --json`).
pub fn entry_json(e: &pb::Entry) -> serde_json::Value {
    serde_json::json!({
        "path": e.path,
        "name": e.name,
        "kind": if e.is_dir() { "directory" } else { "file" },
        "size": e.size,
        "version": e.version,
        "replication": e.replication,
        "chunks": e.chunk_count,
        "mtime_ms": e.mtime_ms,
        "mtime": rfc3339_ms(e.mtime_ms),
    })
}

pub async fn ls(client: &Client, args: &LsArgs) -> anyhow::Result<()> {
    let entries = client.list(&args.path).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let v: Vec<_> = entries.iter().map(entry_json).collect();
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
        return Ok(());
    }
    for e in &entries {
        if args.long {
            writeln!(out, "{}", long_line(e))?;
        } else if e.is_dir() {
            writeln!(out, "{}/", e.name)?;
        } else {
            writeln!(out, "{}", e.name)?;
        }
    }
    Ok(())
}

pub async fn stat(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let e = client.stat(path).await?;
    let mut out = std::io::stdout().lock();
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(&entry_json(&e))?)?;
        return Ok(());
    }
    writeln!(out, "path:        {}", e.path)?;
    writeln!(
        out,
        "kind:        {}",
        if e.is_dir() { "directory" } else { "file" }
    )?;
    if !e.is_dir() {
        writeln!(out, "size:        {} ({})", e.size, format_size(e.size))?;
        writeln!(out, "chunks:      {}", e.chunk_count)?;
        writeln!(out, "replication: {}", e.replication)?;
        writeln!(out, "version:     {}", e.version)?;
    }
    writeln!(out, "modified:    {}", format_time(e.mtime_ms))?;
    Ok(())
}

pub async fn rm(client: &Client, args: &RmArgs) -> anyhow::Result<()> {
    client.delete(&args.path, args.recursive).await?;
    Ok(())
}

pub async fn mv(client: &Client, args: &MvArgs) -> anyhow::Result<()> {
    client.rename(&args.src, &args.dst).await?;
    Ok(())
}

pub async fn mkdir(client: &Client, args: &MkdirArgs) -> anyhow::Result<()> {
    client.mkdir(&args.path, args.parents).await?;
    Ok(())
}

fn state_name(state: i32) -> String {
    let s = pb::NodeState::try_from(state)
        .map(|s| s.as_str_name())
        .unwrap_or("UNKNOWN");
    s.trim_start_matches("NODE_STATE_").to_lowercase()
}

fn node_json(n: &pb::NodeInfo) -> serde_json::Value {
    let scrub = n.scrub.unwrap_or_default();
    serde_json::json!({
        "node_id": n.node_id,
        "addr": n.addr,
        "state": state_name(n.state),
        "capacity_bytes": n.capacity_bytes,
        "used_bytes": n.used_bytes,
        "free_bytes": n.free_bytes,
        "chunk_count": n.chunk_count,
        "replicas": n.replicas,
        "last_seen_ms": n.last_seen_ms,
        "safe_to_remove": n.safe_to_remove,
        "scrub": {"checked": scrub.checked, "total": scrub.total, "last_pass_ms": scrub.last_pass_ms, "errors": scrub.errors},
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

pub async fn status(client: &Client, json: bool) -> anyhow::Result<()> {
    let s = client.status().await?;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "nodes": {"alive": s.nodes_alive, "suspect": s.nodes_suspect, "dead": s.nodes_dead, "draining": s.nodes_draining},
            "capacity_bytes": s.capacity_bytes, "used_bytes": s.used_bytes, "free_bytes": s.free_bytes,
            "files": s.files, "directories": s.directories, "logical_bytes": s.logical_bytes, "chunks": s.chunks,
            "under_replicated": s.under_replicated, "unrecoverable": s.unrecoverable, "over_replicated": s.over_replicated,
            "repair": {"queue": s.repair_queue, "running": s.repairs_running, "done": s.repairs_done,
                       "bytes_done": s.repair_bytes_done, "rate_bytes_per_sec": s.repair_rate_bytes},
            "gc": {"backlog_chunks": s.gc_backlog_chunks, "backlog_bytes": s.gc_backlog_bytes, "freed_bytes": s.gc_freed_bytes},
            "scrub": {"checked": s.scrub_checked, "total": s.scrub_total, "errors": s.scrub_errors},
            "safe_mode": s.safe_mode,
        });
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
    let r = client.fsck(&args.path, args.all).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        let files: Vec<_> = r
            .files
            .iter()
            .map(|f| {
                serde_json::json!({
                    "path": f.path, "size": f.size, "chunks": f.chunks, "replication": f.replication,
                    "under_replicated": f.under_replicated, "missing": f.missing,
                    "damaged": f.damaged.iter().map(|c| serde_json::json!({
                        "chunk_id": c.chunk_id, "index": c.index, "live_replicas": c.live_replicas,
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
            client.remove_node(&node).await?;
            eprintln!("{node}: removed");
        }
    }
    Ok(())
}

fn key_json(k: &pb::AccessKeyInfo) -> serde_json::Value {
    serde_json::json!({
        "key_id": k.key_id,
        "name": k.name,
        "role": k.role,
        "prefix": k.prefix,
        "created_ms": k.created_ms,
        "revoked_ms": if k.revoked_ms == 0 { None } else { Some(k.revoked_ms) },
    })
}

/// `dfsd key create|ls|revoke`.
pub async fn key(client: &Client, cmd: KeyCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        KeyCommand::Create {
            name,
            role,
            prefix,
            json,
        } => {
            let (k, secret) = client.create_key(&name, &role, &prefix).await?;
            if json {
                let mut v = key_json(&k);
                v["secret"] = secret.into();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                writeln!(out, "DFSD_ACCESS_KEY={}", k.key_id)?;
                writeln!(out, "DFSD_SECRET_KEY={secret}")?;
                eprintln!(
                    "created {} key {:?} for {}; the secret is shown only now",
                    k.role, k.name, k.prefix
                );
            }
        }
        KeyCommand::Ls { json } => {
            let keys = client.list_keys().await?;
            if json {
                let v: Vec<_> = keys.iter().map(key_json).collect();
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                return Ok(());
            }
            writeln!(
                out,
                "{:<20} {:<10} {:<9} {:<22} {:<30} NAME",
                "KEY", "ROLE", "STATE", "CREATED", "PREFIX"
            )?;
            for k in keys {
                writeln!(
                    out,
                    "{:<20} {:<10} {:<9} {:<22} {:<30} {}",
                    k.key_id,
                    k.role,
                    if k.revoked_ms == 0 {
                        "valid"
                    } else {
                        "revoked"
                    },
                    format_time(k.created_ms),
                    k.prefix,
                    k.name
                )?;
            }
        }
        KeyCommand::Revoke { key_id } => {
            let k = client.revoke_key(&key_id).await?;
            eprintln!("{}: revoked", k.key_id);
        }
    }
    Ok(())
}

/// `dfsd cert init|issue`: local files only, no cluster needed.
pub fn cert(cmd: CertCommand) -> anyhow::Result<()> {
    use crate::security::{certs, Role};
    match cmd {
        CertCommand::Init { dir, years } => {
            let w = certs::init_ca(&dir, years)?;
            println!("CA certificate: {}", w.cert.display());
            println!(
                "CA key:         {} (keep it offline; it signs every certificate)",
                w.key.display()
            );
            println!("valid until:    {}", w.not_after);
        }
        CertCommand::Issue {
            dir,
            node,
            coord,
            client,
            gateway,
            san,
            years,
            days,
        } => {
            let (role, name) = match (node, coord, client, gateway) {
                (Some(n), None, None, None) => (Role::Node, n),
                (None, Some(n), None, None) => (Role::Coordinator, n),
                (None, None, Some(n), None) => (Role::Client, n),
                (None, None, None, Some(n)) => (Role::Gateway, n),
                _ => anyhow::bail!(
                    "cert issue: give exactly one of --node, --coord, --client or --gateway NAME"
                ),
            };
            let w = match (years, days) {
                (Some(y), _) => certs::issue(&dir, role, &name, &san, y)?,
                (None, Some(d)) => certs::issue_for(
                    &dir,
                    role,
                    &name,
                    &san,
                    std::time::Duration::from_secs(u64::from(d) * 86_400),
                )?,
                (None, None) => {
                    certs::issue_for(&dir, role, &name, &san, certs::default_validity(role))?
                }
            };
            println!("{} certificate: {}", role.as_str(), w.cert.display());
            println!("{} key:         {}", role.as_str(), w.key.display());
            println!("valid until:    {}", w.not_after);
            println!("fingerprint:    {}", w.fingerprint);
        }
        CertCommand::Revoke { .. } | CertCommand::Revoked { .. } => {
            anyhow::bail!("cert revoke and cert revoked need the coordinator")
        }
    }
    Ok(())
}
