//! Prometheus metrics of every role, in one process-wide registry (prometheus-client).
//!
//! Names follow the Prometheus conventions: a `dfsd_` prefix, base units (`_bytes`,
//! `_seconds`) and `_total` on counters (prometheus-client appends it). Each role's set
//! is registered the first time it is used ([`common`], [`coordinator`], [`datanode`]), so
//! a datanode exports no coordinator series; `dfsd dev`, which runs every role in one
//! process, exports all of them.
//!
//! Gauges that mirror in-memory state (node states, disk usage) are set just before a
//! scrape by the role's admin server, so they are never stale. Gauges that need metadata
//! scans (files, chunks, garbage backlog) are recomputed by a background task at a
//! bounded rate, so a scrape never runs a query (coordinator/observe.rs).

use crate::sync::Locked;
use std::sync::{Mutex, OnceLock};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::{Registry, Unit};

/// Content type of [`encode`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

fn registry() -> &'static Mutex<Registry> {
    static R: OnceLock<Mutex<Registry>> = OnceLock::new();
    R.get_or_init(|| Mutex::new(Registry::with_prefix("dfsd")))
}

fn with_registry<T>(f: impl FnOnce(&mut Registry) -> T) -> T {
    f(&mut registry().locked())
}

/// The registry in the OpenMetrics text format.
pub fn encode() -> String {
    let mut out = String::new();
    with_registry(|r| prometheus_client::encoding::text::encode(&mut out, r))
        .expect("writing to a String cannot fail");
    out
}

/// Latency buckets from 0.5 ms to about 33 s.
fn latency() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

