//! The S3 operations, each translated into SDK calls on the dfsd namespace.
//!
//! s3s has already checked the SigV4 signature (and decoded aws-chunked bodies) when a
//! method here runs; each method checks what the caller's key may do, maps names with
//! [`mapping`], and streams bodies: PutObject hands the request body to `Client::put` as
//! an `AsyncRead`; GetObject runs `Client::get` on a task writing into a bounded pipe whose
//! other end is the response body. Memory per request is the SDK's (chunks in flight x
//! chunk size) plus the pipe, never the object's size.

use futures::{StreamExt, TryStreamExt};
use s3s::dto::*;
use s3s::{s3_error, S3Request, S3Response, S3Result, S3};
use tokio_util::io::{ReaderStream, StreamReader};

use super::auth::{S3Keys, S3Role};
use super::conditions::{write_cas, ReadConditions};
use super::digest::{check_content_md5, ChecksumAlgo, Md5Reader};
use super::mapping::{
    bucket_path, descriptive_attrs, etag, is_dir, last_modified, object_attrs, object_path, s3_err,
    version_moved, Subject, ATTR_ETAG,
};
use crate::client::{Client, PutOptions, ReadRange};
use crate::path::DfsPath;
use crate::proto::pb;

/// Bytes buffered between a download task and the HTTP response.
const PIPE_BYTES: usize = 256 * 1024;
/// Most of a refused request's body read to keep its connection usable.
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
/// S3's largest single PUT (an object, or one part of a multipart upload).
pub(super) const MAX_PUT_BYTES: i64 = 5 * 1024 * 1024 * 1024;

/// The S3 service: the SDK client (with the gateway's own dfsd key) and the S3 keys.
pub struct DfsS3 {
    pub client: Client,
    pub keys: S3Keys,
    /// What GetBucketLocation answers (`gateway.region`).
    pub region: String,
}

/// The SDK client that acts for the caller of `req`: the coordinator applies the caller's
/// own key (role and prefix) to every call, not the gateway's.
pub(super) fn client_for<T>(s3: &DfsS3, req: &S3Request<T>) -> Client {
    match (&req.credentials, super::acl::anonymous_bucket(req)) {
        (Some(c), _) => s3.client.on_behalf_of(&c.access_key),
        // An anonymous read s3s let through (`acl::AnonymousAccess`): the coordinator
        // allows it only while the bucket is public, read-only, within that bucket.
        (None, Some(bucket)) => s3.client.on_behalf_of(&format!("anonymous:{bucket}")),
        // Anything else unsigned acts for a key nobody has, never with the gateway's
        // permissions.
        (None, None) => s3.client.on_behalf_of("-"),
    }
}

fn role<T>(keys: &S3Keys, req: &S3Request<T>) -> Option<S3Role> {
    req.credentials
        .as_ref()
        .and_then(|c| keys.role(&c.access_key))
}

pub(super) fn require_write<T>(keys: &S3Keys, req: &S3Request<T>) -> S3Result<()> {
    match role(keys, req) {
        Some(S3Role::ReadWrite) => Ok(()),
        _ => Err(s3_error!(AccessDenied, "this access key may not write")),
    }
}

pub(super) fn require_read<T>(keys: &S3Keys, req: &S3Request<T>) -> S3Result<()> {
    match (role(keys, req), super::acl::anonymous_bucket(req)) {
        (Some(_), _) | (None, Some(_)) => Ok(()),
        (None, None) => Err(s3_error!(AccessDenied, "Access Denied")),
    }
}

/// The access key that signed `req` ("" for an anonymous request).
fn caller<T>(req: &S3Request<T>) -> String {
    req.credentials
        .as_ref()
        .map(|c| c.access_key.clone())
        .unwrap_or_default()
}

impl DfsS3 {
    /// The bucket's directory entry, or NoSuchBucket.
    pub(super) async fn bucket(&self, c: &Client, bucket: &str) -> S3Result<DfsPath> {
        let path = bucket_path(bucket)?;
        let e = c
            .stat(&path.to_string())
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        if !is_dir(&e) {
            return Err(s3_error!(NoSuchBucket));
        }
        Ok(path)
    }

