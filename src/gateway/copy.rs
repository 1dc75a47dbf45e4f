//! CopyObject, and the copy source it shares with UploadPartCopy. A copy moves no bytes:
//! the coordinator commits the new object as the source's chunk list in one transaction
//! (Compose), checked at the source version whose conditions were decided.

use s3s::dto::*;
use s3s::{s3_error, S3Result};

use super::conditions::ReadConditions;
use super::mapping::{
    descriptive_attrs, etag, last_modified, object_attrs, object_path, s3_err, version_moved,
    Subject, ATTR_ETAG,
};
use super::state::DfsS3;
use crate::client::Client;
use crate::model::{ComposeRequest, Entry};
use crate::path::DfsPath;

impl DfsS3 {
    /// The object a CopySource header names.
    pub(super) async fn copy_source(
        &self,
        c: &Client,
        src: &CopySource,
    ) -> S3Result<(DfsPath, Entry)> {
        match src {
            CopySource::Bucket {
                bucket,
                key,
                version_id,
            } => {
                if version_id.as_deref().is_some_and(|v| v != "null") {
                    return Err(s3_error!(
                        NotImplemented,
                        "dfsd keeps one version per key: copy sources cannot name a version"
                    ));
                }
                self.object(c, bucket, key).await
            }
            _ => Err(s3_error!(
                NotImplemented,
                "copy sources must be bucket/key (access points are not supported)"
            )),
        }
    }

    /// CopyObject: the source's conditions, the metadata directive (COPY keeps the
    /// source's, REPLACE takes the request's), then one Compose of the source's chunks.
    pub(super) async fn copy(
        &self,
        c: &Client,
        input: CopyObjectInput,
    ) -> S3Result<CopyObjectOutput> {
        self.object_acl_allowed(c, &input.bucket, input.acl.as_ref())
            .await?;
        let (src_path, src) = self.copy_source(c, &input.copy_source).await?;
        ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            for_copy: true,
        }
        .check(&src)?;
        let dst = object_path(&input.bucket, &input.key)?;
        self.bucket(c, &input.bucket).await?;
        let replace = input
            .metadata_directive
            .as_ref()
            .is_some_and(|d| d.as_str() == MetadataDirective::REPLACE);
        if dst == src_path && !replace {
            return Err(s3_error!(
                InvalidRequest,
                "This copy request is illegal because it is trying to copy an object to \
                 itself without changing the object's metadata"
            ));
        }
        let mut attrs = if replace {
            object_attrs(input.content_type.as_deref(), input.metadata.as_ref())?
        } else {
            descriptive_attrs(&src)
        };
        // Same bytes, same tag.
        attrs.insert(ATTR_ETAG.into(), etag(&src).value().to_string());
        let entry = c
            .compose(&ComposeRequest {
                sources: vec![(src_path.clone(), Some(src.version))],
                dst: dst.clone(),
                replication: 0,
                no_clobber: false,
                expected_version: None,
                attrs,
                delete_after: Vec::new(),
            })
            .await
            .map_err(|e| match e {
                // The source changed between its checks and the copy.
                _ if version_moved(&e) => {
                    s3_error!(PreconditionFailed, "the copy source changed: {e}")
                }
                _ => s3_err(e, Subject::Object),
            })?;
        tracing::info!(src = %src_path, dst = %dst, size = entry.size, "object copied (chunks shared)");
        Ok(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&entry)),
                last_modified: Some(last_modified(&entry)),
                ..Default::default()
            }),
            ..Default::default()
        })
    }
}
