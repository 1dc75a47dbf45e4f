//! Bucket operations: CreateBucket (S3's naming rules, us-east-1's answer to re-creating
//! your own bucket, `x-amz-acl`), ListBuckets (pages, prefix, owner), GetBucketLocation,
//! DeleteBucket, and the CORS configuration calls.

use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::acl::owner_of;
use super::cors;
use super::mapping::{bucket_path, last_modified, s3_err, Subject, UPLOADS_DIR};
use super::state::DfsS3;
use crate::client::{Client, ClientError};
use crate::model::{BucketUpdate, Entry};

/// Most buckets one ListBuckets page returns without MaxBuckets (S3 allows 10,000).
const MAX_BUCKETS: usize = 10_000;

/// S3's rules for a new bucket's name beyond [`bucket_path`]'s: no `.-` or `-.`, a letter
/// or digit at the end, not an IP address, no reserved prefix or suffix.
pub fn check_new_name(name: &str) -> S3Result<()> {
    bucket_path(name)?;
    let bad = |why: &str| Err(s3_error!(InvalidBucketName, "bucket name {name:?}: {why}"));
    if name.contains(".-") || name.contains("-.") {
        return bad("a '.' and a '-' cannot be adjacent");
    }
    if !name.ends_with(|c: char| c.is_ascii_alphanumeric()) {
        return bad("must end with a letter or digit");
    }
    if name.parse::<std::net::Ipv4Addr>().is_ok() {
        return bad("must not be formatted as an IP address");
    }
    if name.starts_with("xn--") || name.starts_with("sthree-") {
        return bad("the prefixes xn-- and sthree- are reserved");
    }
    if name.ends_with("-s3alias") || name.ends_with("--ol-s3") {
        return bad("the suffixes -s3alias and --ol-s3 are reserved");
    }
    Ok(())
}

fn public_of(acl: Option<&BucketCannedACL>) -> S3Result<Option<bool>> {
    match acl.map(|a| a.as_str()) {
        None | Some(BucketCannedACL::PRIVATE) => Ok(acl.map(|_| false)),
        Some(BucketCannedACL::PUBLIC_READ) => Ok(Some(true)),
        Some(other) => Err(s3_error!(
            NotImplemented,
            "canned ACL {other:?}: dfsd supports only private and public-read"
        )),
    }
}

impl DfsS3 {
    /// CreateBucket for the key `caller`: a new directory owned by it; the bucket it
    /// already owns is success again (us-east-1); anyone else's is BucketAlreadyExists.
    pub(super) async fn create_bucket_impl(
        &self,
        c: &Client,
        caller: &str,
        input: CreateBucketInput,
    ) -> S3Result<CreateBucketOutput> {
        check_new_name(&input.bucket)?;
        let public = public_of(input.acl.as_ref())?;
        let path = bucket_path(&input.bucket)?;
        match c.mkdir(&path, false).await {
            Ok(_) => tracing::info!(bucket = %input.bucket, "bucket created"),
            Err(ClientError::AlreadyExists(_)) => {
                let owner = match c.get_bucket(&path).await {
                    Ok(b) => Some(b.owner),
                    Err(_) => None,
                };
                // An owner nobody recorded (made before ownership was, or with
                // authentication off) counts as the caller's if it may see it.
                if !owner.is_some_and(|o| o == caller || o.is_empty()) {
                    return Err(s3_error!(
                        BucketAlreadyExists,
                        "The requested bucket name is not available. The bucket namespace is \
                         shared by all users of the system. Please select a different name \
                         and try again."
                    ));
                }
            }
            Err(e) => return Err(s3_err(e, Subject::Bucket)),
        }
        if let Some(p) = public {
            self.set_public(c, &input.bucket, p).await?;
        }
        Ok(CreateBucketOutput {
            location: Some(path.to_string()),
        })
    }

