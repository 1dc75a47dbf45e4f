//! Configuration: defaults < TOML file (`--config`) < `DFSD_*` environment < command-line
//! flags, merged by figment into [`Config`], then checked by [`Config::validate`].
//!
//! Environment keys map onto the file's sections with `__`: `DFSD_COORDINATOR__REPLICATION=2`
//! sets `coordinator.replication`. `DFSD_COORDINATOR` alone is the address clients use
//! (`client.coordinator`), as the command line documents.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};

use crate::chunk::{DEFAULT_CHUNK_SIZE, MAX_CHUNK_SIZE};
use crate::units::{serde_duration, serde_size};

/// Port the coordinator listens on by default, and the address `dfsd dev` serves.
pub const DEFAULT_COORDINATOR_ADDR: &str = "http://127.0.0.1:7070";

/// What [`Config::redacted`] shows instead of a secret.
pub const REDACTED: &str = "<redacted>";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Log filter, in `RUST_LOG` syntax (`info`, `dfsd=debug`, ...).
    pub log_level: String,
    pub coordinator: CoordinatorConfig,
    pub datanode: DatanodeConfig,
    pub client: ClientConfig,
    pub tls: TlsConfig,
    /// Log output: "text" (readable) or "json" (one object per line).
    pub log_format: String,
    pub gateway: GatewayConfig,
}

/// TLS for every gRPC connection. Servers need `ca`, `cert` and `key` (from `dfsd cert
/// init` and `dfsd cert issue`) unless `plaintext` is chosen explicitly; clients need
/// `ca` to use TLS, and `cert`/`key` only if they want to present a client certificate.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// PEM file of the cluster CA.
    pub ca: String,
    /// PEM file of this process's certificate.
    pub cert: String,
    /// PEM file of its private key.
    pub key: String,
    /// Serve without TLS: no encryption, and cluster members are not authenticated.
    /// For `dfsd dev` and trusted test networks only; logged as a warning.
    pub plaintext: bool,
}

