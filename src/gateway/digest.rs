//! Content digests S3 clients expect: the MD5 ETag of a PutObject or UploadPart body
//! (computed while the body streams through), Content-MD5 checks, the body checksum a
//! request declares (`x-amz-checksum-*`, header or trailer), and the ETag of a completed
//! multipart upload.

use crate::sync::Locked;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine;
use md5::{Digest, Md5};
use s3s::S3Request;
use tokio::io::{AsyncRead, ReadBuf};

/// The MD5 of no bytes: the ETag of an empty object (and of a directory marker).
pub const EMPTY_MD5_HEX: &str = "d41d8cd98f00b204e9800998ecf8427e";

/// The checksums S3 clients may send with a body (`x-amz-checksum-ALGORITHM`, as a
/// header or an aws-chunked trailer), base64 of the big-endian digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumAlgo {
    Crc32,
    Crc32c,
    Crc64Nvme,
    Sha1,
    Sha256,
}

impl ChecksumAlgo {
    const ALL: [ChecksumAlgo; 5] = [
        ChecksumAlgo::Crc32,
        ChecksumAlgo::Crc32c,
        ChecksumAlgo::Crc64Nvme,
        ChecksumAlgo::Sha1,
        ChecksumAlgo::Sha256,
    ];

    pub fn header(self) -> &'static str {
        match self {
            ChecksumAlgo::Crc32 => "x-amz-checksum-crc32",
            ChecksumAlgo::Crc32c => "x-amz-checksum-crc32c",
            ChecksumAlgo::Crc64Nvme => "x-amz-checksum-crc64nvme",
            ChecksumAlgo::Sha1 => "x-amz-checksum-sha1",
            ChecksumAlgo::Sha256 => "x-amz-checksum-sha256",
        }
    }

    /// The algorithm a header (or trailer) name stands for.
    pub fn of_header(name: &str) -> Option<ChecksumAlgo> {
        Self::ALL
            .into_iter()
            .find(|a| a.header().eq_ignore_ascii_case(name.trim()))
    }
}

