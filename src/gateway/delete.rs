//! DeleteObject and DeleteObjects: conditions checked as a compare-and-swap by the
//! coordinator ([`conditions::DeleteConditions`]), directory markers, and the pruning of
//! directories a delete leaves empty.

use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::conditions::DeleteConditions;
use super::mapping::{object_path, s3_err, version_moved, Subject};
use super::markers;
use super::state::DfsS3;
use crate::client::{Client, ClientError};
use crate::path::DfsPath;

/// Most keys one DeleteObjects request may name, as in S3.
const MAX_KEYS: usize = 1000;

/// Removes the directories a deleted object leaves empty, up to (not including) the
/// bucket, so listings show no empty prefixes. A directory that is not empty, was
/// refilled meanwhile, or is a marker (an object of its own) stops the climb: the
/// coordinator refuses a non-recursive delete of a non-empty directory atomically.
async fn prune_empty_parents(c: &Client, path: &DfsPath, bucket: &DfsPath) {
    let mut dir = path.parent();
    while let Some(d) = dir {
        if d == *bucket || d == DfsPath::root() {
            break;
        }
        match c.stat(&d).await {
            Ok(e) if !markers::is_marked(&e) => {}
            _ => break,
        }
        if c.delete(&d, false).await.is_err() {
            break;
        }
        dir = d.parent();
    }
}

impl DfsS3 {
    /// Deletes one object if `cond` holds. S3 answers success whether or not the key
    /// existed, unless a condition was given (then a missing key is PreconditionFailed);
    /// a directory is not an object and is left alone.
    pub(super) async fn delete_key(
        &self,
        c: &Client,
        bucket: &DfsPath,
        name: &str,
        key: &str,
        cond: &DeleteConditions,
    ) -> S3Result<()> {
        if markers::is_marker_key(key) {
            if let Some(gone) = markers::delete(c, name, key).await? {
                prune_empty_parents(c, &gone, bucket).await;
            }
            return Ok(());
        }
        let path = object_path(name, key)?;
        // With a condition, a missing key fails it (RFC 9110: If-Match is false without
        // a current representation); without one, deleting nothing is success.
        let missing = || match cond.any() {
            true => Err(s3_error!(PreconditionFailed, "the key does not exist")),
            false => Ok(()),
        };
        let entry = match c.stat(&path).await {
            Ok(e) if !e.is_dir() => e,
            Ok(_) => return missing(),
            Err(ClientError::NotFound(_)) => return missing(),
            Err(e) => return Err(s3_err(e, Subject::Object)),
        };
        let expected = cond.check(&entry)?;
        match c.delete_if(&path, false, expected).await {
            Ok(_) => tracing::info!(path = %path, "object deleted"),
            Err(ClientError::NotFound(_)) => return missing(),
            Err(e) if version_moved(&e) => {
                return Err(s3_error!(
                    PreconditionFailed,
                    "the object changed before the delete: {e}"
                ))
            }
            Err(e) => return Err(s3_err(e, Subject::Object)),
        }
        prune_empty_parents(c, &path, bucket).await;
        Ok(())
    }

    pub(super) async fn delete_one(&self, c: &Client, input: DeleteObjectInput) -> S3Result<()> {
        let bucket = self.bucket(c, &input.bucket).await?;
        let cond = DeleteConditions {
            if_match: input.if_match,
            last_modified: input.if_match_last_modified_time,
            size: input.if_match_size,
        };
        self.delete_key(c, &bucket, &input.bucket, &input.key, &cond)
            .await
    }

    pub(super) async fn delete_many(
        &self,
        c: &Client,
        input: DeleteObjectsInput,
    ) -> S3Result<DeleteObjectsOutput> {
        if input.delete.objects.len() > MAX_KEYS {
            return Err(s3_error!(
                MalformedXML,
                "at most {MAX_KEYS} keys per request"
            ));
        }
        let bucket = self.bucket(c, &input.bucket).await?;
        let quiet = input.delete.quiet.unwrap_or(false);
        let (mut deleted, mut errors) = (Vec::new(), Vec::new());
        for o in input.delete.objects {
            let cond = DeleteConditions::of_entry(o.e_tag, o.last_modified_time, o.size);
            match self
                .delete_key(c, &bucket, &input.bucket, &o.key, &cond)
                .await
            {
                Ok(()) if quiet => {}
                Ok(()) => deleted.push(DeletedObject {
                    key: Some(o.key),
                    ..Default::default()
                }),
                Err(e) => errors.push(Error {
                    code: Some(e.code().as_str().to_string()),
                    key: Some(o.key),
                    message: e.message().map(str::to_string),
                    ..Default::default()
                }),
            }
        }
        Ok(DeleteObjectsOutput {
            deleted: Some(deleted),
            errors: Some(errors),
            ..Default::default()
        })
    }
}
