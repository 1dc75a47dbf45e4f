//! Directory markers: the empty objects `key/` that the AWS console, rclone, Hadoop S3A
//! and backup tools create for folders.
//!
//! A key ending in `/` names the directory `key` itself. `PUT key/` with an empty body
//! creates that directory (with missing parents), or marks an existing one, by setting
//! its attributes: [`ATTR_DIR_MARKER`] plus the empty body's ETag and the Content-Type
//! and metadata given. A marked directory lists as the object `key/` (size 0) with and
//! without a delimiter, as S3 lists a marker, and answers HEAD and GET as an empty
//! object. `DELETE key/` removes the directory when it is empty and otherwise only
//! clears the mark (its objects stay, as they would in S3). A file and a directory
//! cannot share a name, so `a` and `a/` (or `a/b`) cannot both exist: the second is
//! refused with a message that says so.

use s3s::{s3_error, S3Result};

use super::digest::EMPTY_MD5_HEX;
use super::mapping::{bucket_path, check_key, s3_err, Subject, ATTR_ETAG};
use crate::client::{Client, ClientError};
use crate::model::Attrs;
use crate::model::{Entry, MkdirOptions};
use crate::path::DfsPath;

/// Set on a directory that was PUT as `key/`.
pub const ATTR_DIR_MARKER: &str = "s3-dir-marker";

/// True for a key that names a directory marker.
pub fn is_marker_key(key: &str) -> bool {
    key.len() > 1 && key.ends_with('/')
}

/// The directory a marker key `dir/` names (the key without its `/` must be a clean key).
pub fn marker_path(bucket: &str, key: &str) -> S3Result<DfsPath> {
    let dir = bucket_path(bucket)?;
    let name = key.strip_suffix('/').unwrap_or(key);
    check_key(name)?;
    DfsPath::parse(&format!("{dir}/{name}")).map_err(|e| s3_error!(InvalidArgument, "{e}"))
}

/// True for a directory entry that carries a marker.
pub fn is_marked(e: &Entry) -> bool {
    e.is_dir() && e.attrs.contains_key(ATTR_DIR_MARKER)
}

/// Creates or marks the directory of `key` (ending in '/') with `attrs` (Content-Type,
/// metadata). Returns the directory's entry.
pub async fn put(c: &Client, bucket: &str, key: &str, mut attrs: Attrs) -> S3Result<Entry> {
    let path = marker_path(bucket, key)?;
    attrs.insert(ATTR_DIR_MARKER.into(), "1".into());
    attrs.insert(ATTR_ETAG.into(), EMPTY_MD5_HEX.into());
    let opts = MkdirOptions {
        parents: true,
        attrs: Some(attrs),
        owner: String::new(),
    };
    c.mkdir_with(&path, &opts).await.map_err(|e| {
        if matches!(e, ClientError::NotADirectory(_)) {
            return s3_error!(
                InvalidRequest,
                "{key:?}: an object named {:?} (or one on its path) exists, and dfsd keys map \
                 to paths: 'a' and 'a/' cannot both exist",
                key.trim_end_matches('/')
            );
        }
        s3_err(e, Subject::Object)
    })
}

/// The marker `key` (ending in '/') as an object entry: NoSuchKey unless the directory
/// exists and is marked.
pub async fn get(c: &Client, bucket: &str, key: &str) -> S3Result<Entry> {
    let path = marker_path(bucket, key)?;
    match c.stat(&path).await {
        Ok(e) if is_marked(&e) => Ok(e),
        Ok(_) => Err(s3_error!(NoSuchKey)),
        Err(ClientError::NotFound(_)) => Err(s3_error!(NoSuchKey)),
        Err(e) => Err(s3_err(e, Subject::Object)),
    }
}

/// Deletes the marker `key`: the directory if it is empty, else only its mark. A key
/// that is no marker is already gone (S3 answers success either way).
pub async fn delete(c: &Client, bucket: &str, key: &str) -> S3Result<Option<DfsPath>> {
    let path = marker_path(bucket, key)?;
    match c.stat(&path).await {
        Ok(e) if is_marked(&e) => {}
        Ok(_) => return Ok(None),
        Err(ClientError::NotFound(_)) => return Ok(None),
        Err(e) => return Err(s3_err(e, Subject::Object)),
    }
    match c.delete(&path, false).await {
        Ok(_) => return Ok(Some(path)),
        Err(ClientError::NotFound(_)) => return Ok(None),
        Err(ClientError::NotEmpty(_)) => {}
        Err(e) => return Err(s3_err(e, Subject::Object)),
    }
    // Not empty: keep the directory, drop the mark.
    let opts = MkdirOptions {
        parents: true,
        attrs: Some(Attrs::new()),
        owner: String::new(),
    };
    c.mkdir_with(&path, &opts)
        .await
        .map_err(|e| s3_err(e, Subject::Object))?;
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marker_keys_name_their_directory() {
        assert!(is_marker_key("a/") && is_marker_key("a/b/"));
        assert!(!is_marker_key("a") && !is_marker_key("/"));
        assert_eq!(marker_path("bkt", "a/b/").unwrap().to_string(), "/bkt/a/b");
        for bad in ["//", "a//", "../", "./", ".dfsd-uploads/"] {
            assert!(marker_path("bkt", bad).is_err(), "{bad:?} accepted");
        }
    }
}
