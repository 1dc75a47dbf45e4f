//! Multipart uploads, kept in the namespace so any gateway can serve any step.
//!
//! An upload in progress in bucket `b` is the empty marker file
//! `/b/.dfsd-uploads/ID` (its attributes hold the object key, Content-Type and user
//! metadata given at creation) and its parts are the files `/b/.dfsd-uploads/ID.parts/N`
//! (N = part number, zero-padded; each part's attributes hold its MD5 ETag). The
//! `.dfsd-uploads` directory is hidden from listings and its keys are reserved.
//!
//! Completing an upload is one Compose call on the coordinator: the new object's chunk
//! list is the parts' chunk lists joined in order, each part checked at the version whose
//! ETag matched, and the marker and parts are deleted in the same transaction. No byte
//! is read or copied. UploadPartCopy of a whole object shares its chunks the same way; a
//! byte range is read and stored (chunks that line up are deduplicated by content).

use rand::Rng;
use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::conditions::ReadConditions;
use super::digest::multipart_etag;
use super::mapping::{
    bucket_path, etag, is_dir, last_modified, object_attrs, object_path, s3_err, version_moved,
    Subject, ATTR_ETAG, UPLOADS_DIR,
};
use super::s3::{body_reader, download, drain, too_large, BodyChecks, ClientChecksum, DfsS3};
use crate::client::{Client, PutOptions};
use crate::meta::Attrs;
use crate::path::DfsPath;
use crate::proto::pb;

/// The marker's attribute naming the object key.
const ATTR_UPLOAD_KEY: &str = "s3-upload-key";
/// The completed object's attribute naming the upload it came from (a repeated
/// CompleteMultipartUpload answers the same success while the object is unchanged).
const ATTR_COMPLETED_UPLOAD: &str = "s3-upload-id";
/// S3's limits: part numbers 1..=10000, every part but the last at least 5 MiB.
const MAX_PART_NUMBER: i32 = 10_000;
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;
/// Most parts or uploads one listing returns.
const MAX_LISTED: usize = 1000;

/// Where an upload lives.
struct Upload {
    marker: DfsPath,
    parts_dir: DfsPath,
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

