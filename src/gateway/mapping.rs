//! How S3 names map onto the dfsd namespace, and dfsd answers onto S3 ones.
//!
//! A bucket is a top-level directory: bucket `b` is `/b`. An object key is a path below
//! it: key `x/y.txt` in bucket `b` is the file `/b/x/y.txt`, and every `/` in a key is a
//! directory level. So a key is refused (InvalidArgument) when one of its `/`-separated
//! segments is empty (`a//b`, a leading or trailing `/`), `.` or `..`, or when it holds a
//! NUL or control character: such a key has no file of its own, and normalising it could
//! name another object or another bucket. The keys `a` and `a/b` cannot both exist (a
//! file and a directory of the same name). Keys under `.dfsd-uploads/` are reserved: a
//! bucket's multipart uploads in progress live there (see `multipart`).
//!
//! What S3 keeps with an object lives in the file version's attributes: `etag` (the MD5
//! of the content, or the multipart form), `content-type`, and `meta:NAME` for each
//! `x-amz-meta-NAME` header.

use s3s::dto::{ETag, Timestamp};
use s3s::{s3_error, S3Error};
use sha2::{Digest, Sha256};

use crate::client::ClientError;
use crate::model::Attrs;
use crate::model::Entry;
use crate::path::{DfsPath, MAX_NAME_BYTES, MAX_PATH_BYTES};

/// Checks an S3 bucket name (lowercase letters, digits, `-` and `.`, 3 to 63 characters,
/// as S3 requires) and returns its directory.
pub fn bucket_path(bucket: &str) -> Result<DfsPath, S3Error> {
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && bucket
            .bytes()
            .next()
            .is_some_and(|b| b.is_ascii_alphanumeric())
        && !bucket.contains("..");
    if !ok {
        return Err(s3_error!(
            InvalidBucketName,
            "bucket names are 3 to 63 characters of [a-z0-9.-], starting with a letter or digit"
        ));
    }
    DfsPath::parse(&format!("/{bucket}")).map_err(|e| s3_error!(InvalidBucketName, "{e}"))
}

/// The file an object key names in `bucket`, refusing keys that are not a clean path.
pub fn object_path(bucket: &str, key: &str) -> Result<DfsPath, S3Error> {
    let dir = bucket_path(bucket)?;
    check_key(key)?;
    DfsPath::parse(&format!("{dir}/{key}")).map_err(|e| s3_error!(InvalidArgument, "{e}"))
}

/// The directory below each bucket where multipart uploads in progress are kept.
pub const UPLOADS_DIR: &str = ".dfsd-uploads";
/// Attribute names (see the module documentation).
pub const ATTR_ETAG: &str = "etag";
pub const ATTR_CONTENT_TYPE: &str = "content-type";
pub const ATTR_META: &str = "meta:";
/// S3's limit on user metadata (names and values, in bytes).
const MAX_USER_METADATA: usize = 2048;

/// Refuses keys whose segments are empty, `.` or `..`, or that hold control characters,
/// and keys in the reserved uploads directory.
pub fn check_key(key: &str) -> Result<(), S3Error> {
    if key.is_empty() {
        return Err(s3_error!(InvalidArgument, "empty object key"));
    }
    if key.split('/').next() == Some(UPLOADS_DIR) {
        return Err(s3_error!(
            InvalidArgument,
            "keys under {UPLOADS_DIR}/ are reserved for multipart uploads in progress"
        ));
    }
    if key.len() > MAX_PATH_BYTES - 64 {
        return Err(s3_error!(KeyTooLongError, "object key too long"));
    }
    if key.chars().any(char::is_control) {
        return Err(s3_error!(
            InvalidArgument,
            "object keys must not contain NUL or control characters"
        ));
    }
    for seg in key.split('/') {
        if seg.is_empty() || seg == "." || seg == ".." {
            return Err(s3_error!(
                InvalidArgument,
                "object keys map to paths: a key must not start or end with '/', contain \
                 '//', or have '.' or '..' segments"
            ));
        }
        if seg.len() > MAX_NAME_BYTES {
            return Err(s3_error!(
                KeyTooLongError,
                "a '/'-separated part of the key is longer than {MAX_NAME_BYTES} bytes"
            ));
        }
    }
    Ok(())
}

