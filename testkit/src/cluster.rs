//! TestCluster: a real dfsd cluster for integration tests and benchmarks. The coordinator
//! and every datanode are separate `dfsd` processes on 127.0.0.1 with their own temporary
//! data directories, so tests can SIGKILL and restart them. Each server binds port 0 and
//! the harness reads the address from its log; a restarted server takes its old address
//! back (the others know it). Every wait is a condition polled against a deadline.
//!
//! Clusters are secure by default: TLS with certificates from a per-cluster CA and access
//! keys on every call, as in production. `DFSD_TEST_SECURITY=plaintext` runs the same
//! tests against plaintext servers without authentication (the `dfsd dev` mode); CI runs
//! the core suite both ways.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use dfsd::client::Client;
use dfsd::config::{ClientConfig, TlsConfig};
use dfsd::coordinator::secrets::SecretsFile;
use dfsd::proto::pb;
use dfsd::security::token::TokenKey;
use dfsd::security::{certs, Role, Tls};

use crate::procs::spawn_server;
use crate::{bin, stderr, wait_until};

/// Short timeouts so failure handling shows within seconds.
#[derive(Clone, Debug)]
pub struct Opts {
    pub nodes: usize,
    pub replication: u32,
    pub env: Vec<(String, String)>,
}

impl Default for Opts {
    fn default() -> Self {
        Opts {
            nodes: 3,
            replication: 3,
            env: Vec::new(),
        }
    }
}

pub struct Proc {
    child: Child,
    pub addr: String,
    pub log: PathBuf,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

/// Certificates and the admin key of a secure test cluster.
#[derive(Clone, Debug)]
pub struct Secure {
    pub certs: PathBuf,
    pub key_id: String,
    pub secret: String,
}

impl Secure {
    pub fn ca(&self) -> String {
        self.certs.join("ca.pem").display().to_string()
    }

    pub fn pem(&self, name: &str) -> (String, String) {
        (
            self.certs.join(format!("{name}.pem")).display().to_string(),
            self.certs.join(format!("{name}.key")).display().to_string(),
        )
    }

    /// TLS material for an SDK client (no client certificate).
    pub fn tls(&self) -> Tls {
        Tls::load(&TlsConfig {
            ca: self.ca(),
            ..TlsConfig::default()
        })
        .unwrap()
        .unwrap()
    }

    /// TLS material presenting the certificate `name`.
    pub fn tls_as(&self, name: &str) -> Tls {
        let (cert, key) = self.pem(name);
        Tls::load(&TlsConfig {
            ca: self.ca(),
            cert,
            key,
            plaintext: false,
        })
        .unwrap()
        .unwrap()
    }
}

/// Adds an access key to every call of a raw client.
#[derive(Clone)]
pub struct Creds(pub Option<(String, String)>);

impl tonic::service::Interceptor for Creds {
    fn call(&mut self, mut r: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some((id, secret)) = &self.0 {
            r.metadata_mut()
                .insert("x-dfsd-key-id", id.parse().unwrap());
            r.metadata_mut()
                .insert("x-dfsd-secret", secret.parse().unwrap());
        }
        Ok(r)
    }
}

pub type RawCoordinator = pb::coordinator_client::CoordinatorClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Creds>,
>;

/// True unless `DFSD_TEST_SECURITY=plaintext`.
pub fn secure_mode() -> bool {
    std::env::var("DFSD_TEST_SECURITY").map_or(true, |v| v != "plaintext")
}

pub struct TestCluster {
    pub dir: tempfile::TempDir,
    /// `None` in plaintext mode.
    pub secure: Option<Secure>,
    pub opts: Opts,
    pub coordinator: Option<Proc>,
    pub coordinator_addr: String,
    pub nodes: Vec<Option<Proc>>,
    node_addrs: Vec<String>,
}

impl TestCluster {
    pub fn start(nodes: usize) -> TestCluster {
        Self::start_with(Opts {
            nodes,
            replication: 3.min(nodes as u32),
            ..Opts::default()
        })
    }