    fn part(&self, n: i32) -> S3Result<DfsPath> {
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
    async fn marker(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
        id: &str,
    ) -> S3Result<(Upload, pb::Entry)> {
        let up = Upload::locate(bucket, id)?;
        object_path(bucket, key)?;
        match c.stat(&up.marker.to_string()).await {
            Ok(m)
                if !is_dir(&m) && m.attrs.get(ATTR_UPLOAD_KEY).map(String::as_str) == Some(key) =>
            {
                Ok((up, m))
            }
            Ok(_) => Err(s3_error!(
                NoSuchUpload,
                "upload {id} is not for key {key:?}"
            )),
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {
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
    async fn part_entries(&self, c: &Client, up: &Upload) -> S3Result<Vec<(i32, pb::Entry)>> {
        let entries = match c.list(&up.parts_dir.to_string()).await {
            Ok(e) => e,
            Err(e) if e.code() == Some(tonic::Code::NotFound) => Vec::new(),
            Err(e) => return Err(s3_err(e, Subject::Object)),
        };
        let mut parts: Vec<(i32, pb::Entry)> = entries
            .into_iter()
            .filter(|e| !is_dir(e))
            .filter_map(|e| Some((part_number(&e.name)?, e)))
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

    pub(super) async fn upload_part_body(
        &self,
        c: &Client,
        allowed: S3Result<()>,
        declared: Option<i64>,
        checksum: Option<ClientChecksum>,
        input: UploadPartInput,
    ) -> S3Result<UploadPartOutput> {
        too_large(input.content_length)?;
        let mut reader = body_reader(input.body);
        let checked = async {
            allowed?;
            let (up, _) = self
                .marker(c, &input.bucket, &input.key, &input.upload_id)
                .await?;
            up.part(input.part_number)
        }
        .await;
        let part = match checked {
            Ok(p) => p,
            Err(e) => {
                drain(&mut reader).await;
                return Err(e);
            }
        };
        let entry = self
            .put_hashed(
                c,
                &mut reader,
                &part,
                &PutOptions::default(),
                BodyChecks {
                    content_length: declared,
                    content_md5: input.content_md5.as_deref(),
                    checksum,
                },
            )
            .await?;
        tracing::debug!(part = %part, "part stored");
        Ok(UploadPartOutput {
            e_tag: Some(etag(&entry)),
            ..Default::default()
        })
    }

    pub(super) async fn upload_part_from_copy(
        &self,
        c: &Client,
        input: UploadPartCopyInput,
    ) -> S3Result<UploadPartCopyOutput> {
        let (up, _) = self
            .marker(c, &input.bucket, &input.key, &input.upload_id)
            .await?;
        let part = up.part(input.part_number)?;
        let (src_path, src) = self.copy_source(c, &input.copy_source).await?;
        ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            for_copy: true,
        }
        .check(&src)?;
        let entry = match input.copy_source_range.as_deref() {
            None => {
                // The whole object: share its chunks, keep its tag.
                let tag = etag(&src).value().to_string();
                c.compose(pb::ComposeRequest {
                    sources: vec![pb::ComposeSource {
                        path: src_path.to_string(),
                        expected_version: Some(src.version),
                    }],
                    dst: part.to_string(),
                    attrs: [(ATTR_ETAG.to_string(), tag)].into(),
                    ..Default::default()
                })
                .await
                .map_err(|e| s3_err(e, Subject::Object))?
            }
            Some(r) => {
                let range = copy_range(r, src.size)?;
                let body = download(c.clone(), src_path, src.version, range.clone());
                let mut reader = tokio_util::io::StreamReader::new(body);
                let checks = BodyChecks {
                    content_length: Some((range.end - range.start) as i64),
                    content_md5: None,
                    checksum: None,
                };
                self.put_hashed(c, &mut reader, &part, &PutOptions::default(), checks)
                    .await?
            }
        };
        Ok(UploadPartCopyOutput {
            copy_part_result: Some(CopyPartResult {
                e_tag: Some(etag(&entry)),
                last_modified: Some(last_modified(&entry)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }

    pub(super) async fn complete_upload(
        &self,
        c: &Client,
        input: CompleteMultipartUploadInput,
    ) -> S3Result<CompleteMultipartUploadOutput> {
        let wanted = input
            .multipart_upload
            .clone()
            .and_then(|m| m.parts)
            .unwrap_or_default();
        if wanted.is_empty() {
            return Err(s3_error!(MalformedXML, "the upload lists no parts"));
        }
        let (up, marker) = match self
            .marker(c, &input.bucket, &input.key, &input.upload_id)
            .await
        {
            Ok(m) => m,
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchUpload => {
                return self.completed_already(c, &input, &wanted).await.ok_or(e)
            }
            Err(e) => return Err(e),
        };
        let dst = object_path(&input.bucket, &input.key)?;
        let stored = self.part_entries(c, &up).await?;
        let mut sources = Vec::with_capacity(wanted.len());
        let mut tags = Vec::with_capacity(wanted.len());
        let mut prev = 0;
        let mut sizes = Vec::with_capacity(wanted.len());
        for (i, w) in wanted.iter().enumerate() {
            let n = w.part_number.unwrap_or(0);
            if n == prev {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "part {n} is listed twice: list each part once, in ascending order"
                ));
            }
            if n < prev {
                return Err(s3_error!(
                    InvalidPartOrder,
                    "part {n} is listed after part {prev}: parts must be listed in ascending order"
                ));
            }
            prev = n;
            let Some((_, e)) = stored.iter().find(|(m, _)| *m == n) else {
                return Err(s3_error!(InvalidPart, "part {n} was not uploaded"));
            };
            let tag = etag(e);
            if w.e_tag.as_ref().is_some_and(|t| t.value() != tag.value()) {
                return Err(s3_error!(InvalidPart, "part {n}: the ETag differs"));
            }
            if i + 1 < wanted.len() && e.size < MIN_PART_BYTES {
                return Err(s3_error!(
                    EntityTooSmall,
                    "part {n} is {} bytes; every part but the last must be at least 5 MiB",
                    e.size
                ));
            }
            sizes.push(e.size);
            sources.push(pb::ComposeSource {
                path: e.path.clone(),
                expected_version: Some(e.version),
            });
            tags.push(tag.value().to_string());
        }
        let mut opts = PutOptions::default();
        self.write_conditions(
            c,
            &input.bucket,
            &input.key,
            input.if_match.as_ref(),
            input.if_none_match.as_ref(),
            &mut opts,
        )
        .await?;
        let mut attrs: Attrs = marker
            .attrs
            .into_iter()
            .filter(|(k, _)| k != ATTR_UPLOAD_KEY)
            .collect();
        let tag = multipart_etag(tags.iter().map(String::as_str));
        attrs.insert(ATTR_ETAG.into(), tag);
        attrs.insert(ATTR_COMPLETED_UPLOAD.into(), input.upload_id.clone());
        if let Some(layout) = super::parts::encode(&sizes) {
            attrs.insert(super::parts::ATTR_PARTS.into(), layout);
        }
        let dst_text = dst.to_string();
        let entry = c
            .compose(pb::ComposeRequest {
                sources,
                dst: dst_text.clone(),
                no_clobber: opts.no_clobber,
                expected_version: opts.expected_version,
                attrs: attrs.into_iter().collect(),
                delete_after: vec![up.marker.to_string(), up.parts_dir.to_string()],
                ..Default::default()
            })
            .await
            .map_err(|e| {
                let text = e.to_string();
                match e.code() {
                    Some(tonic::Code::AlreadyExists) => {
                        s3_error!(PreconditionFailed, "If-None-Match: {text}")
                    }
                    _ if version_moved(&e) => {
                        if text.starts_with(&format!("{dst_text}:")) {
                            s3_error!(PreconditionFailed, "If-Match: {text}")
                        } else {
                            s3_error!(InvalidPart, "a part was replaced meanwhile: {text}")
                        }
                    }
                    _ => s3_err(e, Subject::Object),
                }
            })?;
        tracing::info!(path = %dst, size = entry.size, parts = tags.len(), "multipart upload completed");
        Ok(CompleteMultipartUploadOutput {
            bucket: Some(input.bucket),
            key: Some(input.key),
            e_tag: Some(etag(&entry)),
            location: Some(dst_text),
            ..Default::default()
        })
    }

    /// The answer to a CompleteMultipartUpload repeated after it succeeded: the same
    /// success while the key still holds the object that upload made from these parts
    /// (S3 does the same); None otherwise (the caller answers NoSuchUpload).
    async fn completed_already(
        &self,
        c: &Client,
        input: &CompleteMultipartUploadInput,
        wanted: &[CompletedPart],
    ) -> Option<CompleteMultipartUploadOutput> {
        let (path, e) = self.object(c, &input.bucket, &input.key).await.ok()?;
        let tags: Option<Vec<String>> = wanted
            .iter()
            .map(|w| w.e_tag.as_ref().map(|t| t.value().to_string()))
            .collect();
        let tag = multipart_etag(tags?.iter().map(String::as_str));
        let same =
            e.attrs.get(ATTR_COMPLETED_UPLOAD) == Some(&input.upload_id) && etag(&e).value() == tag;
        same.then(|| CompleteMultipartUploadOutput {
            bucket: Some(input.bucket.clone()),
            key: Some(input.key.clone()),
            e_tag: Some(etag(&e)),
            location: Some(path.to_string()),
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
            match c.delete(&p.to_string(), true).await {
                Ok(_) => {}
                Err(e) if e.code() == Some(tonic::Code::NotFound) => {}
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
        let all: Vec<(i32, pb::Entry)> = self
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
            Err(e) if e.code() == Some(tonic::Code::NotFound) => Vec::new(),
            Err(e) => return Err(s3_err(e, Subject::Bucket)),
        };
        let prefix = input.prefix.clone().unwrap_or_default();
        let key_marker = input.key_marker.clone().unwrap_or_default();
        let id_marker = input.upload_id_marker.clone().unwrap_or_default();
        let mut all: Vec<(String, String, pb::Entry)> = entries
            .into_iter()
            .filter(|e| !is_dir(e))
            .filter_map(|e| {
                let key = e.attrs.get(ATTR_UPLOAD_KEY)?.clone();
                Some((key, e.name.clone(), e))
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

/// An UploadPartCopy range, `bytes=FIRST-LAST` (both required, inclusive, within the
/// source).
fn copy_range(text: &str, size: u64) -> S3Result<std::ops::Range<u64>> {
    let bad = || {
        s3_error!(
            InvalidArgument,
            "x-amz-copy-source-range {text:?}: expected bytes=FIRST-LAST within the source"
        )
    };
    let spec = text.strip_prefix("bytes=").ok_or_else(bad)?;
    let (a, b) = spec.split_once('-').ok_or_else(bad)?;
    let first: u64 = a.trim().parse().map_err(|_| bad())?;
    let last: u64 = b.trim().parse().map_err(|_| bad())?;
    if first > last || last >= size {
        return Err(s3_error!(
            InvalidRange,
            "x-amz-copy-source-range {text:?} is outside the source's {size} bytes"
        ));
    }
    Ok(first..last + 1)
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

    #[test]
    fn copy_ranges() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_range("bytes=5-5", 10).unwrap(), 5..6);
        assert!(copy_range("bytes=5-10", 10).is_err());
        assert!(copy_range("bytes=6-5", 10).is_err());
        assert!(copy_range("0-5", 10).is_err());
        assert!(copy_range("bytes=-5", 10).is_err());
    }
}