impl TlsConfig {
    pub fn enabled(&self) -> bool {
        !self.ca.is_empty()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// Address the gRPC server binds.
    pub listen: String,
    /// Where the SQLite metadata lives.
    pub data_dir: PathBuf,
    /// Replicas per chunk unless a put asks otherwise.
    pub replication: u32,
    /// Durable replicas a chunk needs before its file may commit; 0 = the replication factor.
    pub write_quorum: u32,
    /// How often datanodes heartbeat.
    #[serde(with = "serde_duration")]
    pub heartbeat_interval: Duration,
    /// A node not heard from for this long gets no new writes.
    #[serde(with = "serde_duration")]
    pub suspect_after: Duration,
    /// A node not heard from for this long is dead: its replicas no longer count.
    #[serde(with = "serde_duration")]
    pub dead_after: Duration,
    /// An upload neither committed nor aborted within this time is forgotten (a client
    /// still at it begins a new one and carries on); receipts of stored chunks stay valid
    /// this long after their token expired.
    #[serde(with = "serde_duration")]
    pub upload_ttl: Duration,
    /// An upload that placed no chunk for this long is taken as abandoned (its client
    /// died): it is dropped, and its chunks lose their protection from garbage collection.
    #[serde(with = "serde_duration")]
    pub upload_idle_timeout: Duration,
    /// Uploads one access key may have open at once.
    pub max_uploads_per_key: usize,
    /// Chunks the open uploads of one access key may place in all (coordinator memory).
    pub max_upload_chunks_per_key: usize,
    /// Largest chunk a client may send.
    #[serde(with = "serde_size")]
    pub max_chunk_size: u64,
    /// SQLite `synchronous` setting: "full" (default, durable on power loss) or "normal".
    pub sqlite_synchronous: String,
    /// Unreferenced chunks are deleted this long after their last use.
    #[serde(with = "serde_duration")]
    pub gc_grace: Duration,
    /// After a restart, no repair and no deletion until datanodes holding this share of
    /// the known replicas have sent their inventories...
    pub safe_mode_share: f64,
    /// ...or this long has passed.
    #[serde(with = "serde_duration")]
    pub safe_mode_timeout: Duration,
    /// How often the repair, trim and GC loop runs (it also runs on events).
    #[serde(with = "serde_duration")]
    pub maintenance_interval: Duration,
    /// Concurrent chunk copies a datanode may receive for repairs.
    pub repair_per_node: usize,
    /// Concurrent chunk copies in the whole cluster.
    pub repair_total: usize,
    /// Require an access key on every client call (off only for `dfsd dev`).
    pub auth: bool,
    /// How long a chunk token the coordinator signs stays valid.
    #[serde(with = "serde_duration")]
    pub token_ttl: Duration,
    /// The first admin key, created when the database is new. Empty: one is generated
    /// and printed once on the coordinator's standard output.
    pub admin_key_id: String,
    pub admin_secret: String,
    /// Admin HTTP address (metrics, status page), e.g. 0.0.0.0:9070; empty = off.
    pub admin_listen: String,
    /// Cluster events kept in the metadata database for late readers of `dfsd events`.
    pub events_kept: u32,
    /// Without TLS and with `auth` on, datanodes must prove they know this secret on every
    /// cluster call (it never crosses the wire). Empty: one is generated at the first start
    /// that needs it, kept in the secrets file and printed once on standard output.
    pub join_secret: String,
    /// The file holding the cluster's secrets (the chunk-token key, the S3 seal key, a
    /// generated join secret), mode 0600, kept apart from the database so that a copy of
    /// the database alone reveals no secret. Empty: `secrets.toml` in `data_dir`.
    pub secrets_file: String,
    /// SQLite connections serving reads side by side (one more serves writes), so a slow
    /// read (a big fsck, a long listing) does not hold up other calls.
    pub reader_connections: usize,
    /// How often the admin endpoint's cluster gauges (files, chunks, garbage backlog,
    /// replicas per node) are recomputed in the background; scrapes and the status page
    /// only read the last result.
    #[serde(with = "serde_duration")]
    pub gauge_refresh_interval: Duration,
    /// Show paths (and other per-file details of events) on the status page to anyone who
    /// reaches the admin port. Off: only callers that present an admin key (HTTP Basic,
    /// key id and secret) see them.
    pub status_page_paths: bool,
    /// Connections the gRPC server keeps open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one client IP address may keep open at once.
    pub max_connections_per_ip: usize,
    /// A connection that sends nothing for this long is closed (a peer that stalls
    /// before or during its handshake). The server pings idle peers every third of it (at
    /// most every 10 s), so an honest one always has something to answer.
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct DatanodeConfig {
    /// The coordinator to join.
    pub join: String,
    /// Address the gRPC server binds.
    pub listen: String,
    /// Address other nodes and clients use to reach this node. Empty: the listen address,
    /// or, when that is a wildcard (0.0.0.0), the address the coordinator sees us at.
    pub advertise: String,
    /// Address clients outside the cluster's network reach this node at, e.g. a container
    /// port published on the host (`127.0.0.1:17071`). Empty: `advertise` serves everyone.
    /// A client connects here when it can, else to `advertise`.
    pub public_advertise: String,
    /// Where chunks, the node id and temporary files live.
    pub data_dir: PathBuf,
    /// Bytes this node offers; 0 = the whole file system.
    #[serde(with = "serde_size")]
    pub capacity: u64,
    /// Bytes always kept free on the file system.
    #[serde(with = "serde_size")]
    pub reserve: u64,
    /// Scrubbing re-hashes stored chunks at this many bytes per second.
    #[serde(with = "serde_size")]
    pub scrub_rate: u64,
    /// Every chunk is re-hashed at least once per period.
    #[serde(with = "serde_duration")]
    pub scrub_period: Duration,
    /// Delay before the first scrub pass after start.
    #[serde(with = "serde_duration")]
    pub scrub_start_delay: Duration,
    /// Bytes per second this node pulls for re-replication (0 = unlimited), so repairs do
    /// not starve client I/O.
    #[serde(with = "serde_size")]
    pub replication_rate: u64,
    /// How often the node sends its full chunk inventory (also sent on registration and
    /// when the coordinator asks).
    #[serde(with = "serde_duration")]
    pub inventory_interval: Duration,
    /// Admin HTTP address (metrics), e.g. 0.0.0.0:9071; empty = off.
    pub admin_listen: String,
    /// The coordinator's join secret, needed when the cluster runs without TLS and with
    /// access keys (`coordinator.join_secret`); unused with TLS [env:
    /// DFSD_DATANODE__JOIN_SECRET].
    pub join_secret: String,
    /// Connections the gRPC server keeps open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one client IP address may keep open at once.
    pub max_connections_per_ip: usize,
    /// A connection that sends nothing for this long is closed (a peer that stalls
    /// before or during its handshake). The server pings idle peers every third of it (at
    /// most every 10 s), so an honest one always has something to answer.
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ClientConfig {
    /// The coordinator to talk to.
    pub coordinator: String,
    #[serde(with = "serde_size")]
    pub chunk_size: u64,
    /// Chunks in flight at once, per transfer. Memory is about this times the chunk size.
    pub parallelism: usize,
    #[serde(with = "serde_duration")]
    pub connect_timeout: Duration,
    /// Deadline of each metadata call.
    #[serde(with = "serde_duration")]
    pub request_timeout: Duration,
    /// Deadline of each chunk transfer.
    #[serde(with = "serde_duration")]
    pub transfer_timeout: Duration,
    /// Access key id and secret (`dfsd key create`) [env: DFSD_ACCESS_KEY, DFSD_SECRET_KEY].
    pub access_key: String,
    pub secret_key: String,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            log_level: "info".into(),
            coordinator: CoordinatorConfig::default(),
            datanode: DatanodeConfig::default(),
            client: ClientConfig::default(),
            tls: TlsConfig::default(),
            log_format: "text".into(),
            gateway: GatewayConfig::default(),
        }
    }
}

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            listen: "0.0.0.0:7070".into(),
            data_dir: PathBuf::from("dfsd-data/coordinator"),
            replication: 3,
            write_quorum: 0,
            heartbeat_interval: Duration::from_secs(2),
            suspect_after: Duration::from_secs(6),
            dead_after: Duration::from_secs(30),
            upload_ttl: Duration::from_secs(24 * 3600),
            upload_idle_timeout: Duration::from_secs(300),
            max_uploads_per_key: 256,
            max_upload_chunks_per_key: 1 << 20,
            max_chunk_size: MAX_CHUNK_SIZE,
            sqlite_synchronous: "full".into(),
            gc_grace: Duration::from_secs(3600),
            safe_mode_share: 0.9,
            safe_mode_timeout: Duration::from_secs(120),
            maintenance_interval: Duration::from_secs(1),
            repair_per_node: 2,
            repair_total: 32,
            auth: true,
            token_ttl: Duration::from_secs(600),
            admin_key_id: String::new(),
            admin_secret: String::new(),
            admin_listen: String::new(),
            events_kept: 10_000,
            join_secret: String::new(),
            secrets_file: String::new(),
            reader_connections: crate::meta::DEFAULT_READERS,
            gauge_refresh_interval: Duration::from_secs(10),
            status_page_paths: false,
            max_connections: 2048,
            max_connections_per_ip: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for DatanodeConfig {
    fn default() -> Self {
        DatanodeConfig {
            join: DEFAULT_COORDINATOR_ADDR.into(),
            listen: "0.0.0.0:7071".into(),
            advertise: String::new(),
            public_advertise: String::new(),
            data_dir: PathBuf::from("dfsd-data/datanode"),
            capacity: 0,
            reserve: 256 * 1024 * 1024,
            scrub_rate: 32 * 1024 * 1024,
            scrub_period: Duration::from_secs(7 * 86400),
            scrub_start_delay: Duration::from_secs(60),
            replication_rate: 200 * 1024 * 1024,
            inventory_interval: Duration::from_secs(3600),
            admin_listen: String::new(),
            join_secret: String::new(),
            max_connections: 2048,
            max_connections_per_ip: 256,
            idle_timeout: Duration::from_secs(60),
        }
    }
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            coordinator: DEFAULT_COORDINATOR_ADDR.into(),
            chunk_size: DEFAULT_CHUNK_SIZE,
            parallelism: 4,
            connect_timeout: Duration::from_secs(3),
            request_timeout: Duration::from_secs(30),
            transfer_timeout: Duration::from_secs(120),
            access_key: String::new(),
            secret_key: String::new(),
        }
    }
}

