//! Issue 12, finding 5: bounded public ports against real processes. A slowloris flood
//! (hundreds of connections that send half a request, or nothing, and stall) against the
//! S3 port (HTTPS in secure mode) and against the coordinator's gRPC port: the server's
//! open file descriptors stay bounded by the per-IP limit, every stalled connection is
//! closed by the server within its timeout, and honest clients keep being served.
//!
//! The attacker connects from 127.0.0.2, the cluster and the honest clients from
//! 127.0.0.1, so the per-IP limit is what protects them.

use std::net::SocketAddr;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use testkit::{admin::admin_addr, start_gateway, stderr, wait_until, Opts, TestCluster};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio_rustls::{rustls, TlsConnector};

const FLOOD: usize = 300;
const PER_IP: usize = 40;
/// Descriptors a server may open beyond the flood's share (listeners, logs, the
/// database, connections to peers and honest clients).
const SLACK: usize = 24;

/// Open file descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Samples `pid`'s descriptors every 20 ms until the returned flag is set; the thread
/// returns the largest count seen.
fn watch_fds(pid: u32) -> (Arc<AtomicBool>, std::thread::JoinHandle<usize>) {
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let h = std::thread::spawn(move || {
        let mut max = 0;
        while !s.load(Ordering::Relaxed) {
            max = max.max(fds(pid));
            std::thread::sleep(Duration::from_millis(20));
        }
        max
    });
    (stop, h)
}

/// A TLS client trusting the cluster CA.
fn tls_connector(ca: &str) -> TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    TlsConnector::from(Arc::new(cfg))
}

