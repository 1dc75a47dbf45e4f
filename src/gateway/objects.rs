//! GetObject and HeadObject (stored headers and `response-*` overrides, `partNumber`,
//! directory markers), and PutObject of a directory marker.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use super::conditions::ReadConditions;
use super::headers::{Overrides, StoredHeaders};
use super::mapping::{content_type, etag, last_modified, object_attrs, user_metadata};
use super::markers;
use super::parts;
use super::s3::{body_reader, download, drain, require_write, DfsS3};
use crate::client::Client;
use crate::path::DfsPath;
use crate::proto::pb;

/// An object as a read sees it: a file, or a marked directory (an empty object).
pub(super) struct Found {
    /// `None` for a directory marker (nothing to download).
    pub path: Option<DfsPath>,
    pub entry: pb::Entry,
}

/// The byte range a read asks for, and its Content-Range (None: the whole object).
pub(super) struct Span {
    pub range: std::ops::Range<u64>,
    pub content_range: Option<String>,
    pub parts_count: Option<i32>,
}

impl DfsS3 {
    pub(super) async fn find(&self, c: &Client, bucket: &str, key: &str) -> S3Result<Found> {
        if markers::is_marker_key(key) {
            self.bucket(c, bucket).await?;
            let entry = markers::get(c, bucket, key).await?;
            return Ok(Found { path: None, entry });
        }
        let (path, entry) = self.object(c, bucket, key).await?;
        Ok(Found {
            path: Some(path),
            entry,
        })
    }
}

/// The span of a read: a part (`partNumber`), a Range, or everything.
pub(super) fn span(e: &pb::Entry, range: Option<Range>, part: Option<i32>) -> S3Result<Span> {
    let size = if super::mapping::is_dir(e) { 0 } else { e.size };
    if let Some(n) = part {
        if range.is_some() {
            return Err(s3_error!(
                InvalidRequest,
                "Cannot specify both Range header and partNumber query parameter"
            ));
        }
        let (r, count) = parts::part_range(e, size, n)?;
        let content_range = Some(format!(
            "bytes {}-{}/{size}",
            r.start,
            r.end.saturating_sub(1)
        ));
        return Ok(Span {
            range: r,
            content_range,
            parts_count: count,
        });
    }
    let parts_count = parts::count(e);
    match range {
        None => Ok(Span {
            range: 0..size,
            content_range: None,
            parts_count,
        }),
        Some(r) => {
            let span = r.check(size).map_err(|_| s3_error!(InvalidRange))?;
            let text = format!("bytes {}-{}/{size}", span.start, span.end.saturating_sub(1));
            Ok(Span {
                range: span,
                content_range: Some(text),
                parts_count,
            })
        }
    }
}

fn read_conditions<'a>(
    if_match: Option<&'a ETagCondition>,
    if_none_match: Option<&'a ETagCondition>,
    if_modified_since: Option<&'a Timestamp>,
    if_unmodified_since: Option<&'a Timestamp>,
) -> ReadConditions<'a> {
    ReadConditions {
        if_match,
        if_none_match,
        if_modified_since,
        if_unmodified_since,
        for_copy: false,
    }
}

/// Whether a GetObject asks for `response-*` overrides (S3 allows them only to signed
/// requests).
pub(super) fn overrides_asked(i: &GetObjectInput) -> bool {
    i.response_cache_control.is_some()
        || i.response_content_disposition.is_some()
        || i.response_content_encoding.is_some()
        || i.response_content_language.is_some()
        || i.response_content_type.is_some()
        || i.response_expires.is_some()
}

pub(super) async fn get(s3: &DfsS3, c: Client, input: GetObjectInput) -> S3Result<GetObjectOutput> {
    let found = s3.find(&c, &input.bucket, &input.key).await?;
    let e = &found.entry;
    read_conditions(
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    )
    .check(e)?;
    let sp = span(e, input.range, input.part_number)?;
    let overrides = Overrides {
        cache_control: input.response_cache_control,
        content_disposition: input.response_content_disposition,
        content_encoding: input.response_content_encoding,
        content_language: input.response_content_language,
        content_type: input.response_content_type,
        expires: input.response_expires,
    };
    let (h, ctype) = overrides.apply(StoredHeaders::of(e), content_type(e));
    let len = sp.range.end - sp.range.start;
    let body = match (&found.path, len) {
        (Some(p), n) if n > 0 => StreamingBlob::wrap(download(c, p.clone(), e.version, sp.range)),
        _ => StreamingBlob::from(s3s::Body::empty()),
    };
    Ok(GetObjectOutput {
        body: Some(body),
        content_length: Some(len as i64),
        content_range: sp.content_range,
        parts_count: sp.parts_count,
        accept_ranges: Some("bytes".into()),
        content_type: Some(ctype),
        cache_control: h.cache_control,
        content_disposition: h.content_disposition,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        expires: h.expires,
        metadata: user_metadata(e),
        e_tag: Some(etag(e)),
        last_modified: Some(last_modified(e)),
        ..Default::default()
    })
}

