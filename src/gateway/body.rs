//! Request and response bodies: the declared length and S3's size limit, the body as an
//! `AsyncRead` for the SDK's put (its MD5, Content-MD5 and `x-amz-checksum-*` checked
//! before the commit), draining a refused body, and a download as a response body
//! through a bounded pipe. Memory per request is the SDK's (chunks in flight x chunk
//! size) plus the pipe, never the object's size.

use futures::{StreamExt, TryStreamExt};
use s3s::dto::StreamingBlob;
use s3s::{s3_error, S3Result};
use tokio_util::io::{ReaderStream, StreamReader};

use super::digest::{check_content_md5, ClientChecksum, Md5Reader};
use super::mapping::{s3_err, version_moved, Subject, ATTR_ETAG};
use super::state::DfsS3;
use crate::client::{Client, ClientError, PutOptions, ReadRange};
use crate::model::Entry;
use crate::path::DfsPath;

/// Bytes buffered between a download task and the HTTP response.
const PIPE_BYTES: usize = 256 * 1024;
/// Most of a refused request's body read to keep its connection usable.
const DRAIN_BYTES: u64 = 8 * 1024 * 1024;
/// S3's largest single PUT (an object, or one part of a multipart upload).
pub(super) const MAX_PUT_BYTES: i64 = 5 * 1024 * 1024 * 1024;

/// What a PutObject or UploadPart body must match before it is committed.
pub(super) struct BodyChecks<'a> {
    /// The declared length (the decoded length of an aws-chunked body).
    pub content_length: Option<i64>,
    /// Content-MD5, base64.
    pub content_md5: Option<&'a str>,
    /// The `x-amz-checksum-*` the caller sent, if any.
    pub checksum: Option<ClientChecksum>,
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
        .map(|b| {
            b.map_err(|e| std::io::Error::other(super::mapping::BodyFailed(e)))
                .boxed()
        })
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
    ) -> S3Result<Entry> {
        let algo = body.checksum.as_ref().map(|c| c.algo);
        let (mut hashed, md5) = Md5Reader::with_checksum(&mut *reader, algo);
        let (declared, counted) = (body.content_length, md5.clone());
        let finish = move |attrs: &mut crate::model::Attrs| {
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
                    && (matches!(e, ClientError::AlreadyExists(_)) || version_moved(&e)) =>
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
}

/// Reads what is left of a refused request's body, up to [`DRAIN_BYTES`]. A client that
/// sent `Expect: 100-continue` (boto3 does) and got its answer before the body was read
/// keeps the connection; without this, hyper takes the next request for the rest of this
/// body and answers it with a bare 400.
pub(super) async fn drain<R: tokio::io::AsyncRead + Unpin>(r: &mut R) {
    use tokio::io::AsyncReadExt;
    let _ = tokio::io::copy(&mut r.take(DRAIN_BYTES), &mut tokio::io::sink()).await;
}