    pub(super) async fn list_buckets_impl(
        &self,
        c: &Client,
        input: ListBucketsInput,
    ) -> S3Result<ListBucketsOutput> {
        let max = match input.max_buckets {
            Some(n) if !(1..=10_000).contains(&n) => {
                return Err(s3_error!(
                    InvalidArgument,
                    "MaxBuckets must be between 1 and 10000, not {n}"
                ))
            }
            Some(n) => n as usize,
            None => MAX_BUCKETS,
        };
        let after = match &input.continuation_token {
            Some(t) => hex::decode(t)
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| s3_error!(InvalidArgument, "invalid continuation token"))?,
            None => String::new(),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let entries = c.list("/").await.map_err(|e| s3_err(e, Subject::Bucket))?;
        let mut names: Vec<&Entry> = entries
            .iter()
            .filter(|e| e.is_dir() && bucket_path(e.name()).is_ok())
            .filter(|e| e.name().starts_with(&prefix) && e.name() > after.as_str())
            .collect();
        names.sort_by(|a, b| a.name().cmp(b.name()));
        let more = names.len() > max;
        names.truncate(max);
        let next = more
            .then(|| names.last().map(|e| hex::encode(e.name())))
            .flatten();
        let buckets = names
            .iter()
            .map(|e| Bucket {
                name: Some(e.name().to_string()),
                creation_date: Some(last_modified(e)),
                ..Default::default()
            })
            .collect();
        Ok(ListBucketsOutput {
            buckets: Some(buckets),
            continuation_token: next,
            prefix: input.prefix,
            owner: None,
        })
    }

    /// GetBucketLocation: `gateway.region`; us-east-1 is the empty LocationConstraint, as
    /// S3 answers.
    pub(super) async fn location(
        &self,
        c: &Client,
        bucket: &str,
    ) -> S3Result<GetBucketLocationOutput> {
        self.bucket(c, bucket).await?;
        let region = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(GetBucketLocationOutput {
            location_constraint: region,
        })
    }

    /// DeleteBucket: BucketNotEmpty while objects remain.
    pub(super) async fn delete_bucket_impl(&self, c: &Client, bucket: &str) -> S3Result<()> {
        let path = self.bucket(c, bucket).await?;
        let not_empty = || {
            s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )
        };
        // Uploads in progress do not keep a bucket alive (as in S3, where deleting the
        // bucket discards them); objects do. Two entries are enough to tell.
        let (entries, _) = c
            .list_page(&path, "", 2)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        match entries.as_slice() {
            [] => {}
            [only] if only.name() == UPLOADS_DIR => {
                c.delete(&only.path, true)
                    .await
                    .map_err(|e| s3_err(e, Subject::Bucket))?;
            }
            _ => return Err(not_empty()),
        }
        match c.delete(&path, false).await {
            Ok(_) => {
                tracing::info!(bucket = %bucket, "bucket deleted");
                Ok(())
            }
            // Non-recursive delete of a directory refuses only when it is not empty
            // (something arrived since the listing).
            Err(ClientError::NotEmpty(_)) => Err(not_empty()),
            Err(e) => Err(s3_err(e, Subject::Bucket)),
        }
    }

    pub(super) async fn put_cors(&self, c: &Client, input: PutBucketCorsInput) -> S3Result<()> {
        let json = cors::to_json(&input.cors_configuration)?;
        self.set_cors(c, &input.bucket, json).await
    }

    /// Stores `json` as the bucket's CORS rules ("" removes them).
    pub(super) async fn set_cors(&self, c: &Client, bucket: &str, json: String) -> S3Result<()> {
        let path = bucket_path(bucket)?;
        let update = BucketUpdate {
            public_read: None,
            cors: Some(json),
        };
        c.set_bucket(&path, &update)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        Ok(())
    }

    pub(super) async fn get_cors(&self, c: &Client, bucket: &str) -> S3Result<GetBucketCorsOutput> {
        let b = self.bucket_info(c, bucket).await?;
        let Some(json) = b.cors else {
            return Err(s3_error!(
                NoSuchCORSConfiguration,
                "The CORS configuration does not exist"
            ));
        };
        Ok(GetBucketCorsOutput {
            cors_rules: Some(cors::from_json(&json)),
        })
    }

    /// The owner of `bucket`, to show in listings (FetchOwner).
    pub(super) async fn owner(&self, c: &Client, bucket: &str) -> S3Result<Owner> {
        Ok(owner_of(&self.bucket_info(c, bucket).await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_bucket_names_follow_s3_rules() {
        for bad in [
            "foo.-bar",
            "foo-.bar",
            "foo-",
            "192.168.5.4",
            "xn--abc",
            "abc-s3alias",
        ] {
            assert!(check_new_name(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["foo-bar", "foo.bar", "a1b", "my.bucket-2"] {
            check_new_name(good).unwrap();
        }
    }
}
