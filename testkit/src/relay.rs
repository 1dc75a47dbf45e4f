//! A loopback TCP relay: the address an in-process server is known by, forwarding to the
//! port the server really bound. Faults are made here, on the network path, without
//! touching the server: a paused relay holds every connection open and moves no bytes (a
//! hung peer), a cut relay closes every connection and refuses new ones (a partition).
//! Restarting the server behind it only changes where the relay forwards to, so the
//! address the cluster knows stays the same.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// What the relay does with traffic.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Open,
    /// Connections stay open (new ones are accepted) but no byte moves either way.
    Paused,
    /// Every connection is closed; new ones are closed as soon as they are accepted.
    Cut,
}

struct Shared {
    mode: watch::Sender<Mode>,
    upstream: Mutex<SocketAddr>,
}

/// A relay on `127.0.0.1:0`; stops when dropped.
pub struct Relay {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
        // Connections in flight end with the mode's channel.
        self.shared.mode.send_replace(Mode::Cut);
    }
}

impl Relay {
    /// Binds a relay forwarding to `upstream`. Call from inside a tokio runtime.
    pub async fn start(upstream: SocketAddr) -> Relay {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            mode: watch::channel(Mode::Open).0,
            upstream: Mutex::new(upstream),
        });
        let task = tokio::spawn(accept(listener, shared.clone()));
        Relay { addr, shared, task }
    }

    /// The address clients dial.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Forwards new connections to `upstream` (a restarted server's new port).
    pub fn set_upstream(&self, upstream: SocketAddr) {
        *self.shared.upstream.lock().unwrap() = upstream;
    }

    pub fn set_mode(&self, mode: Mode) {
        self.shared.mode.send_replace(mode);
    }

    pub fn mode(&self) -> Mode {
        *self.shared.mode.borrow()
    }
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let Ok((down, _)) = listener.accept().await else {
            continue;
        };
        let _ = down.set_nodelay(true);
        tokio::spawn(relay_one(down, shared.clone()));
    }
}

/// Waits until the mode is Open (true) or Cut (false).
async fn until_open(mode: &mut watch::Receiver<Mode>) -> bool {
    match mode.wait_for(|m| *m != Mode::Paused).await {
        Ok(m) => *m == Mode::Open,
        Err(_) => false,
    }
}

async fn relay_one(down: TcpStream, shared: Arc<Shared>) {
    let mut mode = shared.mode.subscribe();
    // A paused relay accepts and holds the connection; a cut one closes it.
    if !until_open(&mut mode).await {
        return;
    }
    let upstream = *shared.upstream.lock().unwrap();
    let Ok(up) = TcpStream::connect(upstream).await else {
        return; // nothing behind the relay: the client sees the connection close
    };
    let _ = up.set_nodelay(true);
    let (down_r, down_w) = down.into_split();
    let (up_r, up_w) = up.into_split();
    tokio::join!(
        pipe(down_r, up_w, shared.mode.subscribe()),
        pipe(up_r, down_w, shared.mode.subscribe()),
    );
}

/// Copies one direction while the mode allows: stops moving bytes while paused, ends
/// (closing its halves) when cut or at end of stream.
async fn pipe(mut from: OwnedReadHalf, mut to: OwnedWriteHalf, mut mode: watch::Receiver<Mode>) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        if !until_open(&mut mode).await {
            return;
        }
        tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => {
                    let _ = to.shutdown().await;
                    return;
                }
                Ok(n) => {
                    if to.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            },
            // Re-check the mode; a read cut short loses nothing (reads are cancel-safe).
            _ = mode.changed() => {}
        }
    }
}
