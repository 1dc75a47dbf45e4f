//! Progress of a transfer as events: the SDK reports bytes as they move and the caller
//! renders them as it likes (the CLI draws a bar).

use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, ReadBuf};

/// One step of a transfer's progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// The bytes the transfer will move, once known: the size of the local file of a put,
    /// the length of a download's range (known from the file's entry).
    Total(u64),
    /// This many more bytes were read from the input (put) or written out (get).
    Advanced(u64),
}

/// Where a transfer reports its progress.
pub type OnProgress<'a> = &'a (dyn Fn(Progress) + Sync);

/// A reader that reports every byte it yields as [`Progress::Advanced`].
pub(super) struct Counted<'a, R> {
    pub(super) inner: R,
    pub(super) on_progress: OnProgress<'a>,
}

impl<R: AsyncRead + Unpin> AsyncRead for Counted<'_, R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len() - before;
        if read > 0 {
            (self.on_progress)(Progress::Advanced(read as u64));
        }
        poll
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tokio::io::AsyncReadExt;

    use super::*;

    #[tokio::test]
    async fn a_counted_reader_reports_every_byte_it_yields() {
        let seen = Mutex::new(Vec::new());
        let on = |p: Progress| seen.lock().unwrap().push(p);
        let data = vec![7u8; 10_000];
        let mut r = Counted {
            inner: &data[..],
            on_progress: &on,
        };
        let mut out = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let n = r.read(&mut buf).await.unwrap();
            if n == 0 {
                break;
            }
            out.extend_from_slice(&buf[..n]);
        }
        assert_eq!(out, data);
        let seen = seen.into_inner().unwrap();
        assert_eq!(
            seen,
            [4096, 4096, 1808].map(Progress::Advanced).to_vec(),
            "one event per read that yielded bytes, none at the end"
        );
    }
}