/// A TCP connection to `target` from the attacker's address.
async fn connect_from_attacker(target: SocketAddr) -> std::io::Result<tokio::net::TcpStream> {
    let sock = tokio::net::TcpSocket::new_v4()?;
    sock.bind("127.0.0.2:0".parse().unwrap())?;
    sock.connect(target).await
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Reads until the server closes the connection (EOF or reset); the time that took, or
/// `None` at the deadline.
async fn until_closed(mut io: Box<dyn Io>, deadline: Duration) -> Option<Duration> {
    let started = Instant::now();
    let mut buf = [0u8; 512];
    let r = tokio::time::timeout(deadline, async {
        loop {
            match io.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    r.ok().map(|()| started.elapsed())
}

/// Waits, side by side, until the server closes each of `open`: how long each took, or
/// `None` for one still open at `deadline`.
async fn all_closed(open: Vec<Box<dyn Io>>, deadline: Duration) -> Vec<Option<Duration>> {
    let waits: Vec<_> = open
        .into_iter()
        .map(|io| tokio::spawn(until_closed(io, deadline)))
        .collect();
    let mut out = Vec::new();
    for w in waits {
        out.push(w.await.unwrap());
    }
    out
}

/// The flood: `FLOOD` connections from the attacker, each completing the TLS handshake
/// (when `tls` is given) and then sending `half(i)` and nothing more. Returns the
/// connections the server took (the others it closed at once).
async fn flood(
    target: SocketAddr,
    tls: Option<(TlsConnector, &'static str)>,
    half: fn(usize) -> &'static [u8],
) -> Vec<Box<dyn Io>> {
    let tasks: Vec<_> = (0..FLOOD)
        .map(|i| {
            let tls = tls.clone();
            tokio::spawn(async move {
                let tcp = connect_from_attacker(target).await.ok()?;
                let mut io: Box<dyn Io> = match tls {
                    Some((connector, name)) => {
                        let name = ServerName::try_from(name.to_string()).unwrap();
                        Box::new(connector.connect(name, tcp).await.ok()?)
                    }
                    None => Box::new(tcp),
                };
                io.write_all(half(i)).await.ok()?;
                io.flush().await.ok()?;
                Some(io)
            })
        })
        .collect();
    let mut open = Vec::new();
    for t in tasks {
        if let Some(io) = t.await.unwrap() {
            open.push(io);
        }
    }
    open
}

fn scrape_value(addr: &str, key: &str) -> f64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).unwrap();
    body.lines()
        .find_map(|l| l.strip_prefix(key)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[test]
fn slowloris_on_the_s3_port_is_bounded_and_cut_at_the_header_timeout() {
    let cluster = TestCluster::start(1);
    let gw = start_gateway(
        &cluster,
        &format!(
            "header_timeout = \"4s\"\nidle_timeout = \"5s\"\nmax_connections = 100\n\
             max_connections_per_ip = {PER_IP}\nadmin_listen = \"127.0.0.1:0\""
        ),
    );
    let admin = admin_addr(&cluster, "gateway");
    wait_until("the gateway's admin port", Duration::from_secs(10), || {
        std::net::TcpStream::connect(&admin).is_ok()
    });
    let pid = gw.child.id();
    let baseline = fds(pid);
    let target: SocketAddr = gw.addr.parse().unwrap();
    let tls = cluster
        .secure
        .as_ref()
        .map(|s| (tls_connector(&s.ca()), "localhost"));
    // Half of the attackers send half a request head, the others nothing at all.
    fn half(i: usize) -> &'static [u8] {
        if i.is_multiple_of(2) {
            b"GET /bucket/key HTTP/1.1\r\nHost: s3\r\nx-amz-date: 2026"
        } else {
            b""
        }
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop, watcher) = watch_fds(pid);
    let started = Instant::now();
    let open = rt.block_on(flood(target, tls.clone(), half));
    let flooded_in = started.elapsed();

    // Meanwhile an honest S3 client from 127.0.0.1 is served.
    let honest = cluster.create_key("honest", "readwrite", "/");
    let served = |bucket: &str| {
        let Some(mut py) = boto3_client_script(&cluster, &gw.endpoint, &honest, bucket) else {
            return;
        };
        let out = py.output().unwrap();
        assert!(out.status.success(), "honest S3 client: {}", stderr(&out));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "served");
    };
    served("during");

    // Every stalled connection is closed by the server at the header timeout.
    let n_open = open.len();
    let closed = rt.block_on(all_closed(open, Duration::from_secs(30)));
    stop.store(true, Ordering::Relaxed);
    let max_fds = watcher.join().unwrap();
    let slowest = closed.iter().flatten().max().copied();
    eprintln!(
        "S3 flood: {FLOOD} connections in {flooded_in:?}, {n_open} taken, fds {baseline} -> max \
         {max_fds}, slowest close {slowest:?}"
    );
    assert!(
        closed.iter().all(Option::is_some),
        "{} stalled connections still open after 30 s",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(
        max_fds <= baseline + PER_IP + SLACK,
        "the gateway held {max_fds} descriptors (baseline {baseline}, limit {PER_IP})"
    );
    let refused = scrape_value(
        &admin,
        "dfsd_connections_refused_total{server=\"s3\",reason=\"per_ip\"}",
    );
    if flooded_in < Duration::from_secs(3) {
        // Every connection came before any timed out: the per-IP limit decided. (Only
        // a TLS handshake proves admission: a refused plain connection can still take
        // the attacker's first write.)
        assert!(refused >= (FLOOD - PER_IP) as f64, "refused {refused}");
        if tls.is_some() {
            assert!(n_open <= PER_IP, "{n_open} connections admitted");
        }
    }
    let silent_cut = scrape_value(
        &admin,
        "dfsd_connections_timed_out_total{server=\"s3\",reason=\"head\"}",
    );
    assert!(
        silent_cut >= 1.0,
        "silent connections are cut by the head timeout"
    );
    // And afterwards too.
    served("after");
}

/// A python3 command that, with boto3, creates `bucket`, puts an object and prints what
/// it reads back; `None` without boto3 (the check is then skipped, saying so).
fn boto3_client_script(
    cluster: &TestCluster,
    endpoint: &str,
    key: &(String, String),
    bucket: &str,
) -> Option<Command> {
    if !testkit::python_has_boto3() {
        println!("SKIPPED: the honest S3 client needs python3 with boto3");
        return None;
    }
    let mut cmd = Command::new("python3");
    cmd.arg("-c")
        .arg(
            "import os, boto3\n\
             from botocore.config import Config\n\
             c = boto3.client('s3', endpoint_url=os.environ['EP'], region_name='us-east-1',\n\
               aws_access_key_id=os.environ['K'], aws_secret_access_key=os.environ['S'],\n\
               verify=os.environ.get('CA') or None,\n\
               config=Config(s3={'addressing_style': 'path'}, retries={'max_attempts': 1}))\n\
             b = os.environ['B']\n\
             c.create_bucket(Bucket=b)\n\
             c.put_object(Bucket=b, Key='k', Body=b'served')\n\
             print(c.get_object(Bucket=b, Key='k')['Body'].read().decode())\n",
        )
        .env("EP", endpoint)
        .env("K", &key.0)
        .env("S", &key.1)
        .env("B", bucket)
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_CA_BUNDLE");
    if let Some(s) = &cluster.secure {
        cmd.env("CA", s.ca());
    }
    Some(cmd)
}

#[test]
fn slowloris_on_the_coordinator_port_is_bounded_and_the_cluster_keeps_serving() {
    let c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        env: vec![
            (
                "DFSD_COORDINATOR__MAX_CONNECTIONS_PER_IP".into(),
                PER_IP.to_string(),
            ),
            ("DFSD_COORDINATOR__IDLE_TIMEOUT".into(), "3s".into()),
        ],
    });
    let pid = c.coordinator.as_ref().unwrap().pid();
    let baseline = fds(pid);
    let target: SocketAddr = c
        .coordinator_addr
        .trim_start_matches("http://")
        .parse()
        .unwrap();
    // Half the HTTP/2 preface in plaintext; in TLS mode the attackers do not even
    // finish the handshake: half a TLS record header, then nothing.
    let secure = c.secure.is_some();
    fn half_preface(_: usize) -> &'static [u8] {
        b"PRI * HTTP/2.0\r\n"
    }
    fn half_hello(_: usize) -> &'static [u8] {
        b"\x16\x03\x01"
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop, watcher) = watch_fds(pid);
    let started = Instant::now();
    let open = rt.block_on(flood(
        target,
        None,
        if secure { half_hello } else { half_preface },
    ));
    let flooded_in = started.elapsed();

    // The cluster keeps serving: a put and a get from 127.0.0.1 during the flood.
    let dir = tempfile::tempdir().unwrap();
    let data = testkit::random_bytes(200_000, 12);
    let local = dir.path().join("in");
    std::fs::write(&local, &data).unwrap();
    let out = c.cli(&["put", "-q", local.to_str().unwrap(), "/flood/file"]);
    assert!(
        out.status.success(),
        "put during the flood: {}",
        stderr(&out)
    );
    let back = dir.path().join("back");
    let out = c.cli(&["get", "-q", "/flood/file", back.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "get during the flood: {}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&back).unwrap(), data);

    let n_open = open.len();
    let closed = rt.block_on(all_closed(open, Duration::from_secs(30)));
    stop.store(true, Ordering::Relaxed);
    let max_fds = watcher.join().unwrap();
    eprintln!(
        "gRPC flood: {FLOOD} connections in {flooded_in:?}, {n_open} still open after the \
         writes, fds {baseline} -> max {max_fds}, slowest close {:?}",
        closed.iter().flatten().max()
    );
    assert!(
        closed.iter().all(Option::is_some),
        "{} stalled connections still open after 30 s",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(
        max_fds <= baseline + PER_IP + SLACK,
        "the coordinator held {max_fds} descriptors (baseline {baseline}, limit {PER_IP})"
    );
    // Still serving after the flood, through a fresh connection.
    let out = c.cli(&["stat", "/flood/file"]);
    assert!(out.status.success(), "{}", stderr(&out));
    // The datanode was never cut off: it is alive.
    c.wait_alive(1);
}

#[test]
fn slowloris_on_the_admin_port_is_bounded_and_scrapes_keep_working() {
    // The admin port's limits are fixed (16 per IP, 10 s for a request head): see
    // src/admin_http.rs.
    const ADMIN_PER_IP: usize = 16;
    let c = TestCluster::start_with(Opts {
        nodes: 1,
        replication: 1,
        env: vec![(
            "DFSD_COORDINATOR__ADMIN_LISTEN".into(),
            "127.0.0.1:0".into(),
        )],
    });
    let admin = admin_addr(&c, "coordinator");
    let pid = c.coordinator.as_ref().unwrap().pid();
    let baseline = fds(pid);
    let target: SocketAddr = admin.parse().unwrap();
    fn half_request(_: usize) -> &'static [u8] {
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n"
    }

    let rt = tokio::runtime::Runtime::new().unwrap();
    let (stop, watcher) = watch_fds(pid);
    let open = rt.block_on(flood(target, None, half_request));
    // Scrapes from another address keep being answered during the flood.
    let refused = scrape_value(
        &admin,
        "dfsd_connections_refused_total{server=\"admin\",reason=\"per_ip\"}",
    );
    assert!(
        refused >= (FLOOD - ADMIN_PER_IP) as f64,
        "the admin port refused {refused} of {FLOOD} flood connections (limit {ADMIN_PER_IP} per IP)"
    );
    let closed = rt.block_on(all_closed(open, Duration::from_secs(30)));
    stop.store(true, Ordering::Relaxed);
    let max_fds = watcher.join().unwrap();
    eprintln!(
        "admin flood: fds {baseline} -> max {max_fds}, {} held, slowest close {:?}",
        closed.len(),
        closed.iter().flatten().max()
    );
    assert!(
        closed.iter().all(Option::is_some),
        "{} half-sent requests still open after 30 s",
        closed.iter().filter(|c| c.is_none()).count()
    );
    assert!(
        max_fds <= baseline + ADMIN_PER_IP + SLACK,
        "the coordinator held {max_fds} descriptors (baseline {baseline}, limit {ADMIN_PER_IP})"
    );
    // Every flood connection is gone: only the scrape itself is open.
    wait_until(
        "the admin port to hold only the scrape's connection",
        Duration::from_secs(10),
        || scrape_value(&admin, "dfsd_connections_open{server=\"admin\"}") == 1.0,
    );
}
