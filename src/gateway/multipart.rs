//! Multipart uploads, kept in the namespace so any gateway can serve any step.
//!
//! An upload in progress in bucket `b` is the empty marker file
//! `/b/.dfsd-uploads/ID` (its attributes hold the object key, Content-Type and user
//! metadata given at creation) and its parts are the files `/b/.dfsd-uploads/ID.parts/N`
//! (N = part number, zero-padded; each part's attributes hold its MD5 ETag). The
//! `.dfsd-uploads` directory is hidden from listings and its keys are reserved.
//!
//! This module holds that layout and the calls on whole uploads (Create, Abort,
//! ListParts, ListMultipartUploads); parts are stored by `upload_part.rs` and joined by
//! `complete.rs`. Completing an upload is one Compose call on the coordinator: no byte
//! is read or copied.

use rand::Rng;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::mapping::{
    bucket_path, etag, last_modified, object_attrs, object_path, s3_err, Subject, UPLOADS_DIR,
};
use super::state::DfsS3;
use crate::client::{Client, ClientError, PutOptions};
use crate::model::Entry;
use crate::path::DfsPath;

/// The marker's attribute naming the object key.
pub(super) const ATTR_UPLOAD_KEY: &str = "s3-upload-key";
/// S3's limit on part numbers: 1..=10000.
const MAX_PART_NUMBER: i32 = 10_000;
/// Most parts or uploads one listing returns.
const MAX_LISTED: usize = 1000;

/// Where an upload lives.
pub(super) struct Upload {
    pub marker: DfsPath,
    pub parts_dir: DfsPath,
}

impl Upload {
    /// Refuses ids that are not ours (32 hex digits) before they reach a path.
    fn locate(bucket: &str, upload_id: &str) -> S3Result<Upload> {
        let ok = upload_id.len() == 32 && upload_id.bytes().all(|b| b.is_ascii_hexdigit());
        if !ok {
            return Err(s3_error!(NoSuchUpload, "no upload {upload_id:?}"));
        }
        let dir = bucket_path(bucket)?;
        let p = |s: String| DfsPath::parse(&s).map_err(|e| s3_error!(InternalError, "{e}"));
        Ok(Upload {
            marker: p(format!("{dir}/{UPLOADS_DIR}/{upload_id}"))?,
            parts_dir: p(format!("{dir}/{UPLOADS_DIR}/{upload_id}.parts"))?,
        })
    }

    pub(super) fn part(&self, n: i32) -> S3Result<DfsPath> {
        if !(1..=MAX_PART_NUMBER).contains(&n) {
            return Err(s3_error!(
                InvalidArgument,
                "part numbers are 1 to {MAX_PART_NUMBER}, not {n}"
            ));
        }
        DfsPath::parse(&format!("{}/{n:05}", self.parts_dir))
            .map_err(|e| s3_error!(InternalError, "{e}"))
    }
}

fn new_upload_id() -> String {
    let mut b = [0u8; 16];
    rand::rng().fill(&mut b);
    hex::encode(b)
}

/// The part number of a part file's name.
fn part_number(name: &str) -> Option<i32> {
    name.parse()
        .ok()
        .filter(|n| (1..=MAX_PART_NUMBER).contains(n))
}