    pub fn start_with(opts: Opts) -> TestCluster {
        let dir = tempfile::Builder::new()
            .prefix("dfsd-test-")
            .tempdir()
            .unwrap();
        let secure = secure_mode().then(|| {
            let certs = dir.path().join("certs");
            certs::init_ca(&certs, 1).unwrap();
            certs::issue(&certs, Role::Coordinator, "coordinator", &[], 1).unwrap();
            certs::issue(&certs, Role::Node, "node", &[], 1).unwrap();
            certs::issue(&certs, Role::Client, "client", &[], 1).unwrap();
            // S3 clients of tests dial the gateway at 127.0.0.1 or localhost.
            let sans = ["localhost".to_string(), "127.0.0.1".to_string()];
            certs::issue(&certs, Role::Gateway, "gateway", &sans, 1).unwrap();
            Secure {
                certs,
                key_id: "DKTESTADMIN000000000".into(),
                secret: format!("test-secret-{}", rand::random::<u64>()),
            }
        });
        let mut c = TestCluster {
            dir,
            secure,
            coordinator: None,
            coordinator_addr: String::new(),
            nodes: (0..opts.nodes).map(|_| None).collect(),
            node_addrs: vec![String::new(); opts.nodes],
            opts,
        };
        c.start_coordinator();
        for i in 0..c.opts.nodes {
            c.start_node(i);
        }
        c.wait_alive(c.opts.nodes);
        c.wait_serving();
        c
    }

    /// Waits until every running datanode has its token key (which arrives just after the
    /// coordinator lists it as alive): a read of an absent chunk gets NotFound, not
    /// Unavailable.
    pub fn wait_serving(&self) {
        let key = self.token_key();
        let probe = dfsd::chunk::ChunkId::of(b"readiness probe");
        let token = key.sign(
            dfsd::security::token::Op::Read,
            &[probe],
            Duration::from_secs(60),
        );
        let tls = self.client_tls().map(|t| t.client(Role::Node));
        for p in self.nodes.iter().flatten() {
            wait_until(
                "datanode ready for chunk requests",
                Duration::from_secs(20),
                || {
                    let (addr, tls, token) = (p.addr.clone(), tls.clone(), token.clone());
                    std::thread::spawn(move || {
                        let rt = tokio::runtime::Builder::new_current_thread()
                            .enable_all()
                            .build()
                            .unwrap();
                        rt.block_on(async move {
                            let ch =
                                dfsd::net::channel(&addr, Duration::from_secs(3), tls).unwrap();
                            let r = pb::datanode_client::DatanodeClient::new(ch)
                                .read_chunk(pb::ReadChunkRequest {
                                    chunk_id: probe.to_hex(),
                                    token,
                                })
                                .await;
                            matches!(r, Err(e) if e.code() == tonic::Code::NotFound)
                        })
                    })
                    .join()
                    .unwrap()
                },
            );
        }
    }

    /// TLS and credentials for a CLI process of this cluster.
    pub fn client_env(&self, cmd: &mut Command) {
        cmd.env_remove("DFSD_COORDINATOR")
            .env_remove("DFSD_CONFIG")
            .env_remove("DFSD_LOG_LEVEL")
            .env_remove("DFSD_ROLE")
            .env_remove("DFSD_ACCESS_KEY")
            .env_remove("DFSD_SECRET_KEY")
            .env_remove("DFSD_TLS__CA");
        if let Some(s) = &self.secure {
            cmd.env("DFSD_TLS__CA", s.ca())
                .env("DFSD_ACCESS_KEY", &s.key_id)
                .env("DFSD_SECRET_KEY", &s.secret);
        }
    }

    /// A `dfsd` command aimed at this cluster, with its TLS settings and admin key.
    pub fn cli_command(&self) -> Command {
        let mut cmd = Command::new(bin());
        self.client_env(&mut cmd);
        cmd.arg("--coordinator").arg(&self.coordinator_addr);
        cmd
    }

    fn security_env(&self, cmd: &mut Command, cert: &str) {
        match &self.secure {
            Some(s) => {
                let (c, k) = s.pem(cert);
                cmd.env("DFSD_TLS__CA", s.ca())
                    .env("DFSD_TLS__CERT", c)
                    .env("DFSD_TLS__KEY", k)
                    .env("DFSD_COORDINATOR__ADMIN_KEY_ID", &s.key_id)
                    .env("DFSD_COORDINATOR__ADMIN_SECRET", &s.secret);
            }
            None => {
                cmd.env("DFSD_TLS__PLAINTEXT", "true")
                    .env("DFSD_COORDINATOR__AUTH", "false");
            }
        }
    }

    fn base_env(&self, cmd: &mut Command) {
        cmd.env_remove("DFSD_COORDINATOR")
            .env_remove("DFSD_CONFIG")
            .env_remove("DFSD_ROLE")
            .env("DFSD_LOG_LEVEL", "info")
            .env("DFSD_COORDINATOR__HEARTBEAT_INTERVAL", "500ms")
            .env("DFSD_COORDINATOR__SUSPECT_AFTER", "2s")
            .env("DFSD_COORDINATOR__DEAD_AFTER", "5s")
            .env(
                "DFSD_COORDINATOR__REPLICATION",
                self.opts.replication.to_string(),
            )
            .env("DFSD_DATANODE__RESERVE", "0");
    }