type LatencyFamily<L> = Family<L, Histogram, fn() -> Histogram>;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct GrpcLabels {
    pub service: String,
    pub method: String,
    pub code: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct MethodLabels {
    pub service: String,
    pub method: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabel {
    pub state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    pub kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabel {
    pub result: String,
}

/// Which server a connection series is about (`coordinator`, `datanode`, `s3`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerLabels {
    pub server: String,
}

impl ServerLabels {
    pub fn of(server: &str) -> Self {
        ServerLabels {
            server: server.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ServerReasonLabels {
    pub server: String,
    pub reason: String,
}

impl ServerReasonLabels {
    pub fn of(server: &str, reason: &str) -> Self {
        ServerReasonLabels {
            server: server.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BuildLabels {
    pub version: String,
    pub revision: String,
}

/// Series every server role exports.
pub struct Common {
    /// gRPC requests served, by method and final status code.
    pub grpc_requests: Family<GrpcLabels, Counter>,
    /// Time from a request's arrival to the end of its response stream.
    pub grpc_duration: LatencyFamily<MethodLabels>,
    /// Connections open now, by server.
    pub connections_open: Family<ServerLabels, Gauge>,
    /// Connections closed at accept because a limit was reached (`total`, `per_ip`).
    pub connections_refused: Family<ServerReasonLabels, Counter>,
    /// Connections closed because the peer stalled (`head`, `idle`, `write_stall`, `body`).
    pub connections_timed_out: Family<ServerReasonLabels, Counter>,
}

pub fn common() -> &'static Common {
    static M: OnceLock<Common> = OnceLock::new();
    M.get_or_init(|| {
        let m = Common {
            grpc_requests: Family::default(),
            grpc_duration: Family::new_with_constructor(latency),
            connections_open: Family::default(),
            connections_refused: Family::default(),
            connections_timed_out: Family::default(),
        };
        let build: Family<BuildLabels, Gauge> = Family::default();
        build
            .get_or_create(&BuildLabels {
                version: env!("CARGO_PKG_VERSION").into(),
                revision: crate::GIT_REVISION.into(),
            })
            .set(1);
        with_registry(|r| {
            r.register(
                "grpc_requests",
                "gRPC requests served, by method and status code",
                m.grpc_requests.clone(),
            );
            r.register_with_unit(
                "grpc_request_duration",
                "Time to serve a gRPC request, to the end of its response",
                Unit::Seconds,
                m.grpc_duration.clone(),
            );
            r.register("build_info", "Version and git revision of dfsd", build);
            r.register(
                "connections_open",
                "Connections open, by server",
                m.connections_open.clone(),
            );
            r.register(
                "connections_refused",
                "Connections closed at accept because a limit was reached, by server and reason",
                m.connections_refused.clone(),
            );
            r.register(
                "connections_timed_out",
                "Connections closed because the peer stalled, by server and reason",
                m.connections_timed_out.clone(),
            );
        });
        m
    })
}

/// The coordinator's series.
pub struct Coordinator {
    pub nodes: Family<StateLabel, Gauge>,
    pub heartbeats: Counter,
    pub under_replicated: Gauge,
    pub unrecoverable: Gauge,
    pub over_replicated: Gauge,
    pub repair_queue: Gauge,
    pub repairs_running: Gauge,
    pub repairs: Family<ResultLabel, Counter>,
    pub repair_bytes: Counter,
    pub gc_backlog_chunks: Gauge,
    pub gc_backlog_bytes: Gauge,
    pub gc_freed_bytes: Counter,
    pub files: Gauge,
    pub directories: Gauge,
    pub chunks: Gauge,
    pub logical_bytes: Gauge,
    pub capacity_bytes: Gauge,
    pub used_bytes: Gauge,
    pub free_bytes: Gauge,
    pub safe_mode: Gauge,
    pub events: Family<KindLabel, Counter>,
    /// SQLite transaction time, by kind (`write` or `read`).
    pub sqlite_duration: LatencyFamily<KindLabel>,
    /// Uploads in flight.
    pub uploads_open: Gauge,
    /// Clients' reports of bad replicas, by what became of them (verify, pending,
    /// cooldown, busy, refused).
    pub bad_replica_reports: Family<KindLabel, Counter>,
    /// Background recomputations of the gauges that need metadata scans.
    pub gauge_refreshes: Counter,
    /// Queries that scan a whole metadata table (or index), by kind.
    pub metadata_scans: Family<KindLabel, Counter>,
}

pub fn coordinator() -> &'static Coordinator {
    static M: OnceLock<Coordinator> = OnceLock::new();
    M.get_or_init(|| {
        common();
        let m = Coordinator {
            nodes: Family::default(),
            heartbeats: Counter::default(),
            under_replicated: Gauge::default(),
            unrecoverable: Gauge::default(),
            over_replicated: Gauge::default(),
            repair_queue: Gauge::default(),
            repairs_running: Gauge::default(),
            repairs: Family::default(),
            repair_bytes: Counter::default(),
            gc_backlog_chunks: Gauge::default(),
            gc_backlog_bytes: Gauge::default(),
            gc_freed_bytes: Counter::default(),
            files: Gauge::default(),
            directories: Gauge::default(),
            chunks: Gauge::default(),
            logical_bytes: Gauge::default(),
            capacity_bytes: Gauge::default(),
            used_bytes: Gauge::default(),
            free_bytes: Gauge::default(),
            safe_mode: Gauge::default(),
            events: Family::default(),
            sqlite_duration: Family::new_with_constructor(latency),
            uploads_open: Gauge::default(),
            bad_replica_reports: Family::default(),
            gauge_refreshes: Counter::default(),
            metadata_scans: Family::default(),
        };
        for ok in [true, false] {
            let _ = m.repairs.get_or_create(&result(ok));
        }
        // Every state is exported, at 0 when no node is in it, so dashboards see it.
        for s in ["alive", "suspect", "dead", "draining"] {
            let _ = m.nodes.get_or_create(&StateLabel { state: s.into() });
        }
        with_registry(|r| {
            r.register("nodes", "Datanodes by state", m.nodes.clone());
            r.register(
                "heartbeats_received",
                "Datanode heartbeats received",
                m.heartbeats.clone(),
            );
            r.register(
                "chunks_under_replicated",
                "Chunks with fewer live replicas than their target, but at least one",
                m.under_replicated.clone(),
            );
            r.register(
                "chunks_unrecoverable",
                "Chunks a committed file needs with no live replica",
                m.unrecoverable.clone(),
            );
            r.register(
                "chunks_over_replicated",
                "Chunks with more live replicas than their target",
                m.over_replicated.clone(),
            );
            r.register(
                "repair_queue",
                "Chunk copies waiting to be scheduled",
                m.repair_queue.clone(),
            );
            r.register(
                "repairs_running",
                "Chunk copies in progress",
                m.repairs_running.clone(),
            );
            r.register(
                "repairs",
                "Chunk copies finished, by result (ok, failed)",
                m.repairs.clone(),
            );
            r.register_with_unit(
                "repaired",
                "Bytes copied by re-replication",
                Unit::Bytes,
                m.repair_bytes.clone(),
            );
            r.register(
                "gc_backlog_chunks",
                "Unreferenced chunks waiting for their grace period",
                m.gc_backlog_chunks.clone(),
            );
            r.register_with_unit(
                "gc_backlog",
                "Bytes of unreferenced chunks waiting for their grace period",
                Unit::Bytes,
                m.gc_backlog_bytes.clone(),
            );
            r.register_with_unit(
                "gc_freed",
                "Bytes freed on datanodes by garbage collection",
                Unit::Bytes,
                m.gc_freed_bytes.clone(),
            );
            r.register("files", "Files in the namespace", m.files.clone());
            r.register(
                "directories",
                "Directories in the namespace",
                m.directories.clone(),
            );
            r.register("chunks", "Distinct chunks on record", m.chunks.clone());
            r.register_with_unit(
                "logical",
                "Sum of the sizes of all files",
                Unit::Bytes,
                m.logical_bytes.clone(),
            );
            r.register_with_unit(
                "cluster_capacity",
                "Capacity of the datanodes that are not dead",
                Unit::Bytes,
                m.capacity_bytes.clone(),
            );
            r.register_with_unit(
                "cluster_used",
                "Bytes used on the datanodes that are not dead",
                Unit::Bytes,
                m.used_bytes.clone(),
            );
            r.register_with_unit(
                "cluster_free",
                "Bytes free on the datanodes that are not dead",
                Unit::Bytes,
                m.free_bytes.clone(),
            );
            r.register(
                "safe_mode",
                "1 while the coordinator waits for inventories after a restart",
                m.safe_mode.clone(),
            );
            r.register(
                "events",
                "Cluster events recorded, by kind",
                m.events.clone(),
            );
            r.register(
                "gauge_refreshes",
                "Background recomputations of the cluster gauges (scrapes only read the result)",
                m.gauge_refreshes.clone(),
            );
            r.register(
                "metadata_scans",
                "Queries that scan a whole metadata table, by kind",
                m.metadata_scans.clone(),
            );
            r.register_with_unit(
                "sqlite_transaction_duration",
                "Time of metadata transactions, by kind (write, read)",
                Unit::Seconds,
                m.sqlite_duration.clone(),
            );
            r.register("uploads_open", "Uploads in flight", m.uploads_open.clone());
            r.register(
                "bad_replica_reports",
                "Client reports of bad replicas, by outcome (verify, pending, cooldown, busy, refused)",
                m.bad_replica_reports.clone(),
            );
        });
        m
    })
}

/// A datanode's series.
pub struct Datanode {
    pub chunks: Gauge,
    pub capacity_bytes: Gauge,
    pub used_bytes: Gauge,
    pub free_bytes: Gauge,
    /// Chunk bytes received, by how (`write` from a client or upstream node,
    /// `replication` pulled from a peer).
    pub received_bytes: Family<KindLabel, Counter>,
    /// Chunk bytes sent, by how (`read` to a client or peer, `forward` down a pipeline).
    pub sent_bytes: Family<KindLabel, Counter>,
    pub chunks_written: Counter,
    pub heartbeats: Family<ResultLabel, Counter>,
    pub scrub_checked: Gauge,
    pub scrub_total: Gauge,
    pub scrub_errors: Gauge,
    pub scrub_last_pass: Gauge,
}

pub fn datanode() -> &'static Datanode {
    static M: OnceLock<Datanode> = OnceLock::new();
    M.get_or_init(|| {
        common();
        let m = Datanode {
            chunks: Gauge::default(),
            capacity_bytes: Gauge::default(),
            used_bytes: Gauge::default(),
            free_bytes: Gauge::default(),
            received_bytes: Family::default(),
            sent_bytes: Family::default(),
            chunks_written: Counter::default(),
            heartbeats: Family::default(),
            scrub_checked: Gauge::default(),
            scrub_total: Gauge::default(),
            scrub_errors: Gauge::default(),
            scrub_last_pass: Gauge::default(),
        };
        for k in ["write", "replication"] {
            let _ = m
                .received_bytes
                .get_or_create(&KindLabel { kind: k.into() });
        }
        for ok in [true, false] {
            let _ = m.heartbeats.get_or_create(&result(ok));
        }
        for k in ["read", "forward"] {
            let _ = m.sent_bytes.get_or_create(&KindLabel { kind: k.into() });
        }
        with_registry(|r| {
            r.register(
                "datanode_chunks",
                "Chunks stored on this datanode",
                m.chunks.clone(),
            );
            r.register_with_unit(
                "datanode_capacity",
                "Bytes this datanode offers",
                Unit::Bytes,
                m.capacity_bytes.clone(),
            );
            r.register_with_unit(
                "datanode_used",
                "Bytes of chunks stored on this datanode",
                Unit::Bytes,
                m.used_bytes.clone(),
            );
            r.register_with_unit(
                "datanode_free",
                "Bytes this datanode can still take",
                Unit::Bytes,
                m.free_bytes.clone(),
            );
            r.register_with_unit(
                "datanode_received",
                "Chunk bytes received, by kind (write, replication)",
                Unit::Bytes,
                m.received_bytes.clone(),
            );
            r.register_with_unit(
                "datanode_sent",
                "Chunk bytes sent, by kind (read, forward)",
                Unit::Bytes,
                m.sent_bytes.clone(),
            );
            r.register(
                "datanode_chunks_written",
                "Chunks made durable by writes",
                m.chunks_written.clone(),
            );
            r.register(
                "datanode_heartbeats",
                "Heartbeats sent to the coordinator, by result (ok, failed)",
                m.heartbeats.clone(),
            );
            r.register(
                "scrub_checked_chunks",
                "Chunks checked in the current scrub pass",
                m.scrub_checked.clone(),
            );
            r.register(
                "scrub_pass_chunks",
                "Chunks the current scrub pass covers",
                m.scrub_total.clone(),
            );
            r.register(
                "scrub_errors",
                "Corrupt or missing chunks found by scrubbing since start",
                m.scrub_errors.clone(),
            );
            r.register_with_unit(
                "scrub_last_pass_end",
                "End of the last complete scrub pass, Unix time (0 = none yet)",
                Unit::Seconds,
                m.scrub_last_pass.clone(),
            );
        });
        m
    })
}

/// A label value from a static string.
pub fn kind(k: &str) -> KindLabel {
    KindLabel { kind: k.into() }
}

pub fn result(ok: bool) -> ResultLabel {
    ResultLabel {
        result: if ok { "ok" } else { "failed" }.into(),
    }
}

/// Sets an integer gauge from an unsigned count.
pub fn set(g: &Gauge, v: u64) {
    g.set(v.min(i64::MAX as u64) as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_conventions() {
        coordinator().heartbeats.inc();
        datanode()
            .received_bytes
            .get_or_create(&kind("write"))
            .inc_by(5);
        let text = encode();
        assert!(text.contains("dfsd_heartbeats_received_total "), "{text}");
        assert!(
            text.contains("dfsd_datanode_received_bytes_total{kind=\"write\"} "),
            "{text}"
        );
        assert!(text.contains("# TYPE dfsd_grpc_request_duration_seconds histogram"));
        assert!(text.contains("dfsd_nodes{state=\"dead\"} 0"), "{text}");
        assert!(text.contains("dfsd_build_info{version="), "{text}");
        assert!(text.ends_with("# EOF\n"));
    }
}