    /// The object's file entry, or NoSuchKey (a directory is not an object).
    pub(super) async fn object(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
    ) -> S3Result<(DfsPath, pb::Entry)> {
        let path = object_path(bucket, key)?;
        match c.stat(&path.to_string()).await {
            Ok(e) if !is_dir(&e) => Ok((path, e)),
            Ok(_) => Err(s3_error!(NoSuchKey)),
            Err(e) if e.code() == Some(tonic::Code::NotFound) => {
                // Say NoSuchBucket when it is the bucket that is missing.
                self.bucket(c, bucket).await?;
                Err(s3_error!(NoSuchKey))
            }
            Err(e) => Err(s3_err(e, Subject::Object)),
        }
    }

    /// Everything a PutObject must pass before its body is read: the caller's role, the
    /// key, the bucket, the metadata, and the conditions (turned into atomic commit
    /// options).
    async fn check_put(
        &self,
        c: &Client,
        req: &S3Request<PutObjectInput>,
    ) -> S3Result<(DfsPath, PutOptions)> {
        require_write(&self.keys, req)?;
        let input = &req.input;
        let path = object_path(&input.bucket, &input.key)?;
        self.bucket(c, &input.bucket).await?;
        self.object_acl_allowed(c, &input.bucket, input.acl.as_ref())
            .await?;
        let mut attrs = object_attrs(input.content_type.as_deref(), input.metadata.as_ref())?;
        super::objects::put_headers(input).store(&mut attrs);
        let mut opts = PutOptions {
            attrs,
            ..Default::default()
        };
        self.write_conditions(
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

    /// Turns If-None-Match / If-Match on a write into commit options the coordinator
    /// checks atomically (see [`conditions`](super::conditions)): `no_clobber`, or
    /// `expected_version` (the version whose tag matched now; a write in between moves
    /// the version on and fails the commit).
    pub(super) async fn write_conditions(
        &self,
        c: &Client,
        bucket: &str,
        key: &str,
        if_match: Option<&ETagCondition>,
        if_none_match: Option<&ETagCondition>,
        opts: &mut PutOptions,
    ) -> S3Result<()> {
        if if_match.is_none() && if_none_match.is_none() {
            return Ok(());
        }
        let current = match self.object(c, bucket, key).await {
            Ok((_, e)) => Some(e),
            Err(e) if *e.code() == s3s::S3ErrorCode::NoSuchKey => None,
            Err(e) => return Err(e),
        };
        let cas = write_cas(if_match, if_none_match, current.as_ref())?;
        opts.no_clobber |= cas.no_clobber;
        opts.expected_version = cas.expected_version;
        Ok(())
    }
}

/// What a PutObject or UploadPart body must match before it is committed.
pub(super) struct BodyChecks<'a> {
    /// The declared length (the decoded length of an aws-chunked body).
    pub content_length: Option<i64>,
    /// Content-MD5, base64.
    pub content_md5: Option<&'a str>,
    /// The `x-amz-checksum-*` the caller sent, if any.
    pub checksum: Option<ClientChecksum>,
}

/// A body checksum sent by the caller: in a header, or as an aws-chunked trailer whose
/// value is known once the body has been read.
pub(super) struct ClientChecksum {
    algo: ChecksumAlgo,
    value: ChecksumValue,
}

enum ChecksumValue {
    Header(String),
    Trailer(s3s::TrailingHeaders),
}

impl ClientChecksum {
    /// The checksum a request declares, if any (the first `x-amz-checksum-*` header, else
    /// the one `x-amz-trailer` announces).
    pub(super) fn of<T>(req: &S3Request<T>) -> Option<ClientChecksum> {
        for (name, v) in &req.headers {
            if let (Some(algo), Ok(v)) = (ChecksumAlgo::of_header(name.as_str()), v.to_str()) {
                let value = ChecksumValue::Header(v.to_string());
                return Some(ClientChecksum { algo, value });
            }
        }
        let trailer = req.headers.get("x-amz-trailer")?.to_str().ok()?;
        let algo = ChecksumAlgo::of_header(trailer)?;
        let value = ChecksumValue::Trailer(req.trailing_headers.clone()?);
        Some(ClientChecksum { algo, value })
    }

    /// The value to compare with, once the body has been read.
    fn expected(&self) -> Result<String, String> {
        match &self.value {
            ChecksumValue::Header(v) => Ok(v.clone()),
            ChecksumValue::Trailer(t) => t
                .read(|h| {
                    h.get(self.algo.header())
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_string)
                })
                .flatten()
                .ok_or_else(|| {
                    format!(
                        "the body ended without its announced {} trailer",
                        self.algo.header()
                    )
                }),
        }
    }
}

