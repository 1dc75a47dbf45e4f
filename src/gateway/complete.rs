//! CompleteMultipartUpload: one Compose call on the coordinator. The new object's chunk
//! list is the parts' chunk lists joined in order, each part checked at the version whose
//! ETag matched, and the upload's marker and parts are deleted in the same transaction.
//! No byte is read or copied. A repeated Complete answers the same success while the
//! object it made is unchanged, as S3 does.

use s3s::dto::*;
use s3s::{s3_error, S3Error, S3Result};

use super::digest::multipart_etag;
use super::mapping::{etag, object_path, s3_err, Subject, ATTR_ETAG};
use super::multipart::ATTR_UPLOAD_KEY;
use super::state::DfsS3;
use crate::client::{Client, ClientError, PutOptions};
use crate::model::Attrs;
use crate::model::{ComposeRequest, Entry};
use crate::path::DfsPath;

/// The completed object's attribute naming the upload it came from (a repeated
/// CompleteMultipartUpload answers the same success while the object is unchanged).
const ATTR_COMPLETED_UPLOAD: &str = "s3-upload-id";
/// S3's limit: every part but the last at least 5 MiB.
const MIN_PART_BYTES: u64 = 5 * 1024 * 1024;

/// The parts a Complete joins, in order: what Compose reads, their ETags and sizes.
#[derive(Debug, Default)]
struct Joined {
    /// Each part's path with the version it must still have.
    sources: Vec<(DfsPath, Option<u64>)>,
    tags: Vec<String>,
    sizes: Vec<u64>,
}

/// Checks the parts a Complete lists against those `stored` (by part number): listed
/// once each in ascending order, uploaded, with the ETag the caller names, and every part
/// but the last at least 5 MiB.
fn join(wanted: &[CompletedPart], stored: &[(i32, Entry)]) -> S3Result<Joined> {
    let mut out = Joined::default();
    let mut prev = 0;
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
        out.sizes.push(e.size);
        out.sources.push((e.path.clone(), Some(e.version)));
        out.tags.push(tag.value().to_string());
    }
    Ok(out)
}

/// The completed object's attributes: the marker's (Content-Type, user metadata, stored
/// headers), the multipart ETag, the upload id and the part layout.
fn completed_attrs(marker: Attrs, joined: &Joined, upload_id: &str) -> Attrs {
    let mut attrs: Attrs = marker
        .into_iter()
        .filter(|(k, _)| k != ATTR_UPLOAD_KEY)
        .collect();
    let tag = multipart_etag(joined.tags.iter().map(String::as_str));
    attrs.insert(ATTR_ETAG.into(), tag);
    attrs.insert(ATTR_COMPLETED_UPLOAD.into(), upload_id.to_string());
    if let Some(layout) = super::parts::encode(&joined.sizes) {
        attrs.insert(super::parts::ATTR_PARTS.into(), layout);
    }
    attrs
}

/// A refused Compose as S3 answers it: the destination's condition failed
/// (PreconditionFailed), or a part changed since it was checked (InvalidPart).
fn compose_error(e: ClientError, dst_text: &str) -> S3Error {
    let text = e.to_string();
    match &e {
        ClientError::AlreadyExists(_) => {
            s3_error!(PreconditionFailed, "If-None-Match: {text}")
        }
        ClientError::VersionMismatch { path, .. } => {
            if path == dst_text {
                s3_error!(PreconditionFailed, "If-Match: {text}")
            } else {
                s3_error!(InvalidPart, "a part was replaced meanwhile: {text}")
            }
        }
        _ => s3_err(e, Subject::Object),
    }
}

impl DfsS3 {
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
        let joined = join(&wanted, &self.part_entries(c, &up).await?)?;
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
        let attrs = completed_attrs(marker.attrs, &joined, &input.upload_id);
        let dst_text = dst.to_string();
        let parts = joined.tags.len();
        let entry = c
            .compose(&ComposeRequest {
                sources: joined.sources,
                dst: dst.clone(),
                replication: 0,
                no_clobber: opts.no_clobber,
                expected_version: opts.expected_version,
                attrs,
                delete_after: vec![up.marker.clone(), up.parts_dir.clone()],
            })
            .await
            .map_err(|e| compose_error(e, &dst_text))?;
        tracing::info!(path = %dst, size = entry.size, parts, "multipart upload completed");
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
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(n: i32, size: u64, tag: &str) -> (i32, Entry) {
        let e = Entry {
            path: crate::path::DfsPath::parse(&format!("/b/.dfsd-uploads/u.parts/{n:05}")).unwrap(),
            size,
            version: 7,
            attrs: [(ATTR_ETAG.to_string(), tag.to_string())].into(),
            ..Entry::new(
                crate::path::DfsPath::parse("/b/o").unwrap(),
                crate::model::Kind::File,
            )
        };
        (n, e)
    }

    fn listed(n: i32, tag: Option<&str>) -> CompletedPart {
        CompletedPart {
            part_number: Some(n),
            e_tag: tag.map(|t| ETag::Strong(t.to_string())),
            ..Default::default()
        }
    }

    #[test]
    fn parts_join_in_order_with_their_tags_and_sizes() {
        let big = MIN_PART_BYTES;
        let parts = [
            stored(1, big, "aa"),
            stored(2, big, "bb"),
            stored(3, 1, "cc"),
        ];
        let j = join(&[listed(1, Some("aa")), listed(3, None)], &parts).unwrap();
        assert_eq!(j.tags, ["aa", "cc"]);
        assert_eq!(j.sizes, [big, 1]);
        let paths: Vec<_> = j.sources.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/b/.dfsd-uploads/u.parts/00001",
                "/b/.dfsd-uploads/u.parts/00003"
            ]
        );
        assert!(j.sources.iter().all(|s| s.1 == Some(7)));
        let attrs = completed_attrs(
            [(ATTR_UPLOAD_KEY.to_string(), "k".to_string())].into(),
            &j,
            "u1",
        );
        assert!(!attrs.contains_key(ATTR_UPLOAD_KEY));
        assert_eq!(attrs[ATTR_COMPLETED_UPLOAD], "u1");
        assert_eq!(attrs[ATTR_ETAG], multipart_etag(["aa", "cc"].into_iter()));
    }

    #[test]
    fn parts_out_of_order_missing_mismatched_or_small_are_refused() {
        let big = MIN_PART_BYTES;
        let parts = [
            stored(1, big - 1, "aa"),
            stored(2, big, "bb"),
            stored(3, 1, "cc"),
        ];
        let code = |wanted: &[CompletedPart]| {
            let e = join(wanted, &parts).unwrap_err();
            e.code().as_str().to_string()
        };
        assert_eq!(
            code(&[listed(2, None), listed(2, None)]),
            "InvalidPartOrder"
        );
        assert_eq!(
            code(&[listed(2, None), listed(1, None)]),
            "InvalidPartOrder"
        );
        assert_eq!(code(&[listed(4, None)]), "InvalidPart");
        assert_eq!(code(&[listed(2, Some("xx"))]), "InvalidPart");
        assert_eq!(code(&[listed(1, None), listed(2, None)]), "EntityTooSmall");
        // The last part may be small.
        join(&[listed(2, None), listed(3, None)], &parts).unwrap();
    }
}