/// The entity tag of a file version: the one stored with it (the content MD5, or the
/// multipart form `MD5-N`), else, for files written by other dfsd clients, a digest of
/// the path, version, size and mtime, which changes whenever the file does.
pub fn etag(e: &Entry) -> ETag {
    if let Some(t) = e.attrs.get(ATTR_ETAG) {
        return ETag::Strong(t.clone());
    }
    let mut h = Sha256::new();
    h.update(e.path.as_str().as_bytes());
    h.update(e.version.to_be_bytes());
    h.update(e.size.to_be_bytes());
    h.update(e.mtime.as_ms().to_be_bytes());
    ETag::Strong(hex::encode(&h.finalize()[..16]))
}

/// The stored Content-Type, or S3's default.
pub fn content_type(e: &Entry) -> String {
    e.attrs
        .get(ATTR_CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| "binary/octet-stream".into())
}

/// The stored user metadata (`x-amz-meta-*`), if any.
pub fn user_metadata(e: &Entry) -> Option<s3s::dto::Metadata> {
    let m: s3s::dto::Metadata = e
        .attrs
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix(ATTR_META)?.to_string(), v.clone())))
        .collect();
    (!m.is_empty()).then_some(m)
}

/// The attributes for an object's Content-Type and user metadata, refusing metadata
/// over S3's 2 KiB.
pub fn object_attrs(
    content_type: Option<&str>,
    metadata: Option<&s3s::dto::Metadata>,
) -> Result<Attrs, S3Error> {
    let mut a = Attrs::new();
    if let Some(ct) = content_type {
        a.insert(ATTR_CONTENT_TYPE.into(), ct.to_string());
    }
    let mut bytes = 0;
    for (k, v) in metadata.into_iter().flatten() {
        bytes += k.len() + v.len();
        a.insert(format!("{ATTR_META}{}", k.to_ascii_lowercase()), v.clone());
    }
    if bytes > MAX_USER_METADATA {
        return Err(s3_error!(
            MetadataTooLarge,
            "user metadata is {bytes} bytes, at most {MAX_USER_METADATA}"
        ));
    }
    Ok(a)
}