/// A body checksum sent by the caller: in a header, or as an aws-chunked trailer whose
/// value is known once the body has been read.
pub(super) struct ClientChecksum {
    pub(super) algo: ChecksumAlgo,
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
    pub(super) fn expected(&self) -> Result<String, String> {
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

enum Hasher {
    Crc32(s3s::crypto::Crc32),
    Crc32c(s3s::crypto::Crc32c),
    Crc64Nvme(s3s::crypto::Crc64Nvme),
    Sha1(s3s::crypto::Sha1),
    Sha256(s3s::crypto::Sha256),
}

impl Hasher {
    fn new(a: ChecksumAlgo) -> Hasher {
        use s3s::crypto::Checksum;
        match a {
            ChecksumAlgo::Crc32 => Hasher::Crc32(Checksum::new()),
            ChecksumAlgo::Crc32c => Hasher::Crc32c(Checksum::new()),
            ChecksumAlgo::Crc64Nvme => Hasher::Crc64Nvme(Checksum::new()),
            ChecksumAlgo::Sha1 => Hasher::Sha1(Checksum::new()),
            ChecksumAlgo::Sha256 => Hasher::Sha256(Checksum::new()),
        }
    }

    fn update(&mut self, b: &[u8]) {
        use s3s::crypto::Checksum;
        match self {
            Hasher::Crc32(h) => h.update(b),
            Hasher::Crc32c(h) => h.update(b),
            Hasher::Crc64Nvme(h) => h.update(b),
            Hasher::Sha1(h) => h.update(b),
            Hasher::Sha256(h) => h.update(b),
        }
    }

    fn finalize(self) -> Vec<u8> {
        use s3s::crypto::Checksum;
        match self {
            Hasher::Crc32(h) => h.finalize().to_vec(),
            Hasher::Crc32c(h) => h.finalize().to_vec(),
            Hasher::Crc64Nvme(h) => h.finalize().to_vec(),
            Hasher::Sha1(h) => h.finalize().to_vec(),
            Hasher::Sha256(h) => h.finalize().to_vec(),
        }
    }
}

struct Digests {
    md5: Md5,
    bytes: u64,
    extra: Option<(ChecksumAlgo, Hasher)>,
}

/// An `AsyncRead` that feeds every byte it yields into an MD5 (and, when the caller sent
/// one, the body's `x-amz-checksum-*` algorithm).
pub struct Md5Reader<R> {
    inner: R,
    md5: Arc<Mutex<Digests>>,
}

/// The digests and length of everything an [`Md5Reader`] has yielded, readable once it
/// is done.
#[derive(Clone)]
pub struct Md5Handle(Arc<Mutex<Digests>>);

impl<R: AsyncRead + Unpin> Md5Reader<R> {
    pub fn with_checksum(inner: R, algo: Option<ChecksumAlgo>) -> (Md5Reader<R>, Md5Handle) {
        let md5 = Arc::new(Mutex::new(Digests {
            md5: Md5::new(),
            bytes: 0,
            extra: algo.map(|a| (a, Hasher::new(a))),
        }));
        let handle = Md5Handle(md5.clone());
        (Md5Reader { inner, md5 }, handle)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Md5Reader<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r {
            let fresh = &buf.filled()[before..];
            if !fresh.is_empty() {
                let mut m = self.md5.locked();
                m.md5.update(fresh);
                m.bytes += fresh.len() as u64;
                if let Some((_, h)) = &mut m.extra {
                    h.update(fresh);
                }
            }
        }
        r
    }
}

impl Md5Handle {
    /// The MD5 so far.
    pub fn digest(&self) -> [u8; 16] {
        let md5 = self.0.locked().md5.clone();
        md5.finalize().into()
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.locked().bytes
    }

    /// Checks the body's `x-amz-checksum-*` value (base64) against what was read; call
    /// once, at the end.
    pub fn check_checksum(&self, expected: &str) -> Result<(), String> {
        let extra = self.0.locked().extra.take();
        let Some((algo, h)) = extra else {
            return Ok(());
        };
        let got = base64::engine::general_purpose::STANDARD.encode(h.finalize());
        if got != expected.trim() {
            return Err(format!(
                "{} {expected} does not match the body received ({got})",
                algo.header()
            ));
        }
        Ok(())
    }
}

/// Checks a Content-MD5 header (base64 of the MD5) against the digest of the body.
pub fn check_content_md5(header: Option<&str>, digest: &[u8; 16]) -> Result<(), String> {
    let Some(h) = header else { return Ok(()) };
    let want = base64::engine::general_purpose::STANDARD
        .decode(h.trim())
        .map_err(|_| format!("Content-MD5 {h:?} is not base64"))?;
    if want.as_slice() != digest {
        return Err(format!(
            "Content-MD5 {h} does not match the body received (MD5 {})",
            base64::engine::general_purpose::STANDARD.encode(digest)
        ));
    }
    Ok(())
}

/// A part's ETag as 16 bytes: its MD5 when it is one, else the MD5 of the tag itself (a
/// part copied whole from a multipart object keeps that object's `MD5-N` tag).
fn part_digest(tag: &str) -> [u8; 16] {
    match hex::decode(tag) {
        Ok(b) if b.len() == 16 => b.try_into().expect("16 bytes"),
        _ => Md5::digest(tag.as_bytes()).into(),
    }
}

/// The ETag S3 gives a multipart object: the MD5 of the parts' MD5s, then `-` and the
/// number of parts.
pub fn multipart_etag<'a>(part_tags: impl ExactSizeIterator<Item = &'a str>) -> String {
    let n = part_tags.len();
    let mut md5 = Md5::new();
    for t in part_tags {
        md5.update(part_digest(t));
    }
    format!("{}-{n}", hex::encode(md5.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn md5_of_a_streamed_body_and_content_md5() {
        let (mut r, h) = Md5Reader::with_checksum(&b"hello world"[..], None);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world");
        let d = h.digest();
        assert_eq!(hex::encode(d), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(h.bytes(), 11);
        let (mut r, h) = Md5Reader::with_checksum(&b"abc"[..], Some(ChecksumAlgo::Crc32));
        r.read_to_end(&mut Vec::new()).await.unwrap();
        // CRC32 (IEEE) of "abc" is 0x352441c2.
        assert!(h.check_checksum("NSRBwg==").is_ok());
        let (mut r, h) = Md5Reader::with_checksum(&b"abc"[..], Some(ChecksumAlgo::Crc32));
        r.read_to_end(&mut Vec::new()).await.unwrap();
        assert!(h.check_checksum("AAAAAA==").unwrap_err().contains("crc32"));
        assert_eq!(
            ChecksumAlgo::of_header("X-Amz-Checksum-SHA256"),
            Some(ChecksumAlgo::Sha256)
        );
        assert!(check_content_md5(None, &d).is_ok());
        assert!(check_content_md5(Some("XrY7u+Ae7tCTyyK7j1rNww=="), &d).is_ok());
        let bad = check_content_md5(Some("AAAAAAAAAAAAAAAAAAAAAA=="), &d).unwrap_err();
        assert!(bad.contains("does not match"), "{bad}");
        assert!(check_content_md5(Some("%%%"), &d)
            .unwrap_err()
            .contains("base64"));
    }

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        // Two parts "a" and "b": md5(md5("a") ++ md5("b")) + "-2", as S3 computes it.
        let a = hex::encode(Md5::digest(b"a"));
        let b = hex::encode(Md5::digest(b"b"));
        let mut joined = Vec::new();
        joined.extend_from_slice(&Md5::digest(b"a"));
        joined.extend_from_slice(&Md5::digest(b"b"));
        let want = format!("{}-2", hex::encode(Md5::digest(&joined)));
        assert_eq!(multipart_etag([a.as_str(), b.as_str()].into_iter()), want);
    }
}
