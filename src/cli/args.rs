//! The command line's definitions (clap): the global options, every subcommand and its
//! arguments. Global options carry their own help heading, so a command's `--help` lists
//! its own flags first.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use crate::units::parse_size;

/// The help heading of the options every command takes.
pub const GLOBAL_OPTIONS: &str = "Global options";

#[derive(Debug, Parser)]
#[command(
    name = "dfsd",
    version = crate::VERSION,
    about = "A distributed file system in one binary",
    propagate_version = true
)]
pub struct Cli {
    /// TOML config file (flags > DFSD_* environment > file > defaults).
    #[arg(long, global = true, env = "DFSD_CONFIG", help_heading = GLOBAL_OPTIONS)]
    pub config: Option<PathBuf>,
    /// Coordinator address for client commands [env: DFSD_COORDINATOR] [default: 127.0.0.1:7070].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub coordinator: Option<String>,
    /// Log filter, e.g. "info" or "dfsd=debug" [env: DFSD_LOG_LEVEL].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub log_level: Option<String>,
    /// Cluster CA certificate (PEM); enables TLS [env: DFSD_TLS__CA].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub tls_ca: Option<String>,
    /// This process's certificate (PEM) [env: DFSD_TLS__CERT].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub tls_cert: Option<String>,
    /// This process's private key (PEM) [env: DFSD_TLS__KEY].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub tls_key: Option<String>,
    /// No TLS: servers serve and clients connect unencrypted, and cluster members are not
    /// authenticated; for trusted test networks only [env: DFSD_TLS__PLAINTEXT].
    #[arg(long, global = true, help_heading = GLOBAL_OPTIONS)]
    pub plaintext: bool,
    /// Log output: "text" or "json" (one object per line) [env: DFSD_LOG_FORMAT].
    #[arg(long, global = true, value_parser = ["text", "json"], help_heading = GLOBAL_OPTIONS)]
    pub log_format: Option<String>,
    /// Run a server role (same as the subcommand of that name) [env: DFSD_ROLE].
    #[arg(long, value_parser = SERVER_ROLES)]
    pub role: Option<String>,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands that run a server rather than call one.
pub const SERVER_ROLES: [&str; 4] = ["coordinator", "datanode", "dev", "gateway"];

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the coordinator (metadata in SQLite, no file bytes).
    Coordinator(CoordinatorArgs),
    /// Run a datanode that joins a coordinator.
    Datanode(DatanodeArgs),
    /// Run a coordinator and N datanodes in one process on loopback, to try dfsd.
    Dev(DevArgs),
    /// Store a local file (or stdin with "-") at a remote path.
    Put(PutArgs),
    /// Read a remote file to a local file, a local directory, or stdout ("-" or nothing).
    Get(GetArgs),
    /// List a directory.
    Ls(LsArgs),
    /// Show a file's or directory's metadata.
    Stat(PathArg),
    /// Remove a file, or a directory with -r.
    Rm(RmArgs),
    /// Move or rename a file or directory.
    Mv(MvArgs),
    /// Create a directory.
    Mkdir(MkdirArgs),
    /// List the datanodes and their state.
    Nodes(JsonArg),
    /// Cluster health at a glance.
    Status(JsonArg),
    /// Check files' chunks and their live replicas, changing nothing.
    Fsck(FsckArgs),
    /// Node operations: drain, remove.
    #[command(subcommand)]
    Node(NodeCommand),
    /// Access keys: create, ls, revoke (admin key needed).
    #[command(subcommand)]
    Key(KeyCommand),
    /// TLS certificates: a cluster CA and the certificates it signs.
    #[command(subcommand)]
    Cert(CertCommand),
    /// Bucket (top-level directory) settings for the S3 gateway: public reads, owner.
    #[command(subcommand)]
    Bucket(BucketCommand),
    /// Print the effective configuration as TOML.
    Config,
    /// Exit 0 if a server answers a cheap call, 1 otherwise (for container health checks).
    Health(HealthArgs),
    /// Cluster events: nodes joining, failing and coming back, repairs, corruption, GC,
    /// file changes.
    Events(EventsArgs),
    /// Print a shell completion script: `dfsd completions bash > /etc/bash_completion.d/dfsd`.
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Run an S3-compatible gateway over the cluster's namespace (one bucket per top-level
    /// directory).
    Gateway(GatewayArgs),
}

#[derive(Debug, Args, Default)]
pub struct GatewayArgs {
    /// Address the S3 server listens on [default: 0.0.0.0:9000].
    #[arg(long)]
    pub listen: Option<String>,
    /// Certificate (PEM) for HTTPS on the S3 port [default: the gateway certificate of
    /// --tls-cert] [env: DFSD_GATEWAY__TLS_CERT].
    #[arg(long, value_name = "FILE", requires = "s3_tls_key")]
    pub s3_tls_cert: Option<String>,
    /// Its private key (PEM) [env: DFSD_GATEWAY__TLS_KEY].
    #[arg(long, value_name = "FILE", requires = "s3_tls_cert")]
    pub s3_tls_key: Option<String>,
    /// Serve S3 over plain HTTP (behind a TLS proxy or on a trusted network)
    /// [env: DFSD_GATEWAY__PLAINTEXT_S3].
    #[arg(long, conflicts_with = "s3_tls_cert")]
    pub plaintext_s3: bool,
}