/// The length the caller declared for a body: an aws-chunked body's decoded length
/// (`x-amz-decoded-content-length`), else Content-Length.
pub(super) fn declared_length(
    headers: &http::HeaderMap,
    content_length: Option<i64>,
) -> Option<i64> {
    headers
        .get("x-amz-decoded-content-length")
        .and_then(|v| v.to_str().ok()?.trim().parse().ok())
        .or(content_length)
}

/// EntityTooLarge for a body declared larger than one PUT may be (S3's 5 GiB).
pub(super) fn too_large(content_length: Option<i64>) -> S3Result<()> {
    match content_length {
        Some(n) if n > MAX_PUT_BYTES => Err(s3_error!(
            EntityTooLarge,
            "{n} bytes in one PUT; at most {MAX_PUT_BYTES} (use a multipart upload)"
        )),
        _ => Ok(()),
    }
}

/// The request body as an `AsyncRead` (an absent body reads as empty).
pub(super) fn body_reader(body: Option<StreamingBlob>) -> impl tokio::io::AsyncRead + Unpin + Send {
    let body = body
        .map(|b| b.map_err(std::io::Error::other).boxed())
        .unwrap_or_else(|| futures::stream::empty().boxed());
    StreamReader::new(body)
}

/// The bytes `range` of `path` (which must still be `version`) as a response body. A
/// task runs the download into a bounded pipe; a failed or version-changed download ends
/// the body with an error rather than a clean short end.
pub(super) fn download(
    c: Client,
    path: DfsPath,
    version: u64,
    range: std::ops::Range<u64>,
) -> impl futures::Stream<Item = std::io::Result<bytes::Bytes>> + Send + Sync + 'static {
    let (mut writer, reader) = tokio::io::duplex(PIPE_BYTES);
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    let p = path.to_string();
    tokio::spawn(async move {
        let read = ReadRange {
            offset: range.start,
            length: Some(range.end - range.start),
        };
        let result = c.get(&p, &mut writer, read).await;
        let outcome = match result {
            Ok(r) if r.entry.version != version => Err(format!(
                "{p}: replaced while being read (version {} -> {})",
                version, r.entry.version
            )),
            Ok(_) => Ok(()),
            Err(e) => Err(e.to_string()),
        };
        match &outcome {
            Ok(()) => {}
            // The caller stopped reading (closed the connection): not a cluster problem.
            Err(e) if e.starts_with("write output") => {
                tracing::debug!(path = %p, error = %e, "caller went away during a download")
            }
            Err(e) => tracing::warn!(path = %p, error = %e, "object download failed"),
        }
        // The pipe must close before the outcome is known downstream.
        drop(writer);
        let _ = done_tx.send(outcome);
    });
    let tail = futures::stream::once(done_rx).filter_map(|r| {
        futures::future::ready(match r {
            Ok(Ok(())) => None,
            Ok(Err(e)) => Some(Err(std::io::Error::other(e))),
            Err(_) => Some(Err(std::io::Error::other("download task ended"))),
        })
    });
    ReaderStream::new(reader).chain(tail)
}

impl DfsS3 {
    /// Stores `reader` at `path`, its MD5 becoming the ETag (checked against
    /// `content_md5` before the commit). Conditional-write refusals become
    /// PreconditionFailed. Returns the entry and the MD5 hex.
    pub(super) async fn put_hashed<R: tokio::io::AsyncRead + Unpin + Send>(
        &self,
        c: &Client,
        reader: &mut R,
        path: &DfsPath,
        opts: &PutOptions,
        body: BodyChecks<'_>,
    ) -> S3Result<pb::Entry> {
        let algo = body.checksum.as_ref().map(|c| c.algo);
        let (mut hashed, md5) = Md5Reader::with_checksum(&mut *reader, algo);
        let (declared, counted) = (body.content_length, md5.clone());
        let finish = move |attrs: &mut crate::meta::Attrs| {
            // A body shorter or longer than declared (after aws-chunked decoding, the
            // decoded length) is not what the caller sent: never store it.
            let got = md5.bytes();
            if let Some(want) = body.content_length.filter(|n| *n as u64 != got) {
                return Err(format!("received {got} bytes of a {want}-byte body"));
            }
            let digest = md5.digest();
            check_content_md5(body.content_md5, &digest)?;
            if let Some(c) = &body.checksum {
                let value = c.expected()?;
                md5.check_checksum(&value)?;
                let name = c.algo.header().trim_start_matches("x-amz-checksum-");
                attrs.insert(format!("{}{name}", super::headers::ATTR_CHECKSUM), value);
            }
            attrs.insert(ATTR_ETAG.into(), hex::encode(digest));
            Ok(())
        };
        let conditional = opts.no_clobber || opts.expected_version.is_some();
        let result = c
            .put_with(&mut hashed, &path.to_string(), opts, finish)
            .await;
        drop(hashed);
        match result {
            Ok(r) => Ok(r.entry),
            // The coordinator's atomic check (at begin and again at commit): the path
            // exists (If-None-Match) or its version moved on (If-Match).
            Err(e)
                if conditional
                    && (e.code() == Some(tonic::Code::AlreadyExists) || version_moved(&e)) =>
            {
                drain(reader).await;
                Err(s3_error!(PreconditionFailed, "{e}"))
            }
            Err(crate::client::ClientError::Refused(why))
                if declared.is_some_and(|n| n as u64 != counted.bytes()) =>
            {
                Err(s3_error!(IncompleteBody, "{why}"))
            }
            Err(e) => {
                drain(reader).await;
                Err(s3_err(e, Subject::Object))
            }
        }
    }