/// The S3 gateway (`dfsd gateway`). It reaches the coordinator at `client.coordinator`
/// with the `[tls]` settings, where `tls.cert` is a gateway certificate (`dfsd cert issue
/// --gateway NAME`). S3 callers sign with dfsd access keys (see docs/decisions.md, S3
/// gateway).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct GatewayConfig {
    /// Address the S3 server binds.
    pub listen: String,
    /// The dfsd access key the gateway uses for its own coordinator calls. Without TLS it
    /// must be an admin key (it reads S3 secrets). Empty: `client.access_key`/`secret_key`.
    pub access_key: String,
    pub secret_key: String,
    /// Certificate and key (PEM) the S3 port serves HTTPS with. Empty: the gateway
    /// certificate of `[tls]`, whose `--san` names S3 clients then dial.
    pub tls_cert: String,
    pub tls_key: String,
    /// Serve S3 over plain HTTP (behind a TLS proxy, or on a trusted network); logged as
    /// a warning. Also implied by `tls.plaintext` unless `tls_cert` is set.
    pub plaintext_s3: bool,
    /// How long a key's S3 secret is kept after the coordinator gave it: a revoked key can
    /// sign S3 requests for up to this long.
    #[serde(with = "serde_duration")]
    pub key_cache_ttl: Duration,
    /// Admin HTTP address (metrics), e.g. 0.0.0.0:9072; empty = off.
    pub admin_listen: String,
    /// Time a client gets to send a request's head (HTTP/1: request line and headers, also
    /// the wait for the next request on a kept-alive connection; any connection: its first
    /// bytes). Slower clients are disconnected.
    #[serde(with = "serde_duration")]
    pub header_timeout: Duration,
    /// A request body that sends nothing for this long, or a response the client stops
    /// reading for this long, ends its connection; HTTP/2 connections whose peer does not
    /// answer a ping within it are closed too.
    #[serde(with = "serde_duration")]
    pub idle_timeout: Duration,
    /// Connections the S3 server keeps open at once; more are closed at accept.
    pub max_connections: usize,
    /// Connections one client IP address may keep open at once.
    pub max_connections_per_ip: usize,
    /// Requests one HTTP/2 connection may have in progress at once.
    pub max_concurrent_streams: u32,
    /// The region GetBucketLocation reports (S3 clients sign with it; the gateway accepts
    /// any).
    pub region: String,
}