    /// The command the harness runs for a server of this cluster with `args` (the role
    /// first), with its environment and the certificate of its role.
    pub fn server_command(&self, args: &[String]) -> Command {
        let mut cmd = Command::new(bin());
        self.base_env(&mut cmd);
        // The certificate of the role this process runs.
        self.security_env(
            &mut cmd,
            if args[0] == "coordinator" {
                "coordinator"
            } else {
                "node"
            },
        );
        for (k, v) in &self.opts.env {
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd
    }

    /// Starts a server with the arguments `mk_args(listen address)`: on port 0 the first
    /// time, on `fixed` (its old address) after a restart.
    fn start_server(
        &self,
        mk_args: impl Fn(&str) -> Vec<String>,
        log: PathBuf,
        fixed: Option<&str>,
    ) -> Proc {
        let listen = fixed.unwrap_or("127.0.0.1:0");
        let what = log.file_stem().unwrap().to_string_lossy().into_owned();
        let (child, addr) = spawn_server(|| self.server_command(&mk_args(listen)), &log, &what);
        Proc {
            child,
            addr: format!("http://{addr}"),
            log,
        }
    }

    pub fn coordinator_dir(&self) -> PathBuf {
        self.dir.path().join("coordinator")
    }

    pub fn start_coordinator(&mut self) {
        let data = self.coordinator_dir();
        let fixed = if self.coordinator_addr.is_empty() {
            None
        } else {
            Some(
                self.coordinator_addr
                    .trim_start_matches("http://")
                    .to_string(),
            )
        };
        let p = self.start_server(
            |addr| {
                vec![
                    "coordinator".into(),
                    "--listen".into(),
                    addr.into(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ]
            },
            self.dir.path().join("coordinator.log"),
            fixed.as_deref(),
        );
        self.coordinator_addr = p.addr.clone();
        self.coordinator = Some(p);
    }

    pub fn node_dir(&self, i: usize) -> PathBuf {
        self.dir.path().join(format!("node-{i}"))
    }

    pub fn start_node(&mut self, i: usize) {
        let data = self.node_dir(i);
        let join = self.coordinator_addr.clone();
        let fixed = if self.node_addrs[i].is_empty() {
            None
        } else {
            Some(self.node_addrs[i].trim_start_matches("http://").to_string())
        };
        let p = self.start_server(
            |addr| {
                vec![
                    "datanode".into(),
                    "--join".into(),
                    join.clone(),
                    "--listen".into(),
                    addr.into(),
                    "--data-dir".into(),
                    data.display().to_string(),
                ]
            },
            self.dir.path().join(format!("node-{i}.log")),
            fixed.as_deref(),
        );
        self.node_addrs[i] = p.addr.clone();
        self.nodes[i] = Some(p);
    }

    /// SIGKILLs datanode `i` and reaps it.
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut p) = self.nodes[i].take() {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
    }

    pub fn kill_coordinator(&mut self) {
        if let Some(mut p) = self.coordinator.take() {
            p.child.kill().unwrap();
            p.child.wait().unwrap();
        }
    }

    pub fn client_config(&self) -> ClientConfig {
        let (access_key, secret_key) = match &self.secure {
            Some(s) => (s.key_id.clone(), s.secret.clone()),
            None => Default::default(),
        };
        ClientConfig {
            coordinator: self.coordinator_addr.clone(),
            access_key,
            secret_key,
            ..ClientConfig::default()
        }
    }

    /// TLS material for clients of this cluster (`None` in plaintext mode).
    pub fn client_tls(&self) -> Option<Tls> {
        self.secure.as_ref().map(Secure::tls)
    }

    /// An SDK client with the admin key; call from inside a tokio runtime.
    pub fn client(&self) -> Client {
        Client::connect(&self.client_config(), self.client_tls().as_ref()).unwrap()
    }

    /// A raw gRPC channel to `addr` (a member of this cluster, of role `role`), over TLS
    /// in secure mode, presenting the certificate `as_cert` if given.
    pub fn raw_channel(
        &self,
        addr: &str,
        role: Role,
        as_cert: Option<&str>,
    ) -> tonic::transport::Channel {
        let tls = self.secure.as_ref().map(|s| match as_cert {
            Some(name) => s.tls_as(name).client(role),
            None => s.tls().client(role),
        });
        dfsd::net::channel(addr, Duration::from_secs(3), tls).unwrap()
    }

    /// A raw Coordinator-service client with the admin key (as the SDK would send it).
    pub fn raw_coordinator(&self) -> RawCoordinator {
        let creds = self
            .secure
            .as_ref()
            .map(|s| (s.key_id.clone(), s.secret.clone()));
        self.raw_coordinator_with(creds, None)
    }

    /// A raw Coordinator-service client with the given credentials and certificate.
    pub fn raw_coordinator_with(
        &self,
        creds: Option<(String, String)>,
        as_cert: Option<&str>,
    ) -> RawCoordinator {
        let ch = self.raw_channel(&self.coordinator_addr, Role::Coordinator, as_cert);
        pb::coordinator_client::CoordinatorClient::with_interceptor(ch, Creds(creds))
    }

    /// The coordinator's secrets file (token key, S3 seal key, join secret).
    pub fn secrets(&self) -> SecretsFile {
        let path = self
            .coordinator_dir()
            .join(dfsd::coordinator::secrets::FILE_NAME);
        SecretsFile::read(&path)
            .unwrap()
            .expect("the coordinator's secrets file")
    }

    /// The key chunk tokens are signed with, read from the coordinator's secrets file
    /// (tests use it to make requests a client could not).
    pub fn token_key(&self) -> TokenKey {
        self.secrets().token_key().unwrap()
    }

    /// Every datanode as the coordinator lists it (id and address).
    pub fn node_addrs(&self) -> Vec<pb::NodeAddr> {
        self.node_infos()
            .into_iter()
            .map(|n| pb::NodeAddr {
                node_id: n.node_id.to_string(),
                addr: n.addr,
                public_addr: String::new(),
            })
            .collect()
    }

    /// A write header as a client gets to send it: a token for `id` that names every
    /// datanode of the cluster as a target (so any of them may be written to or forwarded
    /// to), owned by the admin key.
    pub fn write_header(
        &self,
        id: dfsd::chunk::ChunkId,
        size: u64,
        downstream: Vec<pb::NodeAddr>,
    ) -> pb::WriteChunkRequest {
        let targets = self.node_addrs();
        let owner = self
            .secure
            .as_ref()
            .map(|s| s.key_id.clone())
            .unwrap_or_default();
        let scope = dfsd::security::token::WriteScope {
            owner: &owner,
            targets: targets
                .iter()
                .map(|t| (t.node_id.as_str(), t.addr.as_str()))
                .collect(),
        };
        let token = self
            .token_key()
            .sign_write(id, &scope, Duration::from_secs(600));
        pb::WriteChunkRequest {
            msg: Some(pb::write_chunk_request::Msg::Header(pb::WriteChunkHeader {
                chunk_id: id.to_hex(),
                size,
                downstream,
                token,
                owner,
                targets,
            })),
        }
    }

    /// Runs the CLI against this cluster.
    pub fn cli(&self, args: &[&str]) -> Output {
        self.cli_stdin(args, None)
    }

    pub fn cli_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut cmd = self.cli_command();
        cmd.args(args);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        if stdin.is_some() {
            cmd.stdin(Stdio::piped());
        } else {
            cmd.stdin(Stdio::null());
        }
        let mut child = cmd.spawn().unwrap();
        if let Some(data) = stdin {
            use std::io::Write;
            let mut s = child.stdin.take().unwrap();
            let data = data.to_vec();
            std::thread::spawn(move || {
                let _ = s.write_all(&data);
            });
        }
        child.wait_with_output().unwrap()
    }

