//! Ownership and ACLs, minimal and honest: a bucket records the key that created it
//! (its owner, with FULL_CONTROL) and whether it is public-read. The canned ACLs
//! `private` and `public-read` (as `x-amz-acl`, or as the equivalent AccessControlPolicy
//! body) are the only ones accepted; any other is NotImplemented. ACLs are per bucket:
//! an object's ACL is its bucket's, so PutObjectAcl (and `x-amz-acl` on a write) accepts
//! `private` and, on a public bucket, `public-read`, and refuses to make one object of a
//! private bucket public.
//!
//! A public-read bucket serves anonymous GetObject, HeadObject and ListObjects (v1 and
//! v2), and nothing else: [`AnonymousAccess`] lets only those through s3s unsigned, marked
//! with the bucket they name, and the gateway makes their calls as `anonymous:BUCKET`,
//! which the coordinator turns into a read-only principal confined to that bucket while
//! it is public (see `coordinator/buckets.rs`).

use s3s::access::{S3Access, S3AccessContext};
use s3s::dto::*;
use s3s::path::S3Path;
use s3s::{s3_error, S3Result};

use super::mapping::{bucket_path, s3_err, Subject};
use super::state::{AnonymousBucket, DfsS3};
use crate::client::Client;
use crate::model::{BucketRecord, BucketUpdate};

/// The URI of S3's "everyone" group.
const ALL_USERS: &str = "http://acs.amazonaws.com/groups/global/AllUsers";

/// Lets anonymous requests through s3s only for reads of a bucket (whether the bucket is
/// public is the coordinator's decision, on every call).
pub struct AnonymousAccess;

#[async_trait::async_trait]
impl S3Access for AnonymousAccess {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        if cx.credentials().is_some() {
            return Ok(());
        }
        let read = matches!(
            cx.s3_op().name(),
            "GetObject" | "HeadObject" | "ListObjects" | "ListObjectsV2"
        );
        let bucket = match cx.s3_path() {
            S3Path::Bucket { bucket } | S3Path::Object { bucket, .. } => bucket.to_string(),
            S3Path::Root => String::new(),
        };
        if !read || bucket.is_empty() {
            return Err(s3_error!(AccessDenied, "Access Denied"));
        }
        cx.extensions_mut().insert(AnonymousBucket(bucket));
        Ok(())
    }
}

/// Public or not, from a canned ACL: `Some(false)` private, `Some(true)` public-read.
fn canned(acl: &str) -> S3Result<bool> {
    match acl {
        BucketCannedACL::PRIVATE => Ok(false),
        BucketCannedACL::PUBLIC_READ => Ok(true),
        other => Err(s3_error!(
            NotImplemented,
            "canned ACL {other:?}: dfsd supports only private and public-read"
        )),
    }
}

/// Public or not, from an AccessControlPolicy body: the owner's FULL_CONTROL, plus READ
/// for AllUsers when public. Anything else is NotImplemented.
fn from_policy(p: &AccessControlPolicy) -> S3Result<bool> {
    let mut public = false;
    for g in p.grants.iter().flatten() {
        let perm = g.permission.as_ref().map(|p| p.as_str());
        let uri = g.grantee.as_ref().and_then(|g| g.uri.as_deref());
        match (perm, uri) {
            (Some(Permission::FULL_CONTROL), None) => {}
            (Some(Permission::READ), Some(ALL_USERS)) => public = true,
            _ => {
                return Err(s3_error!(
                    NotImplemented,
                    "dfsd supports only the grants of the canned ACLs private and public-read"
                ))
            }
        }
    }
    Ok(public)
}

/// The public flag an ACL request asks for: the header, else the body.
fn wanted(acl: Option<&str>, policy: Option<&AccessControlPolicy>) -> S3Result<bool> {
    match (acl, policy) {
        (Some(a), _) => canned(a),
        (None, Some(p)) => from_policy(p),
        (None, None) => Err(s3_error!(
            MissingSecurityHeader,
            "give x-amz-acl or an AccessControlPolicy body"
        )),
    }
}

