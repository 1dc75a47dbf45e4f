//! GetObject and HeadObject (stored headers and `response-*` overrides, `partNumber`,
//! directory markers), PutObject (streamed through the body checks, or a directory
//! marker), and GetObjectAttributes.

use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Result};

use super::body::{body_reader, declared_length, download, drain, too_large, BodyChecks};
use super::conditions::ReadConditions;
use super::digest::ClientChecksum;
use super::headers::{Overrides, StoredHeaders};
use super::mapping::{content_type, etag, last_modified, object_attrs, object_path, user_metadata};
use super::markers;
use super::parts;
use super::state::{anonymous_bucket, require_write, DfsS3};
use crate::client::{Client, PutOptions};
use crate::model::Entry;
use crate::path::DfsPath;

/// The byte range a read asks for, and its Content-Range (None: the whole object).
pub(super) struct Span {
    pub range: std::ops::Range<u64>,
    pub content_range: Option<String>,
    pub parts_count: Option<i32>,
}

/// The span of a read: a part (`partNumber`), a Range, or everything.
pub(super) fn span(e: &Entry, range: Option<Range>, part: Option<i32>) -> S3Result<Span> {
    let size = if e.is_dir() { 0 } else { e.size };
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
fn overrides_asked(i: &GetObjectInput) -> bool {
    i.response_cache_control.is_some()
        || i.response_content_disposition.is_some()
        || i.response_content_encoding.is_some()
        || i.response_content_language.is_some()
        || i.response_content_type.is_some()
        || i.response_expires.is_some()
}

/// GetObject: the object's bytes (a range, or a part) streamed from a download task;
/// `response-*` overrides for signed requests only.
pub(super) async fn get(
    s3: &DfsS3,
    c: Client,
    req: S3Request<GetObjectInput>,
) -> S3Result<GetObjectOutput> {
    if anonymous_bucket(&req).is_some() && overrides_asked(&req.input) {
        return Err(s3_error!(
            InvalidRequest,
            "Request specific response headers cannot be used for anonymous GET requests."
        ));
    }
    let input = req.input;
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
fn put_headers(i: &PutObjectInput) -> StoredHeaders {
    StoredHeaders {
        cache_control: i.cache_control.clone(),
        content_disposition: i.content_disposition.clone(),
        content_encoding: i.content_encoding.clone(),
        content_language: i.content_language.clone(),
        expires: i.expires.clone(),
    }
}

/// Everything a PutObject must pass before its body is read: the caller's role, the
/// key, the bucket, the metadata, and the conditions (turned into atomic commit
/// options).
async fn check_put(
    s3: &DfsS3,
    c: &Client,
    req: &S3Request<PutObjectInput>,
) -> S3Result<(DfsPath, PutOptions)> {
    require_write(&s3.keys, req)?;
    let input = &req.input;
    let path = object_path(&input.bucket, &input.key)?;
    s3.bucket(c, &input.bucket).await?;
    s3.object_acl_allowed(c, &input.bucket, input.acl.as_ref())
        .await?;
    let mut attrs = object_attrs(input.content_type.as_deref(), input.metadata.as_ref())?;
    put_headers(input).store(&mut attrs);
    let mut opts = PutOptions {
        attrs,
        ..Default::default()
    };
    s3.write_conditions(
        c,
        &input.bucket,
        &input.key,
        input.if_match.as_ref(),
        input.if_none_match.as_ref(),
        &mut opts,
    )
    .await?;
    Ok((path, opts))
}

/// PutObject: the body streamed into the SDK's put, its MD5 the ETag, its declared
/// checksum verified and echoed; a key ending in '/' is a directory marker.
pub(super) async fn put(
    s3: &DfsS3,
    c: &Client,
    req: S3Request<PutObjectInput>,
) -> S3Result<PutObjectOutput> {
    // Refused before any byte is read: the caller may be waiting for 100-continue.
    too_large(req.input.content_length)?;
    let declared = declared_length(&req.headers, req.input.content_length);
    if markers::is_marker_key(&req.input.key) {
        return put_marker(s3, c, req, declared).await;
    }
    let checked = check_put(s3, c, &req).await;
    let checksum = ClientChecksum::of(&req);
    let input = req.input;
    let mut reader = body_reader(input.body);
    let (path, opts) = match checked {
        Ok(c) => c,
        Err(e) => {
            drain(&mut reader).await;
            return Err(e);
        }
    };
    let entry = s3
        .put_hashed(
            c,
            &mut reader,
            &path,
            &opts,
            BodyChecks {
                content_length: declared,
                content_md5: input.content_md5.as_deref(),
                checksum,
            },
        )
        .await?;
    tracing::info!(path = %path, size = entry.size, "object stored");
    let sums = super::headers::checksum_fields(&entry);
    Ok(PutObjectOutput {
        e_tag: Some(etag(&entry)),
        checksum_crc32: sums.checksum_crc32,
        checksum_crc32c: sums.checksum_crc32c,
        checksum_crc64nvme: sums.checksum_crc64nvme,
        checksum_sha1: sums.checksum_sha1,
        checksum_sha256: sums.checksum_sha256,
        ..Default::default()
    })
}

/// PutObject of `key/`: a directory marker, whose body must be empty.
async fn put_marker(
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
    let size = if e.is_dir() { 0 } else { e.size };
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
