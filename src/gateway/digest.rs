//! Content digests S3 clients expect: the MD5 ETag of a PutObject or UploadPart body
//! (computed while the body streams through), Content-MD5 checks, and the ETag of a
//! completed multipart upload.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use base64::Engine;
use md5::{Digest, Md5};
use tokio::io::{AsyncRead, ReadBuf};

/// An `AsyncRead` that feeds every byte it yields into an MD5.
pub struct Md5Reader<R> {
    inner: R,
    md5: Arc<Mutex<(Md5, u64)>>,
}

/// The digest and length of everything an [`Md5Reader`] has yielded, readable once it is
/// done.
#[derive(Clone)]
pub struct Md5Handle(Arc<Mutex<(Md5, u64)>>);

impl<R: AsyncRead + Unpin> Md5Reader<R> {
    pub fn new(inner: R) -> (Md5Reader<R>, Md5Handle) {
        let md5 = Arc::new(Mutex::new((Md5::new(), 0)));
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
                let mut m = self.md5.lock().unwrap_or_else(|p| p.into_inner());
                m.0.update(fresh);
                m.1 += fresh.len() as u64;
            }
        }
        r
    }
}

impl Md5Handle {
    /// The MD5 so far.
    pub fn digest(&self) -> [u8; 16] {
        let md5 = self.0.lock().unwrap_or_else(|p| p.into_inner()).0.clone();
        md5.finalize().into()
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).1
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
        let (mut r, h) = Md5Reader::new(&b"hello world"[..]);
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"hello world");
        let d = h.digest();
        assert_eq!(hex::encode(d), "5eb63bbbe01eeed093cb22bb8f5acdc3");
        assert_eq!(h.bytes(), 11);
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