    /// Creates an access key with the CLI (admin key): (id, secret).
    pub fn create_key(&self, name: &str, role: &str, prefix: &str) -> (String, String) {
        let out = self.cli(&[
            "key", "create", "--name", name, "--role", role, "--prefix", prefix, "--json",
        ]);
        assert!(out.status.success(), "key create: {}", stderr(&out));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        (
            v["key_id"].as_str().unwrap().to_string(),
            v["secret"].as_str().unwrap().to_string(),
        )
    }

    /// Revokes an access key with the CLI (admin key).
    pub fn revoke_key(&self, id: &str) {
        let out = self.cli(&["key", "revoke", id]);
        assert!(out.status.success(), "key revoke: {}", stderr(&out));
    }

    /// Node list through the SDK, on a throwaway runtime in its own thread (so it works
    /// from sync tests and from inside async ones).
    pub fn node_infos(&self) -> Vec<dfsd::model::NodeInfo> {
        let cfg = self.client_config();
        let tls = self.client_tls();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move { Client::connect(&cfg, tls.as_ref()).unwrap().nodes().await })
                .unwrap_or_default()
        })
        .join()
        .unwrap()
    }

    pub fn wait_alive(&self, n: usize) {
        wait_until(
            &format!("{n} alive datanodes"),
            Duration::from_secs(30),
            || {
                self.node_infos()
                    .iter()
                    .filter(|n| n.state == Some(dfsd::model::NodeState::Alive))
                    .count()
                    >= n
            },
        );
    }

    /// Chunk files stored by datanode `i` (under chunks/).
    pub fn chunk_files(&self, i: usize) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.node_dir(i).join("chunks")];
        while let Some(d) = stack.pop() {
            let Ok(rd) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in rd {
                let p = e.unwrap().path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// The datanode index holding a replica of `chunk_id`.
    pub fn holders(&self, chunk_id: &str) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|&i| {
                self.chunk_files(i)
                    .iter()
                    .any(|p| p.file_name().unwrap() == chunk_id)
            })
            .collect()
    }

    pub fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("{name}.log"))).unwrap_or_default()
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        for p in self
            .nodes
            .iter_mut()
            .flatten()
            .chain(self.coordinator.iter_mut())
        {
            let _ = p.child.kill();
            let _ = p.child.wait();
        }
    }
}

