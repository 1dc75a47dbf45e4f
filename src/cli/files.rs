//! File commands: `dfsd put`, `get`, `ls`, `stat`, `rm`, `mv`, `mkdir`. Output goes to
//! stdout; a one-line summary of writes goes to stderr so `get -` and pipes stay clean.

use std::io::Write;
use std::path::Path;

use super::args::{GetArgs, LsArgs, MkdirArgs, MvArgs, PutArgs, RmArgs};
use super::progress::{reporter, Bar};
use crate::client::{Client, PutOptions, ReadRange};
use crate::model::Entry;
use crate::path::DfsPath;
use crate::units::{format_size, format_time, rfc3339_ms};

/// A path as people type it: the leading '/' may be missing, a trailing '/' is dropped
/// (the SDK itself takes paths strictly).
pub fn remote_path(s: &str) -> anyhow::Result<DfsPath> {
    Ok(DfsPath::parse_lenient(s)?)
}

pub async fn put(client: &Client, args: &PutArgs) -> anyhow::Result<()> {
    let opts = PutOptions {
        replication: args.replication.unwrap_or(0),
        write_quorum: args.write_quorum.unwrap_or(0),
        no_clobber: args.no_clobber,
        expected_version: None,
        chunk_size: args.chunk_size,
        ..Default::default()
    };
    let remote = remote_path(&args.remote)?;
    let bar = Bar::new(args.quiet);
    let on_progress = reporter(&bar);
    let result = if args.local == "-" {
        let stdin = tokio::io::stdin();
        client
            .put_with_progress(stdin, &remote, &opts, &on_progress)
            .await
    } else {
        let local = Path::new(&args.local);
        client
            .put_file_with_progress(local, &remote, &opts, &on_progress)
            .await
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    let report = result?;
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
    let remote = remote_path(&args.remote)?;
    let bar = Bar::new(args.quiet);
    let on_progress = reporter(&bar);
    let result = match args.local.as_deref() {
        None | Some("-") => {
            let mut out = tokio::io::stdout();
            client
                .get_with_progress(&remote, &mut out, range, &on_progress)
                .await
                .map(|_| ())
        }
        Some(local) => client
            .get_to_file_with_progress(&remote, Path::new(local), range, &on_progress)
            .await
            .map(|_| ()),
    };
    if let Some(bar) = &bar {
        bar.finish();
    }
    result?;
    Ok(())
}

fn long_line(e: &Entry) -> String {
    let kind = if e.is_dir() { 'd' } else { '-' };
    let name = if e.is_dir() {
        format!("{}/", e.name())
    } else {
        e.name().to_string()
    };
    format!(
        "{kind} {:>10} {:>4} {} {name}",
        format_size(e.size),
        e.version,
        format_time(e.mtime.as_ms())
    )
}

/// An entry as JSON (`ls --json`, `stat --json`).
pub fn entry_json(e: &Entry) -> serde_json::Value {
    serde_json::json!({
        "path": e.path.as_str(),
        "name": e.name(),
        "kind": if e.is_dir() { "directory" } else { "file" },
        "size": e.size,
        "version": e.version,
        "replication": e.replication,
        "chunks": e.chunk_count,
        "mtime_ms": e.mtime.as_ms(),
        "mtime": rfc3339_ms(e.mtime.as_ms()),
    })
}

pub async fn ls(client: &Client, args: &LsArgs) -> anyhow::Result<()> {
    let entries = client.list(remote_path(&args.path)?).await?;
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
            writeln!(out, "{}/", e.name())?;
        } else {
            writeln!(out, "{}", e.name())?;
        }
    }
    Ok(())
}

pub async fn stat(client: &Client, path: &str, json: bool) -> anyhow::Result<()> {
    let e = client.stat(remote_path(path)?).await?;
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
    writeln!(out, "modified:    {}", format_time(e.mtime.as_ms()))?;
    Ok(())
}

pub async fn rm(client: &Client, args: &RmArgs) -> anyhow::Result<()> {
    client
        .delete(remote_path(&args.path)?, args.recursive)
        .await?;
    Ok(())
}

pub async fn mv(client: &Client, args: &MvArgs) -> anyhow::Result<()> {
    client
        .rename(remote_path(&args.src)?, remote_path(&args.dst)?)
        .await?;
    Ok(())
}

pub async fn mkdir(client: &Client, args: &MkdirArgs) -> anyhow::Result<()> {
    client.mkdir(remote_path(&args.path)?, args.parents).await?;
    Ok(())
}