/// The Content-Type, user metadata and stored headers of an entry (its attributes
/// without the ETag and bookkeeping).
pub fn descriptive_attrs(e: &Entry) -> Attrs {
    e.attrs
        .iter()
        .filter(|(k, _)| {
            k.as_str() == ATTR_CONTENT_TYPE
                || k.starts_with(ATTR_META)
                || super::headers::STORED.contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

pub fn last_modified(e: &Entry) -> Timestamp {
    Timestamp::from(e.mtime.to_system_time())
}

/// True when the coordinator refused a commit or compose because a file's version was not
/// the expected one (a conditional write lost a race, or a source changed).
pub fn version_moved(e: &ClientError) -> bool {
    matches!(e, ClientError::VersionMismatch { .. })
}

/// What a failed SDK call on an object or bucket means in S3 terms.
#[derive(Debug, Clone, Copy)]
pub enum Subject {
    Bucket,
    Object,
}

/// Translates an SDK error. NotFound becomes NoSuchBucket or NoSuchKey according to
/// `subject`; refusals of the caller's key become AccessDenied; everything the
/// caller cannot fix is an InternalError (logged here, where it is handled).
pub fn s3_err(e: ClientError, subject: Subject) -> S3Error {
    let text = e.to_string();
    // The request body failed while it streamed in. Nothing was committed, and it is the
    // caller's doing, not the cluster's.
    match body_failure(&e) {
        Some(BodyFailure::Transport) => {
            return s3_error!(IncompleteBody, "the request body stalled or broke off")
        }
        // s3s's verdict on the bytes: they do not match the payload hash the caller signed
        // (its other checks, of length and chunk signatures, run before our reader).
        Some(BodyFailure::Verification) => {
            return s3_error!(
                SignatureDoesNotMatch,
                "the request body does not match its signed payload hash (x-amz-content-sha256)"
            )
        }
        None => {}
    }
    match (e, subject) {
        (ClientError::Refused(why), _) => s3_error!(BadDigest, "{why}"),
        (ClientError::NotFound(_), Subject::Bucket) => s3_error!(NoSuchBucket, "{text}"),
        (ClientError::NotFound(_), Subject::Object) => s3_error!(NoSuchKey, "{text}"),
        (ClientError::AlreadyExists(_), Subject::Bucket) => {
            s3_error!(BucketAlreadyOwnedByYou, "{text}")
        }
        // The coordinator applied the caller's key (role, prefix, revocation).
        (ClientError::PermissionDenied(_) | ClientError::NotAuthenticated(_), _) => {
            s3_error!(AccessDenied, "{text}")
        }
        (ClientError::Rejected(_), _) => s3_error!(InvalidArgument, "{text}"),
        (
            ClientError::AlreadyExists(_)
            | ClientError::VersionMismatch { .. }
            | ClientError::NotADirectory(_)
            | ClientError::IsADirectory(_)
            | ClientError::NotEmpty(_)
            | ClientError::Precondition(_),
            _,
        ) => s3_error!(InvalidRequest, "{text}"),
        (
            ClientError::Unavailable(_)
            | ClientError::Unreachable { .. }
            | ClientError::LimitExceeded(_)
            | ClientError::QuorumNotMet(_),
            _,
        ) => {
            tracing::warn!(error = %text, "cluster unavailable");
            s3_error!(ServiceUnavailable, "{text}")
        }
        _ => {
            tracing::error!(error = %text, "dfsd call failed");
            s3_error!(InternalError, "{text}")
        }
    }
}

enum BodyFailure {
    /// The connection: a stall cut by the server, or the client went away.
    Transport,
    /// s3s refused the bytes.
    Verification,
}

/// Whether the request body's stream failed (see [`BodyFailed`]), and how.
fn body_failure(e: &ClientError) -> Option<BodyFailure> {
    let ClientError::Io { source, .. } = e else {
        return None;
    };
    let BodyFailed(inner) = source.get_ref()?.downcast_ref::<BodyFailed>()?;
    Some(
        if inner.is::<std::io::Error>() || inner.is::<hyper::Error>() {
            BodyFailure::Transport
        } else {
            BodyFailure::Verification
        },
    )
}

/// An error of the request body's stream, as the SDK's reader sees it: marks the failure
/// as the caller's body, not the cluster.
#[derive(Debug, thiserror::Error)]
#[error("request body: {0}")]
pub struct BodyFailed(pub s3s::StdError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_never_escape_their_bucket() {
        for bad in [
            "",
            "..",
            ".",
            "../other/x",
            "a/../../x",
            "a/./b",
            "a//b",
            "/a",
            "a/",
            "a\0b",
            "a\nb",
            ".dfsd-uploads/x",
            ".dfsd-uploads",
        ] {
            assert!(object_path("bucket", bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            object_path("bucket", "a/b c/d.txt").unwrap().to_string(),
            "/bucket/a/b c/d.txt"
        );
        assert_eq!(
            object_path("bucket", "..a").unwrap().to_string(),
            "/bucket/..a"
        );
    }

    #[test]
    fn bucket_names_follow_s3_rules() {
        for bad in ["ab", "Upper", "a_b", "-ab", "a..b", "a/b", &"x".repeat(64)] {
            assert!(bucket_path(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(
            bucket_path("my-bucket.1").unwrap().to_string(),
            "/my-bucket.1"
        );
    }
}