pub(super) async fn head(
    s3: &DfsS3,
    c: Client,
    input: HeadObjectInput,
) -> S3Result<HeadObjectOutput> {
    let found = s3.find(&c, &input.bucket, &input.key).await?;
    let e = &found.entry;
    read_conditions(
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        input.if_modified_since.as_ref(),
        input.if_unmodified_since.as_ref(),
    )
    .check(e)?;
    let sp = span(e, input.range, input.part_number)?;
    let h = StoredHeaders::of(e);
    Ok(HeadObjectOutput {
        content_length: Some((sp.range.end - sp.range.start) as i64),
        content_range: sp.content_range,
        parts_count: sp.parts_count,
        accept_ranges: Some("bytes".into()),
        content_type: Some(content_type(e)),
        cache_control: h.cache_control,
        content_disposition: h.content_disposition,
        content_encoding: h.content_encoding,
        content_language: h.content_language,
        expires: h.expires,
        metadata: user_metadata(e),
        e_tag: Some(etag(e)),
        last_modified: Some(last_modified(e)),
        ..Default::default()
    })
}

/// The stored headers a PutObject carries.
pub(super) fn put_headers(i: &PutObjectInput) -> StoredHeaders {
    StoredHeaders {
        cache_control: i.cache_control.clone(),
        content_disposition: i.content_disposition.clone(),
        content_encoding: i.content_encoding.clone(),
        content_language: i.content_language.clone(),
        expires: i.expires.clone(),
    }
}

/// PutObject of `key/`: a directory marker, whose body must be empty.
pub(super) async fn put_marker(
    s3: &DfsS3,
    c: &Client,
    req: S3Request<PutObjectInput>,
    declared: Option<i64>,
) -> S3Result<PutObjectOutput> {
    let allowed = require_write(&s3.keys, &req);
    let input = req.input;
    let mut attrs = object_attrs(input.content_type.as_deref(), input.metadata.as_ref());
    if let Ok(a) = &mut attrs {
        put_headers(&input).store(a);
    }
    let mut reader = body_reader(input.body);
    let mut first = [0u8; 1];
    let got = tokio::io::AsyncReadExt::read(&mut reader, &mut first).await;
    let non_empty = declared.is_some_and(|n| n > 0) || got.is_ok_and(|n| n > 0);
    if non_empty {
        drain(&mut reader).await;
        return Err(s3_error!(
            InvalidArgument,
            "{:?} ends in '/': such a key is a directory marker and takes an empty body",
            input.key
        ));
    }
    allowed?;
    s3.bucket(c, &input.bucket).await?;
    let entry = markers::put(c, &input.bucket, &input.key, attrs?).await?;
    tracing::info!(bucket = %input.bucket, key = %input.key, "directory marker stored");
    Ok(PutObjectOutput {
        e_tag: Some(etag(&entry)),
        ..Default::default()
    })
}

/// GetObjectAttributes: ETag, size, storage class, the verified checksum, and the parts
/// of a multipart object (sizes when recorded).
pub(super) async fn attributes(
    s3: &DfsS3,
    c: Client,
    input: GetObjectAttributesInput,
) -> S3Result<GetObjectAttributesOutput> {
    let found = s3.find(&c, &input.bucket, &input.key).await?;
    let e = &found.entry;
    // One header, `x-amz-object-attributes: ETag,ObjectSize`, may arrive as one item.
    let want = |a: &str| {
        (input.object_attributes.iter())
            .flat_map(|x| x.as_str().split(','))
            .any(|x| x.trim() == a)
    };
    let size = if super::mapping::is_dir(e) { 0 } else { e.size };
    let mut out = GetObjectAttributesOutput {
        last_modified: Some(last_modified(e)),
        ..Default::default()
    };
    if want("ETag") {
        out.e_tag = Some(etag(e));
    }
    if want("ObjectSize") {
        out.object_size = Some(size as i64);
    }
    if want("StorageClass") {
        out.storage_class = Some(StorageClass::from_static(StorageClass::STANDARD));
    }
    if want("Checksum") && super::headers::checksum(e).is_some() {
        out.checksum = Some(super::headers::checksum_fields(e));
    }
    if want("ObjectParts") {
        out.object_parts = parts::listing(e, input.part_number_marker, input.max_parts);
    }
    Ok(out)
}
