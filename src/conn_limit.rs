//! Bounded public ports: every server (coordinator and datanode gRPC, the S3 gateway)
//! accepts connections through here, so a stranger on the network cannot hold more than a
//! configured share of them, nor hold one for ever by sending nothing.
//!
//! - [`Limiter`] counts open connections, in all and per client IP address. A connection
//!   over either limit is closed as soon as it is accepted (not left in the listen
//!   backlog, where it would still cost the kernel and delay honest clients), and counted
//!   in `dfsd_connections_refused_total{server,reason}`.
//! - [`accept`] sets `TCP_NODELAY` on every accepted socket. tonic applies its own
//!   `tcp_nodelay` only to listeners it binds itself, and ours are bound by the roles (port
//!   0 in tests, `--listen`), so without this every small response waited for Nagle and
//!   the peer's delayed ACK (about 40 ms per round trip).
//! - [`Guarded`] wraps a connection's byte stream: it holds the connection's [`Permit`]
//!   (released when the connection is dropped, whoever owns it), closes a connection whose
//!   peer sends nothing for a while ([`ReadTimeout`]), and one whose peer stops reading
//!   what we write ([`Guarded::with_write_stall`]). It keeps tonic's [`Connected`] info, so
//!   remote addresses and TLS peer certificates still reach the handlers.

use crate::sync::Locked;
use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::{Instant, Sleep};
use tonic::transport::server::Connected;

use crate::metrics::{self, ServerLabels, ServerReasonLabels};

/// Interval of the HTTP/2 pings a gRPC server with read timeout `idle` sends to a silent
/// peer, and how long an answer may take: a third of `idle`, at most 10 s. An honest peer
/// answers, so only one that stalls before or during its handshake, or ignores pings, is
/// cut by the idle timeout.
pub fn grpc_keepalive(idle: Duration) -> Duration {
    (idle / 3).min(Duration::from_secs(10))
}

/// Time a gRPC client gets to complete the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connection limits of one server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    pub total: usize,
    pub per_ip: usize,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Open connections of one server, by client IP address.
pub struct Limiter {
    server: &'static str,
    limits: Limits,
    counts: Mutex<Counts>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    Total,
    PerIp,
}

impl Refused {
    fn as_str(self) -> &'static str {
        match self {
            Refused::Total => "total",
            Refused::PerIp => "per_ip",
        }
    }
}

impl Limiter {
    /// `server` names the series in the metrics (`coordinator`, `datanode`, `s3`).
    pub fn new(server: &'static str, limits: Limits) -> Arc<Limiter> {
        let m = metrics::common();
        // Exported at 0 from the start, so dashboards and tests see the series.
        let _ = m.connections_open.get_or_create(&ServerLabels::of(server));
        for r in [Refused::Total, Refused::PerIp] {
            let _ = m
                .connections_refused
                .get_or_create(&ServerReasonLabels::of(server, r.as_str()));
        }
        Arc::new(Limiter {
            server,
            limits,
            counts: Mutex::default(),
        })
    }

    /// A permit for one more connection from `ip`, unless a limit is reached.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<Permit, Refused> {
        let mut c = self.counts.locked();
        if c.total >= self.limits.total {
            return Err(Refused::Total);
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.limits.per_ip {
            return Err(Refused::PerIp);
        }
        *n += 1;
        c.total += 1;
        metrics::set(
            &metrics::common()
                .connections_open
                .get_or_create(&ServerLabels::of(self.server)),
            c.total as u64,
        );
        Ok(Permit {
            limiter: self.clone(),
            ip,
        })
    }

    /// Open connections now.
    pub fn open(&self) -> usize {
        self.counts.locked().total
    }

    fn release(&self, ip: IpAddr) {
        let mut c = self.counts.locked();
        c.total = c.total.saturating_sub(1);
        if let Some(n) = c.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&ip);
            }
        }
        metrics::set(
            &metrics::common()
                .connections_open
                .get_or_create(&ServerLabels::of(self.server)),
            c.total as u64,
        );
    }
}

