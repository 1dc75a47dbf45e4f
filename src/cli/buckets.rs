//! `dfsd bucket public PATH on|off` and `dfsd bucket show PATH`: the bucket settings the
//! S3 gateway applies (public reads), kept by the coordinator with the directory.

use std::io::Write;

use super::args::BucketCommand;
use crate::client::Client;
use crate::model::BucketUpdate;
use crate::path::DfsPath;

fn bucket(path: &str) -> anyhow::Result<DfsPath> {
    let p = DfsPath::parse_lenient(path)?;
    if p.segments().count() != 1 {
        anyhow::bail!("{p}: a bucket is a top-level directory, e.g. /photos");
    }
    Ok(p)
}

pub async fn command(client: &Client, cmd: BucketCommand) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    match cmd {
        BucketCommand::Public { path, state } => {
            let public = state == "on";
            let b = client
                .set_bucket(
                    &bucket(&path)?,
                    &BucketUpdate {
                        public_read: Some(public),
                        cors: None,
                    },
                )
                .await?;
            let what = if b.public_read {
                "public-read: anonymous S3 callers may list it and read its objects"
            } else {
                "private"
            };
            writeln!(out, "{}: {what}", b.path)?;
        }
        BucketCommand::Show { path, json } => {
            let b = client.get_bucket(&bucket(&path)?).await?;
            if json {
                let v = serde_json::json!({
                    "path": b.path.as_str(),
                    "owner": b.owner,
                    "public_read": b.public_read,
                    "cors": b.cors.is_some(),
                });
                writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
            } else {
                let owner = if b.owner.is_empty() {
                    "(unknown)"
                } else {
                    &b.owner
                };
                writeln!(out, "path:        {}", b.path)?;
                writeln!(out, "owner:       {owner}")?;
                writeln!(
                    out,
                    "public read: {}",
                    if b.public_read { "on" } else { "off" }
                )?;
                writeln!(
                    out,
                    "CORS rules:  {}",
                    if b.cors.is_some() { "set" } else { "none" }
                )?;
            }
        }
    }
    Ok(())
}
