//! Log output: readable text (coloured on a terminal) or JSON lines for machines, both on
//! stderr. Spans opened by the gRPC layer (method, request id) and by the roles (node id,
//! path, chunk id) appear on every line logged inside them.
//!
//! Levels: ERROR means a human must act (data at risk, a disk failing); WARN is something
//! unusual the system handles itself (a node unreachable, a retry); INFO is the cluster's
//! story (joins, commits, repairs); DEBUG is for developers.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; `format` is "json" or anything else for text.
pub fn init(filter: EnvFilter, format: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if format == "json" {
        builder
            .json()
            .with_current_span(true)
            .with_span_list(true)
            .init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