/// One admitted connection; dropping it frees its place.
pub struct Permit {
    limiter: Arc<Limiter>,
    ip: IpAddr,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

/// Accepts the next connection within the limits, with `TCP_NODELAY` set. Connections over
/// a limit are closed at once and counted; accept errors (such as running out of file
/// descriptors) are logged and retried after a pause, so the caller only sees admitted
/// connections.
pub async fn accept(
    listener: &TcpListener,
    limiter: &Arc<Limiter>,
) -> (TcpStream, SocketAddr, Permit) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(server = limiter.server, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(peer = %peer, error = %e, "cannot set TCP_NODELAY");
        }
        match limiter.admit(peer.ip()) {
            Ok(permit) => return (stream, peer, permit),
            Err(why) => {
                metrics::common()
                    .connections_refused
                    .get_or_create(&ServerReasonLabels::of(limiter.server, why.as_str()))
                    .inc();
                tracing::debug!(server = limiter.server, peer = %peer, reason = why.as_str(),
                    "connection refused: limit reached");
                drop(stream);
            }
        }
    }
}

/// The admitted connections of `listener`, as the incoming stream of a tonic server: each
/// one closed when it sends nothing for `idle`, and carrying its permit.
pub fn grpc_incoming(
    listener: TcpListener,
    limiter: Arc<Limiter>,
    idle: Duration,
) -> impl Stream<Item = io::Result<Guarded<TcpStream>>> {
    futures::stream::unfold((listener, limiter), move |(listener, limiter)| async move {
        let (stream, _, permit) = accept(&listener, &limiter).await;
        let conn =
            Guarded::new(stream, ReadTimeout::Idle(idle), limiter.server).with_permit(permit);
        Some((Ok(conn), (listener, limiter)))
    })
}

/// When a connection that sends nothing is closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadTimeout {
    /// Never (the protocol above has its own timeouts).
    None,
    /// When nothing at all arrives for this long.
    Idle(Duration),
    /// When the first bytes, enough to tell HTTP/1 from HTTP/2 (the 24-byte HTTP/2
    /// preface, or anything that departs from it), do not arrive within this time of the
    /// connection's start; after them, never. hyper's protocol detection waits for them
    /// without a timeout, and its own header timeout starts only after it.
    Head(Duration),
}

/// The HTTP/2 connection preface.
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's byte stream with its permit and timeouts (see the module docs).
pub struct Guarded<IO> {
    io: IO,
    server: &'static str,
    _permit: Option<Permit>,
    read_timeout: ReadTimeout,
    /// Bytes read so far, up to the end of the HTTP/2 preface (for [`ReadTimeout::Head`]).
    head_read: usize,
    last_read: Instant,
    read_timer: Option<Pin<Box<Sleep>>>,
    write_stall: Option<Duration>,
    /// Armed while a write waits for the peer to read.
    write_timer: Option<Pin<Box<Sleep>>>,
}

impl<IO> Guarded<IO> {
    pub fn new(io: IO, read_timeout: ReadTimeout, server: &'static str) -> Self {
        let now = Instant::now();
        let read_timer = match read_timeout {
            ReadTimeout::None => None,
            ReadTimeout::Idle(d) | ReadTimeout::Head(d) => {
                Some(Box::pin(tokio::time::sleep_until(now + d)))
            }
        };
        Guarded {
            io,
            server,
            _permit: None,
            read_timeout,
            head_read: 0,
            last_read: now,
            read_timer,
            write_stall: None,
            write_timer: None,
        }
    }

    /// Keeps `permit` for as long as the connection lives.
    pub fn with_permit(mut self, permit: Permit) -> Self {
        self._permit = Some(permit);
        self
    }

    /// Fails a write (and so ends the connection) that cannot make progress for `d`
    /// because the peer does not read.
    pub fn with_write_stall(mut self, d: Duration) -> Self {
        self.write_stall = Some(d);
        self
    }

    fn timed_out(&self, what: &'static str) -> io::Error {
        metrics::common()
            .connections_timed_out
            .get_or_create(&ServerReasonLabels::of(self.server, what))
            .inc();
        io::Error::new(
            io::ErrorKind::TimedOut,
            format!("connection {what} timeout"),
        )
    }

    /// Notes the bytes just read in `fresh`.
    fn on_read(&mut self, fresh: &[u8]) {
        self.last_read = Instant::now();
        if let ReadTimeout::Head(_) = self.read_timeout {
            let end = (self.head_read + fresh.len()).min(H2_PREFACE.len());
            let expected = &H2_PREFACE[self.head_read..end];
            let departs = fresh[..end - self.head_read] != *expected;
            self.head_read = end;
            if departs || end == H2_PREFACE.len() {
                // The protocol is known: hyper's own timeouts take over.
                self.read_timeout = ReadTimeout::None;
                self.read_timer = None;
            }
        }
    }