/// A `dfsd gateway` process; killed on drop.
pub struct Gateway {
    pub child: Child,
    /// host:port
    pub addr: String,
    pub endpoint: String,
    pub log: std::path::PathBuf,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Gateway {
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

/// Starts a gateway for `cluster` with 1 MiB chunks (so test objects span several chunks)
/// and `settings` in its `[gateway]` section, and waits until it serves (on port 0; the address is read from its log). In
/// secure mode it has the cluster's gateway certificate (for the coordinator and for
/// HTTPS on the S3 port) and no access key.
pub fn start_gateway(cluster: &TestCluster, settings: &str) -> Gateway {
    let dir = cluster.dir.path();
    let config = dir.join("gateway.toml");
    std::fs::write(&config, format!("[gateway]\n{settings}\n")).unwrap();
    let log = dir.join("gateway.log");
    let scheme = if cluster.secure.is_some() {
        "https"
    } else {
        "http"
    };
    let mk_cmd = || {
        // The cluster's CA and admin key, as for any client of it.
        let mut cmd = cluster.cli_command();
        match &cluster.secure {
            Some(s) => {
                let (cert, key) = s.pem("gateway");
                // No dfsd key: with TLS the gateway's certificate lets it act for each
                // S3 caller, with that caller's permissions, and it needs none of its own.
                cmd.env("DFSD_TLS__CERT", cert)
                    .env("DFSD_TLS__KEY", key)
                    .env_remove("DFSD_ACCESS_KEY")
                    .env_remove("DFSD_SECRET_KEY");
            }
            None => {
                cmd.arg("--plaintext");
            }
        }
        cmd.env("DFSD_LOG_LEVEL", "info")
            .env("DFSD_CLIENT__CHUNK_SIZE", "1MiB")
            .arg("--config")
            .arg(&config)
            .args(["gateway", "--listen", "127.0.0.1:0"]);
        cmd
    };
    let (child, addr) = spawn_server(mk_cmd, &log, "gateway");
    Gateway {
        child,
        endpoint: format!("{scheme}://{addr}"),
        addr,
        log,
    }
}

/// The gRPC code a typed SDK error stands for, so tests written against codes keep
/// asserting exactly what they did.
pub fn grpc_code(e: &dfsd::client::ClientError) -> Option<tonic::Code> {
    use dfsd::client::ClientError as E;
    use tonic::Code;
    Some(match e {
        E::NotFound(_) | E::UploadGone(_) => Code::NotFound,
        E::AlreadyExists(_) => Code::AlreadyExists,
        E::VersionMismatch { .. }
        | E::QuorumNotMet(_)
        | E::NotADirectory(_)
        | E::IsADirectory(_)
        | E::NotEmpty(_)
        | E::Precondition(_) => Code::FailedPrecondition,
        E::PermissionDenied(_) => Code::PermissionDenied,
        E::NotAuthenticated(_) => Code::Unauthenticated,
        E::Rejected(_) => Code::InvalidArgument,
        E::LimitExceeded(_) => Code::ResourceExhausted,
        E::Unavailable(_) | E::Unreachable { .. } => Code::Unavailable,
        E::Aborted(_) => Code::Aborted,
        E::Server(_) => Code::Internal,
        E::Integrity(_) => Code::DataLoss,
        E::InvalidPath(_) | E::Io { .. } | E::Invalid(_) | E::Refused(_) | E::Malformed(_) => {
            return None
        }
    })
}