    /// The object a CopySource header names.
    pub(super) async fn copy_source(
        &self,
        c: &Client,
        src: &CopySource,
    ) -> S3Result<(DfsPath, pb::Entry)> {
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
}

/// Reads what is left of a refused request's body, up to [`DRAIN_BYTES`]. A client that
/// sent `Expect: 100-continue` (boto3 does) and got its answer before the body was read
/// keeps the connection; without this, hyper takes the next request for the rest of this
/// body and answers it with a bare 400.
pub(super) async fn drain<R: tokio::io::AsyncRead + Unpin>(r: &mut R) {
    use tokio::io::AsyncReadExt;
    let _ = tokio::io::copy(&mut r.take(DRAIN_BYTES), &mut tokio::io::sink()).await;
}

#[async_trait::async_trait]
impl S3 for DfsS3 {
    async fn list_buckets(
        &self,
        req: S3Request<ListBucketsInput>,
    ) -> S3Result<S3Response<ListBucketsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.list_buckets_impl(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn create_bucket(
        &self,
        req: S3Request<CreateBucketInput>,
    ) -> S3Result<S3Response<CreateBucketOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self
            .create_bucket_impl(&c, &caller(&req), req.input)
            .await?;
        Ok(S3Response::new(out))
    }

    async fn get_bucket_location(
        &self,
        req: S3Request<GetBucketLocationInput>,
    ) -> S3Result<S3Response<GetBucketLocationOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.bucket(&c, &req.input.bucket).await?;
        // us-east-1 is the empty LocationConstraint, as S3 answers.
        let region = (self.region != "us-east-1")
            .then(|| BucketLocationConstraint::from(self.region.clone()));
        Ok(S3Response::new(GetBucketLocationOutput {
            location_constraint: region,
        }))
    }

