//! The S3 service's state ([`DfsS3`]) and what every operation starts from: the SDK
//! client acting for the caller, the caller's role, and the bucket and object lookups.
//! Every operation module builds on this one; it builds on none of them.

use s3s::{s3_error, S3Request, S3Result};

use super::auth::{S3Keys, S3Role};
use super::mapping::{bucket_path, object_path, s3_err, Subject};
use super::markers;
use crate::client::{Client, ClientError};
use crate::model::Entry;
use crate::path::DfsPath;

/// The S3 service: the SDK client (with the gateway's own dfsd key) and the S3 keys.
pub struct DfsS3 {
    pub client: Client,
    pub keys: S3Keys,
    /// What GetBucketLocation answers (`gateway.region`).
    pub region: String,
}

/// Marks an unsigned request that `acl::AnonymousAccess` let through, with its bucket.
#[derive(Debug, Clone)]
pub struct AnonymousBucket(pub String);

/// The anonymous bucket of a request s3s let through unsigned, if it is one.
pub fn anonymous_bucket<T>(req: &S3Request<T>) -> Option<&str> {
    if req.credentials.is_some() {
        return None;
    }
    req.extensions
        .get::<AnonymousBucket>()
        .map(|b| b.0.as_str())
}

/// The SDK client that acts for the caller of `req`: the coordinator applies the caller's
/// own key (role and prefix) to every call, not the gateway's.
pub(super) fn client_for<T>(s3: &DfsS3, req: &S3Request<T>) -> Client {
    match (&req.credentials, anonymous_bucket(req)) {
        (Some(c), _) => s3.client.on_behalf_of(&c.access_key),
        // An anonymous read s3s let through (`acl::AnonymousAccess`): the coordinator
        // allows it only while the bucket is public, read-only, within that bucket.
        (None, Some(bucket)) => s3.client.on_behalf_of(&format!("anonymous:{bucket}")),
        // Anything else unsigned acts for a key nobody has, never with the gateway's
        // permissions.
        (None, None) => s3.client.on_behalf_of("-"),
    }
}

fn role<T>(keys: &S3Keys, req: &S3Request<T>) -> Option<S3Role> {
    req.credentials
        .as_ref()
        .and_then(|c| keys.role(&c.access_key))
}

pub(super) fn require_write<T>(keys: &S3Keys, req: &S3Request<T>) -> S3Result<()> {
    match role(keys, req) {
        Some(S3Role::ReadWrite) => Ok(()),
        _ => Err(s3_error!(AccessDenied, "this access key may not write")),
    }
}

pub(super) fn require_read<T>(keys: &S3Keys, req: &S3Request<T>) -> S3Result<()> {
    match (role(keys, req), anonymous_bucket(req)) {
        (Some(_), _) | (None, Some(_)) => Ok(()),
        (None, None) => Err(s3_error!(AccessDenied, "Access Denied")),
    }
}

/// The access key that signed `req` ("" for an anonymous request).
pub(super) fn caller<T>(req: &S3Request<T>) -> String {
    req.credentials
        .as_ref()
        .map(|c| c.access_key.clone())
        .unwrap_or_default()
}

/// An object as a read sees it: a file, or a marked directory (an empty object).
pub(super) struct Found {
    /// `None` for a directory marker (nothing to download).
    pub path: Option<DfsPath>,
    pub entry: Entry,
}

impl DfsS3 {
    /// The bucket's directory entry, or NoSuchBucket.
    pub(super) async fn bucket(&self, c: &Client, bucket: &str) -> S3Result<DfsPath> {
        let path = bucket_path(bucket)?;
        let e = c
            .stat(&path)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        if !e.is_dir() {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(path)
    }

    /// The object's file entry, or NoSuchKey (a directory is not an object).
    pub(super) async fn object(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
    ) -> S3Result<(DfsPath, Entry)> {
        let path = object_path(bucket, key)?;
        match c.stat(&path).await {
            Ok(e) if !e.is_dir() => Ok((path, e)),
            Ok(_) => Err(s3_error!(NoSuchKey)),
            Err(ClientError::NotFound(_)) => {
                // Say NoSuchBucket when it is the bucket that is missing.
                self.bucket(c, bucket).await?;
                Err(s3_error!(NoSuchKey))
            }
            Err(e) => Err(s3_err(e, Subject::Object)),
        }
    }

    /// The object a read names: a file, or the directory marker of a key ending in '/'.
    pub(super) async fn find(&self, c: &Client, bucket: &str, key: &str) -> S3Result<Found> {
        if markers::is_marker_key(key) {
            self.bucket(c, bucket).await?;
            let entry = markers::get(c, bucket, key).await?;
            return Ok(Found { path: None, entry });
        }
        let (path, entry) = self.object(c, bucket, key).await?;
        Ok(Found {
            path: Some(path),
            entry,
        })
    }
}
