//! dfsd: a distributed file system in one binary.
//!
//! # Layout
//!
//! | module | what it does |
//! |---|---|
//! | [`cli`] | the command line: definitions (clap), flags as the last config layer, every client command's output |
//! | [`config`] | defaults < TOML < `DFSD_*` env < flags, validated |
//! | [`coordinator`] | the metadata server: namespace, placement, commits, node health |
//! | [`meta`] | the metadata seam (`MetaStore`) and its SQLite backend: every SQL statement lives here |
//! | [`model`] | plain domain types: entries, node ids and records, cluster status, fsck reports, keys, events, times, the requests that change the namespace; the SDK's vocabulary |
//! | [`datanode`] | chunk storage on disk, pipelined writes, reads, verification |
//! | [`client`] | the SDK: uploads, downloads (with progress events), namespace calls |
//! | [`dev`] | an all-in-one local cluster |
//! | [`gateway`] | the S3-compatible HTTP gateway (s3s) over the client SDK |
//! | [`chunk`], [`path`] | validated domain types: chunk ids (SHA-256) and namespace paths |
//! | [`units`] | sizes, durations and RFC 3339 times, parsed and printed |
//! | [`proto`] | generated gRPC code and (`proto::convert`) every wire <-> model translation; [`wire_error`] the error contract: domain errors <-> gRPC statuses with reasons |
//! | [`metrics`], [`grpc_layer`], [`admin_http`], [`logging`] | observability: Prometheus metrics, per-call gRPC metrics and spans, the admin HTTP endpoint, log output |
//! | [`conn_limit`] | bounded public ports: connection limits, `TCP_NODELAY`, stalled peers cut |
//! | [`retry`] | calling again with exponential backoff while a peer is briefly away |
//! | [`sync`] | taking locks without caring about poisoning, in one place |
//!
//! # Data flow
//!
//! **Write.** The client cuts its input into chunks (8 MiB by default) and hashes each;
//! the chunk id is its SHA-256. It asks the coordinator to place a batch of chunks: a chunk
//! already stored with enough live replicas is skipped (dedup); the others get a pipeline of
//! distinct datanodes chosen by free space. The client streams each chunk once to the first
//! node, which writes it to a temporary file while forwarding the frames to the next node.
//! Each node verifies the hash, fsyncs, renames the chunk into `chunks/ab/cd/<id>`, fsyncs
//! the directory, reports the replica to the coordinator, and only then acks. When every
//! chunk has its write quorum of replicas on the coordinator's own records, the client
//! commits the file: one SQLite transaction swaps in the new chunk list.
//!
//! **Read.** The client gets the chunk list with live replica locations, fetches chunks in
//! parallel, verifies every chunk's SHA-256 before writing any of its bytes, and fails over
//! to the next replica (reporting the bad one) on error or mismatch.
//!
//! See ARCHITECTURE.md for the invariants and docs/decisions.md for the decisions behind them.

pub mod admin_http;
pub mod chunk;
pub mod cli;
pub mod client;
pub mod config;
pub mod conn_limit;
pub mod coordinator;
pub mod datanode;
pub mod dev;
pub mod gateway;
pub mod grpc_layer;
pub mod logging;
pub mod meta;
pub mod metrics;
pub mod model;
pub mod net;
pub mod path;
pub mod proto;
pub mod retry;
pub mod security;
pub mod sync;
pub mod units;
pub mod wire_error;

/// Short git revision dfsd was built from ("unknown" outside a git checkout).
pub const GIT_REVISION: &str = env!("DFSD_GIT_REVISION");

/// `dfsd --version`: the package version and the git revision.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (git ",
    env!("DFSD_GIT_REVISION"),
    ")"
);