    async fn get_bucket_acl(
        &self,
        req: S3Request<GetBucketAclInput>,
    ) -> S3Result<S3Response<GetBucketAclOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.get_acl(&c, &req.input.bucket).await?;
        Ok(S3Response::new(out))
    }

    async fn put_bucket_acl(
        &self,
        req: S3Request<PutBucketAclInput>,
    ) -> S3Result<S3Response<PutBucketAclOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_bucket_acl_impl(&c, req.input).await?;
        Ok(S3Response::new(PutBucketAclOutput::default()))
    }

    async fn get_object_acl(
        &self,
        req: S3Request<GetObjectAclInput>,
    ) -> S3Result<S3Response<GetObjectAclOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.find(&c, &req.input.bucket, &req.input.key).await?;
        let acl = self.get_acl(&c, &req.input.bucket).await?;
        Ok(S3Response::new(GetObjectAclOutput {
            grants: acl.grants,
            owner: acl.owner,
            ..Default::default()
        }))
    }

    async fn put_object_acl(
        &self,
        req: S3Request<PutObjectAclInput>,
    ) -> S3Result<S3Response<PutObjectAclOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_object_acl_impl(&c, req.input).await?;
        Ok(S3Response::new(PutObjectAclOutput::default()))
    }

    async fn put_bucket_cors(
        &self,
        req: S3Request<PutBucketCorsInput>,
    ) -> S3Result<S3Response<PutBucketCorsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.put_cors(&c, req.input).await?;
        Ok(S3Response::new(PutBucketCorsOutput::default()))
    }

    async fn get_bucket_cors(
        &self,
        req: S3Request<GetBucketCorsInput>,
    ) -> S3Result<S3Response<GetBucketCorsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.get_cors(&c, &req.input.bucket).await?;
        Ok(S3Response::new(out))
    }

    async fn delete_bucket_cors(
        &self,
        req: S3Request<DeleteBucketCorsInput>,
    ) -> S3Result<S3Response<DeleteBucketCorsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.bucket(&c, &req.input.bucket).await?;
        self.set_cors(&c, &req.input.bucket, String::new()).await?;
        Ok(S3Response::new(DeleteBucketCorsOutput::default()))
    }

    async fn get_object_attributes(
        &self,
        req: S3Request<GetObjectAttributesInput>,
    ) -> S3Result<S3Response<GetObjectAttributesOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = super::objects::attributes(self, c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn head_bucket(
        &self,
        req: S3Request<HeadBucketInput>,
    ) -> S3Result<S3Response<HeadBucketOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.bucket(&c, &req.input.bucket).await?;
        Ok(S3Response::new(HeadBucketOutput::default()))
    }

    async fn delete_bucket(
        &self,
        req: S3Request<DeleteBucketInput>,
    ) -> S3Result<S3Response<DeleteBucketOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let path = self.bucket(&c, &req.input.bucket).await?;
        let not_empty = || {
            s3_error!(
                BucketNotEmpty,
                "The bucket you tried to delete is not empty"
            )
        };
        // Uploads in progress do not keep a bucket alive (as in S3, where deleting the
        // bucket discards them); objects do. Two entries are enough to tell.
        let (entries, _) = c
            .list_page(&path.to_string(), "", 2)
            .await
            .map_err(|e| s3_err(e, Subject::Bucket))?;
        match entries.as_slice() {
            [] => {}
            [only] if only.name == super::mapping::UPLOADS_DIR => {
                c.delete(&only.path, true)
                    .await
                    .map_err(|e| s3_err(e, Subject::Bucket))?;
            }
            _ => return Err(not_empty()),
        }
        match c.delete(&path.to_string(), false).await {
            Ok(_) => {
                tracing::info!(bucket = %req.input.bucket, "bucket deleted");
                Ok(S3Response::new(DeleteBucketOutput {}))
            }
            // Non-recursive delete of a directory refuses only when it is not empty
            // (something arrived since the listing).
            Err(e) if e.code() == Some(tonic::Code::FailedPrecondition) => Err(not_empty()),
            Err(e) => Err(s3_err(e, Subject::Bucket)),
        }
    }

    async fn put_object(
        &self,
        req: S3Request<PutObjectInput>,
    ) -> S3Result<S3Response<PutObjectOutput>> {
        let c = client_for(self, &req);
        // Refused before any byte is read: the caller may be waiting for 100-continue.
        too_large(req.input.content_length)?;
        let declared = declared_length(&req.headers, req.input.content_length);
        if super::markers::is_marker_key(&req.input.key) {
            let out = super::objects::put_marker(self, &c, req, declared).await?;
            return Ok(S3Response::new(out));
        }
        let checked = self.check_put(&c, &req).await;
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
        let entry = self
            .put_hashed(
                &c,
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
        Ok(S3Response::new(PutObjectOutput {
            e_tag: Some(etag(&entry)),
            checksum_crc32: sums.checksum_crc32,
            checksum_crc32c: sums.checksum_crc32c,
            checksum_crc64nvme: sums.checksum_crc64nvme,
            checksum_sha1: sums.checksum_sha1,
            checksum_sha256: sums.checksum_sha256,
            ..Default::default()
        }))
    }

    async fn get_object(
        &self,
        req: S3Request<GetObjectInput>,
    ) -> S3Result<S3Response<GetObjectOutput>> {
        require_read(&self.keys, &req)?;
        if super::acl::anonymous_bucket(&req).is_some()
            && super::objects::overrides_asked(&req.input)
        {
            return Err(s3_error!(
                InvalidRequest,
                "Request specific response headers cannot be used for anonymous GET requests."
            ));
        }
        let c = client_for(self, &req);
        let out = super::objects::get(self, c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn head_object(
        &self,
        req: S3Request<HeadObjectInput>,
    ) -> S3Result<S3Response<HeadObjectOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = super::objects::head(self, c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn copy_object(
        &self,
        req: S3Request<CopyObjectInput>,
    ) -> S3Result<S3Response<CopyObjectOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let input = req.input;
        self.object_acl_allowed(&c, &input.bucket, input.acl.as_ref())
            .await?;
        let (src_path, src) = self.copy_source(&c, &input.copy_source).await?;
        ReadConditions {
            if_match: input.copy_source_if_match.as_ref(),
            if_none_match: input.copy_source_if_none_match.as_ref(),
            if_modified_since: input.copy_source_if_modified_since.as_ref(),
            if_unmodified_since: input.copy_source_if_unmodified_since.as_ref(),
            for_copy: true,
        }
        .check(&src)?;
        let dst = object_path(&input.bucket, &input.key)?;
        self.bucket(&c, &input.bucket).await?;
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
            .compose(pb::ComposeRequest {
                sources: vec![pb::ComposeSource {
                    path: src_path.to_string(),
                    expected_version: Some(src.version),
                }],
                dst: dst.to_string(),
                attrs: attrs.into_iter().collect(),
                ..Default::default()
            })
            .await
            .map_err(|e| match e.code() {
                // The source changed between its checks and the copy.
                _ if version_moved(&e) => {
                    s3_error!(PreconditionFailed, "the copy source changed: {e}")
                }
                _ => s3_err(e, Subject::Object),
            })?;
        tracing::info!(src = %src_path, dst = %dst, size = entry.size, "object copied (chunks shared)");
        Ok(S3Response::new(CopyObjectOutput {
            copy_object_result: Some(CopyObjectResult {
                e_tag: Some(etag(&entry)),
                last_modified: Some(last_modified(&entry)),
                ..Default::default()
            }),
            ..Default::default()
        }))
    }

    async fn delete_object(
        &self,
        req: S3Request<DeleteObjectInput>,
    ) -> S3Result<S3Response<DeleteObjectOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.delete_one(&c, req.input).await?;
        Ok(S3Response::new(DeleteObjectOutput::default()))
    }

    async fn delete_objects(
        &self,
        req: S3Request<DeleteObjectsInput>,
    ) -> S3Result<S3Response<DeleteObjectsOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.delete_many(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects_v2(
        &self,
        req: S3Request<ListObjectsV2Input>,
    ) -> S3Result<S3Response<ListObjectsV2Output>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let signed = super::acl::anonymous_bucket(&req).is_none();
        let out = super::listing::list_v2(self, &c, req.input, signed).await?;
        Ok(S3Response::new(out))
    }

    async fn list_objects(
        &self,
        req: S3Request<ListObjectsInput>,
    ) -> S3Result<S3Response<ListObjectsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let signed = super::acl::anonymous_bucket(&req).is_none();
        let out = super::listing::list_v1(self, &c, req.input, signed).await?;
        Ok(S3Response::new(out))
    }

    async fn create_multipart_upload(
        &self,
        req: S3Request<CreateMultipartUploadInput>,
    ) -> S3Result<S3Response<CreateMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.create_upload(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn upload_part(
        &self,
        req: S3Request<UploadPartInput>,
    ) -> S3Result<S3Response<UploadPartOutput>> {
        let c = client_for(self, &req);
        let allowed = require_write(&self.keys, &req);
        let declared = declared_length(&req.headers, req.input.content_length);
        let checksum = ClientChecksum::of(&req);
        let out = self
            .upload_part_body(&c, allowed, declared, checksum, req.input)
            .await?;
        Ok(S3Response::new(out))
    }

    async fn upload_part_copy(
        &self,
        req: S3Request<UploadPartCopyInput>,
    ) -> S3Result<S3Response<UploadPartCopyOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.upload_part_from_copy(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn complete_multipart_upload(
        &self,
        req: S3Request<CompleteMultipartUploadInput>,
    ) -> S3Result<S3Response<CompleteMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.complete_upload(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn abort_multipart_upload(
        &self,
        req: S3Request<AbortMultipartUploadInput>,
    ) -> S3Result<S3Response<AbortMultipartUploadOutput>> {
        require_write(&self.keys, &req)?;
        let c = client_for(self, &req);
        self.abort_upload(&c, req.input).await?;
        Ok(S3Response::new(AbortMultipartUploadOutput::default()))
    }

    async fn list_parts(
        &self,
        req: S3Request<ListPartsInput>,
    ) -> S3Result<S3Response<ListPartsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.parts(&c, req.input).await?;
        Ok(S3Response::new(out))
    }

    async fn list_multipart_uploads(
        &self,
        req: S3Request<ListMultipartUploadsInput>,
    ) -> S3Result<S3Response<ListMultipartUploadsOutput>> {
        require_read(&self.keys, &req)?;
        let c = client_for(self, &req);
        let out = self.uploads(&c, req.input).await?;
        Ok(S3Response::new(out))
    }
}