    /// With a read pending: whether the read timeout has passed (re-arming the timer
    /// for an idle timeout that data pushed back).
    fn read_expired(&mut self, cx: &mut Context<'_>) -> bool {
        let Some(timer) = self.read_timer.as_mut() else {
            return false;
        };
        loop {
            if timer.as_mut().poll(cx).is_pending() {
                return false;
            }
            match self.read_timeout {
                ReadTimeout::Idle(d) if self.last_read + d > Instant::now() => {
                    timer.as_mut().reset(self.last_read + d);
                }
                _ => return true,
            }
        }
    }

    /// After a write was polled: arms, disarms or checks the write-stall timer.
    fn write_polled<T>(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let Some(stall) = self.write_stall else {
            return r;
        };
        if r.is_ready() {
            self.write_timer = None;
            return r;
        }
        let timer = self
            .write_timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(stall)));
        if timer.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Err(self.timed_out("write_stall")));
        }
        Poll::Pending
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Guarded<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.on_read(&buf.filled()[before..]);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                if this.read_expired(cx) {
                    let what = match this.read_timeout {
                        ReadTimeout::Head(_) => "head",
                        _ => "idle",
                    };
                    return Poll::Ready(Err(this.timed_out(what)));
                }
                Poll::Pending
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Guarded<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.write_polled(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.write_polled(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let r = Pin::new(&mut self.io).poll_flush(cx);
        self.write_polled(cx, r)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

impl<IO: Connected> Connected for Guarded<IO> {
    type ConnectInfo = IO::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn limits_count_per_ip_and_in_all_and_free_on_drop() {
        let l = Limiter::new(
            "unit",
            Limits {
                total: 3,
                per_ip: 2,
            },
        );
        let a1 = l.admit(ip(1)).unwrap();
        let _a2 = l.admit(ip(1)).unwrap();
        assert_eq!(l.admit(ip(1)).err(), Some(Refused::PerIp));
        let _b1 = l.admit(ip(2)).unwrap();
        assert_eq!(l.admit(ip(3)).err(), Some(Refused::Total));
        assert_eq!(l.open(), 3);
        drop(a1);
        assert_eq!(l.open(), 2);
        let _a3 = l.admit(ip(1)).unwrap();
        assert_eq!(l.admit(ip(2)).err(), Some(Refused::Total));
    }

    #[tokio::test]
    async fn the_head_timeout_ends_once_the_protocol_is_known() {
        let mut g = Guarded::new((), ReadTimeout::Head(Duration::from_secs(1)), "unit");
        g.on_read(b"PRI * HTTP");
        assert_eq!(g.read_timeout, ReadTimeout::Head(Duration::from_secs(1)));
        g.on_read(b"/2.0\r\n\r\nSM\r\n\r\n");
        assert_eq!(g.read_timeout, ReadTimeout::None);
        let mut g = Guarded::new((), ReadTimeout::Head(Duration::from_secs(1)), "unit");
        g.on_read(b"P");
        assert!(
            g.read_timer.is_some(),
            "PUT and the preface both start with P"
        );
        g.on_read(b"UT /b/k HTTP/1.1\r\n");
        assert_eq!(g.read_timeout, ReadTimeout::None);
    }

    #[tokio::test]
    async fn a_silent_peer_is_cut_and_a_talking_one_is_not() {
        let idle = Duration::from_millis(300);
        let (client, server) = tokio::io::duplex(64);
        let mut g = Guarded::new(server, ReadTimeout::Idle(idle), "unit");
        let (mut cr, mut cw) = tokio::io::split(client);
        // A byte every 100 ms: 1.5 s in all, five idle timeouts, and never cut.
        let talker = tokio::spawn(async move {
            for _ in 0..15 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                cw.write_all(b"x").await.unwrap();
            }
            cw
        });
        let mut buf = [0u8; 8];
        for _ in 0..15 {
            assert_eq!(g.read(&mut buf).await.unwrap(), 1);
        }
        let _cw = talker.await.unwrap();
        let quiet = Instant::now();
        let e = g.read(&mut buf).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        assert!(quiet.elapsed() >= idle, "{:?}", quiet.elapsed());
        // A writer whose peer never reads is cut after the stall time.
        let mut g = g.with_write_stall(idle);
        let e = g.write_all(&[0u8; 1024]).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
        let _ = cr.read(&mut buf).await;
    }
}