impl DfsS3 {
    /// The upload's marker, checked to belong to `key`: NoSuchUpload otherwise.
    pub(super) async fn marker(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> S3Result<(Upload, Entry)> {
        let up = Upload::locate(bucket, id)?;
        object_path(bucket, key)?;
        match c.stat(&up.marker).await {
            Ok(m)
                if !m.is_dir() && m.attrs.get(ATTR_UPLOAD_KEY).map(String::as_str) == Some(key) =>
            {
                Ok((up, m))
            }
            Ok(_) => Err(s3_error!(
                NoSuchUpload,
                "upload {id} is not for key {key:?}"
            )),
            Err(ClientError::NotFound(_)) => {
                self.bucket(c, bucket).await?;
                Err(s3_error!(
                    NoSuchUpload,
                    "no upload {id} (completed or aborted?)"
                ))
            }
            Err(e) => Err(s3_err(e, Subject::Object)),
        }
    }

    /// The upload's parts by number (none yet: empty).
    pub(super) async fn part_entries(
        &self,
        c: &Client,
        up: &Upload,
    ) -> S3Result<Vec<(i32, Entry)>> {
        let entries = match c.list(&up.parts_dir).await {
            Ok(e) => e,
            Err(ClientError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(s3_err(e, Subject::Object)),
        };
        let mut parts: Vec<(i32, Entry)> = entries
            .into_iter()
            .filter(|e| !e.is_dir())
            .filter_map(|e| Some((part_number(e.name())?, e)))
            .collect();
        parts.sort_by_key(|p| p.0);
        Ok(parts)
    }

    pub(super) async fn create_upload(
        &self,
        c: &Client,
        input: CreateMultipartUploadInput,
    ) -> S3Result<CreateMultipartUploadOutput> {
        object_path(&input.bucket, &input.key)?;
        self.bucket(c, &input.bucket).await?;
        self.object_acl_allowed(c, &input.bucket, input.acl.as_ref())
            .await?;
        let mut attrs = object_attrs(input.content_type.as_deref(), input.metadata.as_ref())?;
        super::headers::StoredHeaders {
            cache_control: input.cache_control.clone(),
            content_disposition: input.content_disposition.clone(),
            content_encoding: input.content_encoding.clone(),
            content_language: input.content_language.clone(),
            expires: input.expires.clone(),
        }
        .store(&mut attrs);
        attrs.insert(ATTR_UPLOAD_KEY.into(), input.key.clone());
        let id = new_upload_id();
        let up = Upload::locate(&input.bucket, &id)?;
        let opts = PutOptions {
            attrs,
            no_clobber: true,
            ..Default::default()
        };
        c.put(tokio::io::empty(), &up.marker.to_string(), &opts)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        tracing::info!(bucket = %input.bucket, key = %input.key, upload = %id, "multipart upload started");
        Ok(CreateMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(id),
            ..Default::default()
        })
    }

    pub(super) async fn abort_upload(
        &self,
        c: &Client,
        input: AbortMultipartUploadInput,
    ) -> S3Result<()> {
        let (up, _) = self
            .marker(c, &input.bucket, &input.key, &input.upload_id)
            .await?;
        // Parts first: a marker without parts is an empty upload, never the reverse.
        for p in [&up.parts_dir, &up.marker] {
            match c.delete(&p, true).await {
                Ok(_) => {}
                Err(ClientError::NotFound(_)) => {}
                Err(e) => return Err(s3_err(e, Subject::Object)),
            }
        }
        tracing::info!(bucket = %input.bucket, key = %input.key, upload = %input.upload_id, "multipart upload aborted");
        Ok(())
    }

    pub(super) async fn parts(
        &self,
        c: &Client,
        input: ListPartsInput,
    ) -> S3Result<ListPartsOutput> {
        let (up, _) = self
            .marker(c, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let after = input.part_number_marker.unwrap_or(0);
        let max = input
            .max_parts
            .map_or(MAX_LISTED, |m| (m.max(0) as usize).min(MAX_LISTED));
        let all: Vec<(i32, Entry)> = self
            .part_entries(c, &up)
            .await?
            .into_iter()
            .filter(|(n, _)| *n > after)
            .collect();
        let truncated = all.len() > max;
        let parts: Vec<Part> = all
            .into_iter()
            .take(max)
            .map(|(n, e)| Part {
                e_tag: Some(etag(&e)),
                last_modified: Some(last_modified(&e)),
                part_number: Some(n),
                size: Some(e.size as i64),
                ..Default::default()
            })
            .collect();
        let next = parts.last().and_then(|p| p.part_number);
        Ok(ListPartsOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            upload_id: Some(input.upload_id),
            part_number_marker: input.part_number_marker,
            next_part_number_marker: truncated.then_some(next).flatten(),
            max_parts: Some(max as i32),
            is_truncated: Some(truncated),
            parts: Some(parts),
            ..Default::default()
        })
    }

    pub(super) async fn uploads(
        &self,
        c: &Client,
        input: ListMultipartUploadsInput,
    ) -> S3Result<ListMultipartUploadsOutput> {
        let dir = self.bucket(c, &input.bucket).await?;
        let entries = match c.list(&format!("{dir}/{UPLOADS_DIR}")).await {
            Ok(e) => e,
            Err(ClientError::NotFound(_)) => Vec::new(),
            Err(e) => return Err(s3_err(e, Subject::Bucket)),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let mut all: Vec<(String, String, Entry)> = entries
            .into_iter()
            .filter(|e| !e.is_dir())
            .filter_map(|e| {
                let key = e.attrs.get(ATTR_UPLOAD_KEY)?.clone();
                Some((key, e.name().to_string(), e))
            })
            .filter(|(k, id, _)| {
                k.starts_with(&prefix)
                    && (k.as_str() > key_marker.as_str()
                        || k == &key_marker
                            && !id_marker.is_empty()
                            && id.as_str() > id_marker.as_str())
            })
            .collect();
        all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
        let max = input
            .max_uploads
            .map_or(MAX_LISTED, |m| (m.max(0) as usize).min(MAX_LISTED));
        let truncated = all.len() > max;
        all.truncate(max);
        let last = all.last().map(|(k, id, _)| (k.clone(), id.clone()));
        let uploads = all
            .into_iter()
            .map(|(key, id, e)| MultipartUpload {
                initiated: Some(last_modified(&e)),
                key: Some(key),
                upload_id: Some(id),
                storage_class: Some(StorageClass::from_static(StorageClass::STANDARD)),
                ..Default::default()
            })
            .collect();
        let (next_key, next_id) = match (truncated, last) {
            (true, Some((k, id))) => (Some(k), Some(id)),
            _ => (None, None),
        };
        Ok(ListMultipartUploadsOutput {
            bucket: Some(input.bucket),
            prefix: input.prefix,
            key_marker: input.key_marker,
            upload_id_marker: input.upload_id_marker,
            next_key_marker: next_key,
            next_upload_id_marker: next_id,
            max_uploads: Some(max as i32),
            is_truncated: Some(truncated),
            uploads: Some(uploads),
            ..Default::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upload_ids_and_part_numbers_never_make_odd_paths() {
        for bad in [
            "",
            "../x",
            "0123456789abcdef0123456789abcdeg",
            "a/b",
            &"a".repeat(33),
        ] {
            assert!(Upload::locate("bucket", bad).is_err(), "{bad:?} accepted");
        }
        let id = new_upload_id();
        let up = Upload::locate("bucket", &id).unwrap();
        assert_eq!(up.marker.to_string(), format!("/bucket/.dfsd-uploads/{id}"));
        assert_eq!(
            up.part(7).unwrap().to_string(),
            format!("/bucket/.dfsd-uploads/{id}.parts/00007")
        );
        assert!(up.part(0).is_err() && up.part(10_001).is_err());
        assert_eq!(part_number("00042"), Some(42));
        assert_eq!(part_number("x"), None);
    }
}