impl Default for GatewayConfig {
    fn default() -> Self {
        GatewayConfig {
            listen: "0.0.0.0:9000".into(),
            access_key: String::new(),
            secret_key: String::new(),
            tls_cert: String::new(),
            tls_key: String::new(),
            plaintext_s3: false,
            key_cache_ttl: Duration::from_secs(30),
            admin_listen: String::new(),
            header_timeout: Duration::from_secs(20),
            idle_timeout: Duration::from_secs(60),
            max_connections: 1024,
            max_connections_per_ip: 128,
            max_concurrent_streams: 128,
            region: "us-east-1".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("config file {0}: not found")]
    MissingFile(PathBuf),
    #[error("config: {key}: {problem}")]
    Invalid { key: &'static str, problem: String },
}

impl Config {
    /// Merges defaults, the optional TOML file and the `DFSD_*` environment.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        Config::load_with(file, Serialized::defaults(figment::value::Dict::new()))
    }

    /// [`Config::load`] with `flags` merged last: the command line's (`cli::flags`).
    pub fn load_with(
        file: Option<&Path>,
        flags: impl figment::Provider,
    ) -> Result<Config, ConfigError> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(f) = file {
            if !f.exists() {
                return Err(ConfigError::MissingFile(f.to_path_buf()));
            }
            fig = fig.merge(Toml::file(f));
        }
        fig = fig.merge(
            Env::prefixed("DFSD_")
                .ignore(&["ROLE", "CONFIG"])
                // Only configuration keys: `SECTION__KEY`, the client's `COORDINATOR` and
                // `LOG_LEVEL`. Other DFSD_* variables (compose settings, test switches such
                // as DFSD_DOCKER_TESTS) are not ours to refuse.
                .filter(|k| {
                    let k = k.as_str();
                    k.contains("__")
                        || k.eq_ignore_ascii_case("coordinator")
                        || k.eq_ignore_ascii_case("log_level")
                        || k.eq_ignore_ascii_case("access_key")
                        || k.eq_ignore_ascii_case("secret_key")
                        || k.eq_ignore_ascii_case("log_format")
                })
                .map(|k| {
                    let k = k.as_str();
                    if k.eq_ignore_ascii_case("coordinator") {
                        "client.coordinator".into()
                    } else if k.eq_ignore_ascii_case("access_key") {
                        "client.access_key".into()
                    } else if k.eq_ignore_ascii_case("secret_key") {
                        "client.secret_key".into()
                    } else {
                        k.replace("__", ".").into()
                    }
                })
                .lowercase(true),
        );
        let cfg: Config = fig.merge(flags).extract().map_err(Box::new)?;
        Ok(cfg)
    }