#[derive(Debug, Args)]
pub struct HealthArgs {
    /// Check the datanode at this address instead of the coordinator.
    #[arg(long, conflicts_with = "local")]
    pub datanode: Option<String>,
    /// Check this container's own server: the role in DFSD_ROLE, at its configured listen
    /// port on 127.0.0.1.
    #[arg(long)]
    pub local: bool,
    /// Give up after this long, e.g. 3s.
    #[arg(long, default_value = "3s", value_parser = crate::units::parse_duration)]
    pub timeout: std::time::Duration,
}

#[derive(Debug, Args, Default)]
pub struct CoordinatorArgs {
    /// Address to listen on [default: 0.0.0.0:7070].
    #[arg(long)]
    pub listen: Option<String>,
    /// Directory for the metadata database.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Admin HTTP address (metrics, status page), e.g. 0.0.0.0:9070.
    #[arg(long)]
    pub admin_listen: Option<String>,
}

#[derive(Debug, Args, Default)]
pub struct DatanodeArgs {
    /// Coordinator to join, e.g. 10.0.0.1:7070.
    #[arg(long)]
    pub join: Option<String>,
    /// Address to listen on [default: 0.0.0.0:7071].
    #[arg(long)]
    pub listen: Option<String>,
    /// Address others reach this node at (default: the listen address, or the address the
    /// coordinator sees when listening on a wildcard).
    #[arg(long)]
    pub advertise: Option<String>,
    /// Address clients outside the cluster's network reach this node at, e.g. a container
    /// port published on the host; clients that can connect there use it.
    #[arg(long, value_name = "HOST:PORT")]
    pub public_advertise: Option<String>,
    /// Directory for chunks.
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Bytes offered, e.g. 100GiB (default: the whole file system).
    #[arg(long, value_parser = parse_size)]
    pub capacity: Option<u64>,
    /// Admin HTTP address (metrics), e.g. 0.0.0.0:9071.
    #[arg(long)]
    pub admin_listen: Option<String>,
    /// The coordinator's join secret, for a cluster without TLS (prefer the environment:
    /// a flag shows in the process list) [env: DFSD_DATANODE__JOIN_SECRET].
    #[arg(long, value_name = "SECRET")]
    pub join_secret: Option<String>,
}

#[derive(Debug, Args)]
pub struct DevArgs {
    /// Number of datanodes.
    #[arg(long, default_value_t = 3)]
    pub nodes: usize,
    /// Where the cluster keeps its data (kept across restarts).
    #[arg(long, default_value = "dfsd-dev")]
    pub data_dir: PathBuf,
    /// Coordinator address. Only a loopback address without --auth: the dev cluster is
    /// plaintext, and without --auth anyone who reaches it may do anything.
    #[arg(long, default_value = "127.0.0.1:7070")]
    pub listen: String,
    /// Require access keys, as a real cluster does: the first start prints the admin key
    /// (or uses DFSD_ACCESS_KEY / DFSD_SECRET_KEY).
    #[arg(long)]
    pub auth: bool,
    /// Start, store and read back a demo file, then exit instead of serving.
    #[arg(long)]
    pub demo_only: bool,
}

#[derive(Debug, Args)]
pub struct PutArgs {
    /// Local file, or "-" for stdin.
    pub local: String,
    /// Remote path.
    pub remote: String,
    /// Fail if the remote path exists (atomic).
    #[arg(long)]
    pub no_clobber: bool,
    /// Replicas per chunk (default: the cluster's).
    #[arg(long)]
    pub replication: Option<u32>,
    /// Replicas that must be durable before the put succeeds (default: the cluster's).
    #[arg(long)]
    pub write_quorum: Option<u32>,
    /// Chunk size, e.g. 8MiB.
    #[arg(long, value_parser = parse_size)]
    pub chunk_size: Option<u64>,
    /// Print nothing on success, and no progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct GetArgs {
    /// Remote path.
    pub remote: String,
    /// Local file or directory; "-" or nothing for stdout.
    pub local: Option<String>,
    /// First byte to read.
    #[arg(long, default_value_t = 0)]
    pub offset: u64,
    /// Bytes to read (default: to the end).
    #[arg(long)]
    pub length: Option<u64>,
    /// No progress bar.
    #[arg(short, long)]
    pub quiet: bool,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Long format: kind, size, version, modification time.
    #[arg(short = 'l')]
    pub long: bool,
    #[arg(default_value = "/")]
    pub path: String,
    /// Machine-readable output: a JSON array of entries.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct PathArg {
    pub path: String,
    /// Machine-readable output: the entry as a JSON object.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    /// Remove directories and their contents.
    #[arg(short = 'r', long)]
    pub recursive: bool,
    pub path: String,
}

