//! The client commands of the CLI, on top of the SDK. Output goes to stdout; a one-line
//! summary of writes goes to stderr so `get -` and pipes stay clean.

use std::io::Write;
use std::path::Path;

use anyhow::Context;

use super::{Client, PutOptions, ReadRange};
use crate::cli::{GetArgs, LsArgs, MkdirArgs, MvArgs, PutArgs, RmArgs};
use crate::proto::pb;
use crate::units::format_size;

fn format_time(ms: i64) -> String {
    // UTC, second precision, without pulling in a date crate.
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), after Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub async fn put(client: &Client, args: &PutArgs) -> anyhow::Result<()> {
    let opts = PutOptions {
        replication: args.replication.unwrap_or(0),
        write_quorum: args.write_quorum.unwrap_or(0),
        no_clobber: args.no_clobber,
        expected_version: None,
        chunk_size: args.chunk_size,
    };
    let report = if args.local == "-" {
        client.put(tokio::io::stdin(), &args.remote, &opts).await?
    } else {
        client
            .put_file(Path::new(&args.local), &args.remote, &opts)
            .await?
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
    match args.local.as_deref() {
        None | Some("-") => {
            let mut out = tokio::io::stdout();
            client.get(&args.remote, &mut out, range).await?;
        }
        Some(local) => {
            client
                .get_to_file(&args.remote, Path::new(local), range)
                .await?;
        }
    }
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
        "{kind} {:>12} {:>4} {} {name}",
        e.size,
        e.version,
        format_time(e.mtime_ms)
    )
}

pub async fn ls(client: &Client, args: &LsArgs) -> anyhow::Result<()> {
    let entries = client.list(&args.path).await?;
    let mut out = std::io::stdout().lock();
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

pub async fn stat(client: &Client, path: &str) -> anyhow::Result<()> {
    let e = client.stat(path).await?;
    let mut out = std::io::stdout().lock();
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

pub async fn nodes(client: &Client) -> anyhow::Result<()> {
    let nodes = client.nodes().await.context("list nodes")?;
    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "{:<20} {:<8} {:>10} {:>10} {:>10} {:>9}  ADDRESS",
        "NODE", "STATE", "CAPACITY", "USED", "FREE", "CHUNKS"
    )?;
    for n in nodes {
        let state = pb::NodeState::try_from(n.state)
            .map(|s| s.as_str_name())
            .unwrap_or("UNKNOWN");
        let state = state.trim_start_matches("NODE_STATE_").to_lowercase();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_utc_times() {
        assert_eq!(format_time(0), "1970-01-01 00:00:00Z");
        assert_eq!(format_time(1_700_000_000_000), "2023-11-14 22:13:20Z");
        assert_eq!(format_time(951_782_400_000), "2000-02-29 00:00:00Z");
    }
}