/// The owner and grants S3 shows for a bucket (and its objects).
fn policy_of(b: &BucketRecord) -> (Owner, Vec<Grant>) {
    let id = if b.owner.is_empty() { "dfsd" } else { &b.owner };
    let owner = Owner {
        display_name: Some(id.to_string()),
        id: Some(id.to_string()),
    };
    let mut grants = vec![Grant {
        grantee: Some(Grantee {
            display_name: Some(id.to_string()),
            id: Some(id.to_string()),
            type_: Type::from_static(Type::CANONICAL_USER),
            email_address: None,
            uri: None,
        }),
        permission: Some(Permission::from_static(Permission::FULL_CONTROL)),
    }];
    if b.public_read {
        grants.push(Grant {
            grantee: Some(Grantee {
                type_: Type::from_static(Type::GROUP),
                uri: Some(ALL_USERS.into()),
                display_name: None,
                email_address: None,
                id: None,
            }),
            permission: Some(Permission::from_static(Permission::READ)),
        });
    }
    (owner, grants)
}

/// The owner to show for a bucket (FetchOwner, ListBuckets).
pub fn owner_of(b: &BucketRecord) -> Owner {
    policy_of(b).0
}

impl DfsS3 {
    /// The settings of `bucket`, read with the caller's permissions.
    pub(super) async fn bucket_info(&self, c: &Client, bucket: &str) -> S3Result<BucketRecord> {
        let path = bucket_path(bucket)?;
        c.get_bucket(&path)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))
    }

    pub(super) async fn set_public(&self, c: &Client, bucket: &str, public: bool) -> S3Result<()> {
        let path = bucket_path(bucket)?;
        let update = BucketUpdate {
            public_read: Some(public),
            cors: None,
        };
        c.set_bucket(&path, &update)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        Ok(())
    }

    /// Whether a write may carry the object ACL `acl` (see the module docs).
    pub(super) async fn object_acl_allowed(
        &self,
        c: &Client,
        bucket: &str,
        acl: Option<&ObjectCannedACL>,
    ) -> S3Result<()> {
        let Some(acl) = acl else { return Ok(()) };
        if !canned(acl.as_str())? {
            return Ok(());
        }
        if self.bucket_info(c, bucket).await?.public_read {
            return Ok(());
        }
        Err(s3_error!(
            NotImplemented,
            "public-read objects in a private bucket: dfsd keeps ACLs per bucket \
             (make the bucket public-read with PutBucketAcl)"
        ))
    }

    pub(super) async fn get_acl(&self, c: &Client, bucket: &str) -> S3Result<GetBucketAclOutput> {
        let (owner, grants) = policy_of(&self.bucket_info(c, bucket).await?);
        Ok(GetBucketAclOutput {
            owner: Some(owner),
            grants: Some(grants),
        })
    }

    /// GetObjectAcl: the object's bucket's ACL (ACLs are per bucket).
    pub(super) async fn object_acl(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
    ) -> S3Result<GetObjectAclOutput> {
        self.find(c, bucket, key).await?;
        let acl = self.get_acl(c, bucket).await?;
        Ok(GetObjectAclOutput {
            grants: acl.grants,
            owner: acl.owner,
            ..Default::default()
        })
    }

    pub(super) async fn put_bucket_acl_impl(
        &self,
        c: &Client,
        input: PutBucketAclInput,
    ) -> S3Result<()> {
        let public = wanted(
            input.acl.as_ref().map(|a| a.as_str()),
            input.access_control_policy.as_ref(),
        )?;
        self.set_public(c, &input.bucket, public).await
    }

    pub(super) async fn put_object_acl_impl(
        &self,
        c: &Client,
        input: PutObjectAclInput,
    ) -> S3Result<()> {
        let public = wanted(
            input.acl.as_ref().map(|a| a.as_str()),
            input.access_control_policy.as_ref(),
        )?;
        self.find(c, &input.bucket, &input.key).await?;
        if public && !self.bucket_info(c, &input.bucket).await?.public_read {
            return Err(s3_error!(
                NotImplemented,
                "public-read objects in a private bucket: dfsd keeps ACLs per bucket \
                 (make the bucket public-read with PutBucketAcl)"
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_two_canned_acls() {
        assert!(!canned("private").unwrap());
        assert!(canned("public-read").unwrap());
        for other in [
            "public-read-write",
            "authenticated-read",
            "log-delivery-write",
        ] {
            assert_eq!(canned(other).unwrap_err().code().as_str(), "NotImplemented");
        }
        let b = BucketRecord {
            path: crate::path::DfsPath::parse("/b").unwrap(),
            owner: "DKX".into(),
            public_read: true,
            cors: None,
        };
        let (_, grants) = policy_of(&b);
        let policy = AccessControlPolicy {
            grants: Some(grants),
            owner: None,
        };
        assert!(from_policy(&policy).unwrap());
    }
}
