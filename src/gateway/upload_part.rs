//! UploadPart and UploadPartCopy: a part is a file of the upload's parts directory
//! (`multipart.rs`), stored through the same body checks as PutObject. A copy of a whole
//! object shares its chunks and keeps its ETag; a byte range is read and stored (chunks
//! that line up are deduplicated by content).

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use super::body::{body_reader, declared_length, download, drain, too_large, BodyChecks};
use super::conditions::ReadConditions;
use super::digest::ClientChecksum;
use super::mapping::{etag, last_modified, s3_err, Subject, ATTR_ETAG};
use super::state::DfsS3;
use crate::client::{Client, PutOptions};
use crate::model::ComposeRequest;

impl DfsS3 {
    /// UploadPart: the body stored as the part's file. `allowed` is the caller's right to
    /// write, decided before and reported after the refused body is drained.
    pub(super) async fn upload_part_body(
        &self,
        c: &Client,
        allowed: S3Result<()>,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<UploadPartOutput> {
        let declared = declared_length(&req.headers, req.input.content_length);
        let checksum = ClientChecksum::of(&req);
        let input = req.input;
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

    /// UploadPartCopy: a whole object's chunks shared, or a byte range read and stored.
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
                c.compose(&ComposeRequest {
                    sources: vec![(src_path.clone(), Some(src.version))],
                    dst: part.clone(),
                    replication: 0,
                    no_clobber: false,
                    expected_version: None,
                    attrs: [(ATTR_ETAG.to_string(), tag)].into(),
                    delete_after: Vec::new(),
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
    fn copy_ranges() {
        assert_eq!(copy_range("bytes=0-9", 10).unwrap(), 0..10);
        assert_eq!(copy_range("bytes=5-5", 10).unwrap(), 5..6);
        assert!(copy_range("bytes=5-10", 10).is_err());
        assert!(copy_range("bytes=6-5", 10).is_err());
        assert!(copy_range("0-5", 10).is_err());
        assert!(copy_range("bytes=-5", 10).is_err());
    }
}
