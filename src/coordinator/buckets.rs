//! Bucket settings (issue 13): GetBucket / SetBucket, and the set of public-read buckets
//! that anonymous S3 callers may read.
//!
//! A gateway serves an anonymous request for a public-read bucket by acting for
//! `anonymous:BUCKET` ([`ANONYMOUS_PREFIX`] in `x-dfsd-on-behalf-of`, honoured only from a
//! gateway as any delegation is). The coordinator answers with a read-only principal
//! confined to `/BUCKET`, and only while that bucket is public: so an anonymous caller can
//! never write, nor read outside that bucket, nor keep reading once it turns private,
//! whatever the gateway does. The set of public buckets lives in memory (the
//! authentication check is synchronous), reloaded from SQLite after every change that can
//! alter it: SetBucket, and a delete or rename of a top-level directory.

use crate::sync::ReadWriteLocked;
use std::collections::HashSet;
use std::sync::RwLock;

use super::events::{event, EventKind};
use super::State;
use crate::meta::MetaError;
use crate::model::EventRecord;
use crate::path::{DfsPath, PathError};
use crate::proto::pb;
use crate::security::keys::{KeyRole, Principal};
use crate::security::Denied;

/// `x-dfsd-on-behalf-of: anonymous:BUCKET`: an anonymous S3 caller reading a public
/// bucket.
pub const ANONYMOUS_PREFIX: &str = "anonymous:";
/// Largest CORS configuration kept (S3 allows 100 rules; this is ample for them).
const MAX_CORS_BYTES: usize = 64 * 1024;

/// Why a bucket call was refused.
#[derive(Debug, thiserror::Error)]
pub enum BucketError {
    #[error(transparent)]
    BadPath(#[from] PathError),
    #[error("{0}: a bucket is a top-level directory")]
    NotABucket(DfsPath),
    #[error("CORS rules: at most {MAX_CORS_BYTES} bytes")]
    CorsTooLarge,
    #[error(transparent)]
    Denied(#[from] Denied),
    #[error(transparent)]
    Meta(#[from] MetaError),
}

/// Names of the public-read buckets.
#[derive(Default)]
pub struct PublicBuckets(RwLock<HashSet<String>>);

impl PublicBuckets {
    fn contains(&self, name: &str) -> bool {
        self.0.read_locked().contains(name)
    }

    pub(super) fn replace(&self, names: HashSet<String>) {
        *self.0.write_locked() = names;
    }
}

fn bucket_path(path: &str) -> Result<DfsPath, BucketError> {
    let p = DfsPath::parse(path)?;
    if p.segments().count() != 1 {
        return Err(BucketError::NotABucket(p));
    }
    Ok(p)
}

impl State {
    /// Reloads the public-read set from the store (after a change that may alter it).
    pub async fn reload_public_buckets(&self) -> Result<(), MetaError> {
        let names = self.store.public_buckets().await?;
        self.public.replace(names);
        Ok(())
    }

    /// Whether a delete or rename of `path` may have changed the public-read set.
    pub async fn after_namespace_change(&self, path: &DfsPath) {
        if path.segments().count() == 1 {
            if let Err(e) = self.reload_public_buckets().await {
                tracing::warn!(error = %e, "reload public buckets");
            }
        }
    }

    /// The principal of an anonymous S3 caller of `bucket` (see the module docs).
    pub(super) fn anonymous(&self, bucket: &str) -> Result<Principal, Denied> {
        let path = bucket_path(&format!("/{bucket}"))
            .map_err(|_| Denied::Unauthenticated(format!("anonymous: bad bucket {bucket:?}")))?;
        if !self.public.contains(bucket) {
            return Err(Denied::Forbidden(format!(
                "anonymous access to {path}: the bucket is not public"
            )));
        }
        Ok(Principal {
            key_id: "anonymous".into(),
            role: KeyRole::ReadOnly,
            prefix: path,
        })
    }

    /// GetBucket: callers who may read the directory, or a gateway certificate alone (a
    /// gateway must learn whether a bucket is public before anyone signed anything).
    pub async fn get_bucket(
        &self,
        who: Option<&Principal>,
        req: pb::GetBucketRequest,
    ) -> Result<pb::GetBucketResponse, BucketError> {
        let path = bucket_path(&req.path)?;
        if let Some(w) = who {
            w.require_read(&path)?;
        }
        let b = self.store.bucket(&path).await?;
        Ok(pb::GetBucketResponse {
            bucket: Some(b.into()),
        })
    }

    /// SetBucket: callers who may write the directory. A change of public access is a
    /// `bucket_acl` event.
    pub async fn set_bucket(
        &self,
        who: &Principal,
        req: pb::SetBucketRequest,
    ) -> Result<pb::SetBucketResponse, BucketError> {
        let path = bucket_path(&req.path)?;
        who.require_write(&path)?;
        if req.cors.as_ref().is_some_and(|c| c.len() > MAX_CORS_BYTES) {
            return Err(BucketError::CorsTooLarge);
        }
        let cors = req.cors.map(|c| (!c.is_empty()).then_some(c));
        let public = req.public_read;
        let b = self.store.set_bucket(&path, public, cors).await?;
        self.reload_public_buckets().await?;
        if let Some(public) = public {
            let acl = if public { "public-read" } else { "private" };
            tracing::info!(bucket = %path, acl, by = %who.key_id, "bucket access changed");
            self.events.emit(EventRecord {
                path: path.to_string(),
                detail: format!("{acl} (by {})", display_key(&who.key_id)),
                ..event(EventKind::BucketAcl)
            });
        }
        Ok(pb::SetBucketResponse {
            bucket: Some(b.into()),
        })
    }
}

fn display_key(id: &str) -> &str {
    if id.is_empty() {
        "auth off"
    } else {
        id
    }
}