#[derive(Debug, Args)]
pub struct JsonArg {
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct FsckArgs {
    #[arg(default_value = "/")]
    pub path: String,
    /// List every file, not only damaged ones.
    #[arg(long)]
    pub all: bool,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum NodeCommand {
    /// Stop new writes to a node and move its replicas elsewhere.
    Drain {
        node: String,
        /// Stop draining.
        #[arg(long)]
        cancel: bool,
        /// Wait until the node is safe to remove.
        #[arg(long)]
        wait: bool,
    },
    /// Forget a dead or drained node.
    Remove { node: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an access key; its secret is printed once.
    Create {
        /// A label for humans, e.g. who or what uses the key.
        #[arg(long)]
        name: String,
        /// admin, readwrite or readonly.
        #[arg(long, value_parser = ["admin", "readwrite", "readonly"])]
        role: String,
        /// Confine the key to this subtree (default: everything).
        #[arg(long, default_value = "/")]
        prefix: String,
        #[arg(long)]
        json: bool,
    },
    /// List access keys (never their secrets).
    Ls {
        #[arg(long)]
        json: bool,
    },
    /// Revoke an access key at once.
    Revoke { key_id: String },
}

#[derive(Debug, Subcommand)]
pub enum BucketCommand {
    /// Let anonymous S3 callers list the bucket and read its objects (on), or not (off).
    /// Recorded as a `bucket_acl` event.
    Public {
        /// The bucket's directory, e.g. /photos.
        path: String,
        #[arg(value_parser = ["on", "off"])]
        state: String,
    },
    /// Show a bucket's owner, public access and whether it has CORS rules.
    Show {
        path: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum CertCommand {
    /// Create the cluster CA (ca.pem, ca.key) in --dir.
    Init {
        #[arg(long, default_value = "dfsd-certs")]
        dir: PathBuf,
        /// Validity in years.
        #[arg(long, default_value_t = 20)]
        years: u32,
    },
    /// Issue a certificate signed by the CA in --dir: NAME.pem and NAME.key.
    Issue {
        #[arg(long, default_value = "dfsd-certs")]
        dir: PathBuf,
        /// A datanode certificate.
        #[arg(long, group = "kind", value_name = "NAME")]
        node: Option<String>,
        /// The coordinator's certificate (the only one whose orders datanodes obey).
        #[arg(long, group = "kind", value_name = "NAME")]
        coord: Option<String>,
        /// A client certificate (optional for clients; access keys authenticate them).
        #[arg(long, group = "kind", value_name = "NAME")]
        client: Option<String>,
        /// An S3 gateway's certificate: it may read S3 secrets and act for S3 callers, and
        /// serves HTTPS on the S3 port (add the names S3 clients dial with --san).
        #[arg(long, group = "kind", value_name = "NAME")]
        gateway: Option<String>,
        /// An extra DNS name or IP address, e.g. the host name S3 clients dial; repeat the
        /// flag or separate names with commas.
        #[arg(long, value_delimiter = ',', value_name = "NAME")]
        san: Vec<String>,
        /// Validity in years [default: 5 for --coord and --node; gateway and client
        /// certificates get 90 days].
        #[arg(long, conflicts_with = "days")]
        years: Option<u32>,
        /// Validity in days.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Revoke a certificate at once: the coordinator refuses it on every call, and
    /// datanodes within a heartbeat (admin key needed).
    Revoke {
        /// The certificate (PEM) to revoke.
        #[arg(
            required_unless_present = "fingerprint",
            conflicts_with = "fingerprint"
        )]
        cert: Option<PathBuf>,
        /// Or its fingerprint: the SHA-256 of its DER, hex (printed by `cert issue`).
        #[arg(long, value_name = "HEX")]
        fingerprint: Option<String>,
        /// A note kept with the revocation [default: the certificate's file name].
        #[arg(long)]
        note: Option<String>,
    },
    /// List revoked certificates (admin key needed).
    Revoked {
        #[arg(long)]
        json: bool,
    },
}

impl Command {
    /// True for the subcommands that run a server (see [`SERVER_ROLES`]).
    pub fn is_server(&self) -> bool {
        matches!(
            self,
            Command::Coordinator(_) | Command::Datanode(_) | Command::Dev(_) | Command::Gateway(_)
        )
    }
}

impl CertCommand {
    /// `init` and `issue` work on local files; `revoke` and `revoked` ask the coordinator.
    pub fn is_local(&self) -> bool {
        matches!(self, CertCommand::Init { .. } | CertCommand::Issue { .. })
    }
}

#[derive(Debug, Args)]
pub struct MvArgs {
    pub src: String,
    pub dst: String,
}

#[derive(Debug, Args)]
pub struct MkdirArgs {
    /// Create parents as needed; no error if it exists.
    #[arg(short = 'p', long)]
    pub parents: bool,
    pub path: String,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Keep streaming new events as they happen.
    #[arg(short, long)]
    pub follow: bool,
    /// Only events since TIME: RFC 3339 in UTC (2026-11-28T07:50:00Z), a date, or a
    /// duration meaning that long ago (10m, 2h).
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// One JSON object per line: id, time, time_ms, kind, node_id, path, chunk_id, bytes,
    /// count, detail.
    #[arg(long)]
    pub json: bool,
}