    /// Parses a TOML text on its own (no environment), for tests of shipped examples.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::string(text))
            .extract()
            .map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// Checks values field by field, naming the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |key, problem: &str| {
            Err(ConfigError::Invalid {
                key,
                problem: problem.into(),
            })
        };
        let c = &self.coordinator;
        if c.replication == 0 || c.replication > 16 {
            return bad("coordinator.replication", "must be between 1 and 16");
        }
        if c.write_quorum > c.replication {
            return bad(
                "coordinator.write_quorum",
                "must not exceed coordinator.replication",
            );
        }
        if c.suspect_after <= c.heartbeat_interval {
            return bad(
                "coordinator.suspect_after",
                "must be longer than heartbeat_interval",
            );
        }
        if c.dead_after < c.suspect_after {
            return bad(
                "coordinator.dead_after",
                "must not be shorter than suspect_after",
            );
        }
        if c.max_uploads_per_key == 0 || c.max_upload_chunks_per_key == 0 {
            return bad(
                "coordinator.max_uploads_per_key",
                "upload limits must be at least 1",
            );
        }
        if c.upload_idle_timeout.is_zero() || c.upload_ttl.is_zero() {
            return bad(
                "coordinator.upload_idle_timeout",
                "upload timeouts must be positive",
            );
        }
        if c.max_chunk_size == 0 || c.max_chunk_size > MAX_CHUNK_SIZE {
            return bad(
                "coordinator.max_chunk_size",
                "must be between 1 byte and 64 MiB",
            );
        }
        if !matches!(c.sqlite_synchronous.as_str(), "full" | "normal" | "extra") {
            return bad(
                "coordinator.sqlite_synchronous",
                "must be \"full\", \"normal\" or \"extra\"",
            );
        }
        if !(0.0..=1.0).contains(&c.safe_mode_share) {
            return bad("coordinator.safe_mode_share", "must be between 0 and 1");
        }
        if c.maintenance_interval.is_zero() {
            return bad("coordinator.maintenance_interval", "must be positive");
        }
        if c.repair_per_node == 0 || c.repair_total == 0 {
            return bad(
                "coordinator.repair_per_node",
                "repair limits must be at least 1",
            );
        }
        if c.token_ttl < Duration::from_secs(10) || c.token_ttl > Duration::from_secs(86400) {
            return bad(
                "coordinator.token_ttl",
                "must be between 10 seconds and 1 day",
            );
        }
        if c.admin_key_id.is_empty() != c.admin_secret.is_empty() {
            return bad(
                "coordinator.admin_key_id",
                "admin_key_id and admin_secret go together",
            );
        }
        if !c.admin_key_id.is_empty() {
            if crate::security::keys::check_key_id(&c.admin_key_id).is_err() {
                return bad(
                    "coordinator.admin_key_id",
                    "must be 20 characters of [A-Za-z0-9]",
                );
            }
            if c.admin_secret.len() < 20 {
                return bad("coordinator.admin_secret", "must be at least 20 characters");
            }
        }
        let min = crate::security::join::MIN_SECRET_LEN;
        let short = |s: &str| !s.is_empty() && s.len() < min;
        if short(&c.join_secret) {
            return bad(
                "coordinator.join_secret",
                &format!("must be at least {min} characters"),
            );
        }
        if short(&self.datanode.join_secret) {
            return bad(
                "datanode.join_secret",
                &format!("must be at least {min} characters"),
            );
        }
        let t = &self.tls;
        if t.enabled() && t.plaintext {
            return bad(
                "tls.plaintext",
                "contradicts tls.ca: choose TLS or plaintext, not both",
            );
        }
        if t.cert.is_empty() != t.key.is_empty() {
            return bad("tls.cert", "tls.cert and tls.key go together");
        }
        if !t.cert.is_empty() && !t.enabled() {
            return bad("tls.ca", "tls.cert and tls.key need tls.ca as well");
        }
        if c.events_kept == 0 {
            return bad("coordinator.events_kept", "must be at least 1");
        }
        if c.reader_connections == 0 || c.reader_connections > 64 {
            return bad("coordinator.reader_connections", "must be between 1 and 64");
        }
        if c.gauge_refresh_interval < Duration::from_secs(1) {
            return bad(
                "coordinator.gauge_refresh_interval",
                "must be at least 1 second",
            );
        }
        check_limits(
            "coordinator.max_connections",
            c.max_connections,
            c.max_connections_per_ip,
        )?;
        if c.idle_timeout < Duration::from_secs(1) {
            return bad("coordinator.idle_timeout", "must be at least 1 second");
        }
        if !matches!(self.log_format.as_str(), "text" | "json") {
            return bad("log_format", "must be \"text\" or \"json\"");
        }
        let d = &self.datanode;
        if d.scrub_rate == 0 {
            return bad("datanode.scrub_rate", "must be positive");
        }
        if d.scrub_period.is_zero() || d.inventory_interval.is_zero() {
            return bad("datanode.scrub_period", "periods must be positive");
        }
        check_limits(
            "datanode.max_connections",
            d.max_connections,
            d.max_connections_per_ip,
        )?;
        if d.idle_timeout < Duration::from_secs(1) {
            return bad("datanode.idle_timeout", "must be at least 1 second");
        }
        if !d.public_advertise.is_empty() && !is_reachable_endpoint(&d.public_advertise) {
            return bad(
                "datanode.public_advertise",
                "must be HOST:PORT with a real host (not 0.0.0.0), e.g. 127.0.0.1:17071",
            );
        }
        let cl = &self.client;
        if cl.chunk_size == 0 || cl.chunk_size > MAX_CHUNK_SIZE {
            return bad("client.chunk_size", "must be between 1 byte and 64 MiB");
        }
        if cl.parallelism == 0 || cl.parallelism > 64 {
            return bad("client.parallelism", "must be between 1 and 64");
        }
        if cl.connect_timeout.is_zero()
            || cl.request_timeout.is_zero()
            || cl.transfer_timeout.is_zero()
        {
            return bad("client.*_timeout", "timeouts must be positive");
        }
        let g = &self.gateway;
        if g.access_key.is_empty() != g.secret_key.is_empty() {
            return bad(
                "gateway.access_key",
                "access_key and secret_key go together",
            );
        }
        if g.tls_cert.is_empty() != g.tls_key.is_empty() {
            return bad("gateway.tls_cert", "tls_cert and tls_key go together");
        }
        if !g.tls_cert.is_empty() && g.plaintext_s3 {
            return bad(
                "gateway.plaintext_s3",
                "contradicts gateway.tls_cert: choose HTTPS or plain HTTP, not both",
            );
        }
        if g.key_cache_ttl < Duration::from_secs(1) || g.key_cache_ttl > Duration::from_secs(600) {
            return bad(
                "gateway.key_cache_ttl",
                "must be between 1 second and 10 minutes",
            );
        }
        if g.header_timeout < Duration::from_secs(1) || g.idle_timeout < Duration::from_secs(1) {
            return bad(
                "gateway.header_timeout",
                "header_timeout and idle_timeout must be at least 1 second",
            );
        }
        check_limits(
            "gateway.max_connections",
            g.max_connections,
            g.max_connections_per_ip,
        )?;
        if g.max_concurrent_streams == 0 {
            return bad("gateway.max_concurrent_streams", "must be at least 1");
        }
        Ok(())
    }

    /// A copy with every secret replaced by [`REDACTED`] (unset ones stay empty, so the
    /// output still shows whether a secret is configured): what `dfsd config` prints.
    pub fn redacted(&self) -> Config {
        let mut c = self.clone();
        for secret in [
            &mut c.client.secret_key,
            &mut c.coordinator.admin_secret,
            &mut c.coordinator.join_secret,
            &mut c.datanode.join_secret,
            &mut c.gateway.secret_key,
        ] {
            if !secret.is_empty() {
                *secret = REDACTED.into();
            }
        }
        c
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).unwrap_or_else(|e| format!("# cannot render config: {e}"))
    }
}

/// A server's connection limits: both at least 1, the per-IP one at most the total.
fn check_limits(key: &'static str, total: usize, per_ip: usize) -> Result<(), ConfigError> {
    if total == 0 || per_ip == 0 || per_ip > total {
        return Err(ConfigError::Invalid {
            key,
            problem: "max_connections and max_connections_per_ip must be at least 1, \
                      the per-IP limit no more than the total"
                .into(),
        });
    }
    Ok(())
}

/// True for an address a client can dial: a host that is not a wildcard, and a port.
fn is_reachable_endpoint(addr: &str) -> bool {
    let Ok(uri) = endpoint_uri(addr).parse::<http::Uri>() else {
        return false;
    };
    let host = uri.host().unwrap_or("");
    let wildcard = host.is_empty() || matches!(host, "0.0.0.0" | "[::]" | "::");
    !wildcard && uri.port_u16().is_some()
}

/// Accepts "host:port" or "http://host:port" and returns a URI tonic can connect to.
pub fn endpoint_uri(addr: &str) -> String {
    if addr.contains("://") {
        addr.to_string()
    } else {
        format!("http://{addr}")
    }
}

#[cfg(test)]
mod tests;
