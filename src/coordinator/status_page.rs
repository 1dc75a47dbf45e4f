//! The status page at `/` on the coordinator's admin endpoint: one server-rendered HTML
//! page, no JavaScript, that reloads itself every few seconds (`<meta http-equiv=refresh>`).
//! Nodes with their state, capacity bar and last heartbeat; files, chunks and bytes;
//! under-replicated chunks and repair progress; the latest cluster events.
//!
//! The page runs no scan of the metadata tables: the counts come from the gauge cache
//! (`gauges.rs`), the rest from memory. Events carry paths from every prefix, so paths,
//! chunk ids and the details of file events are shown only to an admin viewer.

use std::fmt::Write;
use std::sync::Arc;

use super::{admin, events, gauges, State};
use crate::model::{now_ms, ClusterStatus, NodeInfo, NodeState};
use crate::units::{format_size, rfc3339_ms};

/// Seconds between reloads.
const REFRESH_SECS: u32 = 2;
/// Events shown.
const EVENTS_SHOWN: usize = 25;

/// Escapes text for HTML element content and attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn state_name(s: Option<NodeState>) -> &'static str {
    s.map_or("unknown", NodeState::as_str)
}

fn ago(ms: i64, now: i64) -> String {
    if ms <= 0 {
        return "never".into();
    }
    let secs = (now - ms).max(0) as f64 / 1000.0;
    if secs < 120.0 {
        format!("{secs:.1} s ago")
    } else if secs < 7200.0 {
        format!("{:.0} min ago", secs / 60.0)
    } else {
        format!("{:.1} h ago", secs / 3600.0)
    }
}

fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 * 100.0 / whole as f64).min(100.0)
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}\
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.5em}\
table{border-collapse:collapse}td,th{padding:.25em .7em;text-align:left;border-bottom:1px solid #ddd}\
.num{text-align:right}.state{font-weight:bold}\
.alive{color:#1a7f37}.suspect{color:#9a6700}.dead{color:#cf222e}.draining{color:#0969da}\
.bar{width:12em;height:.9em;background:#eee;border:1px solid #bbb}\
.fill{height:100%;background:#0969da}.bad{color:#cf222e;font-weight:bold}\
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em}dt{color:#555}dd{margin:0}";

/// Who looks at the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Viewer {
    /// Anyone who reaches the port: no paths, no per-file details.
    Anonymous,
    /// An admin key was presented (or the configuration shows paths to all).
    Admin,
}

/// Renders the page from the same numbers `dfsd status`, `dfsd nodes` and `dfsd events`
/// show (the counts as of the last gauge refresh).
pub async fn render(state: &Arc<State>, viewer: Viewer) -> String {
    let cached = gauges::cached_status(state);
    let recent = events::recent(state, EVENTS_SHOWN).await;
    let admin_view = viewer == Viewer::Admin;
    let now = now_ms();
    let mut h = String::new();
    let _ = write!(
        h,
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
         <title>dfsd status</title><style>{STYLE}</style></head><body>\
         <h1>dfsd cluster status</h1><p>As of {} (reloads every {REFRESH_SECS} s)</p>",
        rfc3339_ms(now)
    );
    let nodes: Vec<NodeInfo> = match &cached {
        Some((s, scanned)) => {
            summary(&mut h, s, scanned.at_ms);
            admin::list_nodes_cached(state, &scanned.replicas)
        }
        None => {
            h.push_str("<p>counting files and chunks (first refresh under way)</p>");
            admin::list_nodes_cached(state, &Default::default())
        }
    };
    h.push_str("<h2>Nodes</h2>");
    node_table(&mut h, &nodes, now);
    h.push_str("<h2>Recent events</h2>");
    if !admin_view {
        h.push_str(
            "<p id=\"paths-hidden\">Paths, chunk ids and file details are shown only to \
             admins: <a href=\"/?login\">sign in with an admin key</a> (key id and secret).</p>",
        );
    }
    if recent.is_empty() {
        h.push_str("<p>none yet</p>");
    } else {
        h.push_str("<table id=\"events\"><tr><th>time</th><th>event</th><th>node</th>");
        if admin_view {
            h.push_str("<th>path</th><th>chunk</th>");
        }
        h.push_str("<th>detail</th></tr>");
        for e in recent.iter().rev() {
            let mut detail = e.detail.clone();
            if e.count > 0 {
                detail = format!("{} x{}", detail, e.count);
            }
            if e.bytes > 0 {
                detail = format!("{detail} {}", format_size(e.bytes));
            }
            // A file event's detail names a version or a move's destination and its size,
            // a chunk event's may quote a client: admins only.
            let public = ["node_", "repair_", "gc_"]
                .iter()
                .any(|k| e.kind.starts_with(k));
            if !admin_view && !public {
                detail.clear();
            }
            let _ = write!(
                h,
                "<tr><td>{}</td><td>{}</td><td>{}</td>",
                rfc3339_ms(e.time_ms),
                esc(&e.kind),
                esc(&e.node_id),
            );
            if admin_view {
                let chunk = e.chunk_id.get(..12).unwrap_or(&e.chunk_id);
                let _ = write!(h, "<td>{}</td><td>{}</td>", esc(&e.path), esc(chunk));
            }
            let _ = write!(h, "<td>{}</td></tr>", esc(detail.trim()));
        }
        h.push_str("</table>");
    }
    h.push_str("</body></html>\n");
    h
}

fn summary(h: &mut String, s: &ClusterStatus, counted_ms: i64) {
    let health = if s.unrecoverable > 0 {
        "<span class=\"bad\">DATA MISSING</span>"
    } else if s.under_replicated > 0 || s.nodes_dead > 0 || s.nodes_suspect > 0 {
        "<span class=\"suspect\">degraded</span>"
    } else {
        "<span class=\"alive\">healthy</span>"
    };
    let _ = write!(
        h,
        "<h2>Cluster</h2><dl id=\"summary\">\
         <dt>health</dt><dd>{health}{}</dd>\
         <dt>nodes</dt><dd>{} alive, {} suspect, {} dead, {} draining</dd>\
         <dt>capacity</dt><dd>{} used of {} ({} free)</dd>\
         <dt>files</dt><dd>{} files, {} directories, {} in {} chunks (counted {})</dd>\
         <dt>under-replicated</dt><dd>{} chunks</dd>\
         <dt>unrecoverable</dt><dd{}>{} chunks</dd>\
         <dt>repair</dt><dd>{} queued, {} running, {} done ({}), {}/s</dd>\
         <dt>garbage</dt><dd>{} chunks ({}) waiting, {} freed</dd>\
         <dt>scrub</dt><dd>{} of {} chunks checked, {} errors</dd></dl>",
        if s.safe_mode {
            " (safe mode: waiting for inventories)"
        } else {
            ""
        },
        s.nodes_alive,
        s.nodes_suspect,
        s.nodes_dead,
        s.nodes_draining,
        format_size(s.used_bytes),
        format_size(s.capacity_bytes),
        format_size(s.free_bytes),
        s.files,
        s.directories,
        format_size(s.logical_bytes),
        s.chunks,
        rfc3339_ms(counted_ms),
        s.under_replicated,
        if s.unrecoverable > 0 {
            " class=\"bad\""
        } else {
            ""
        },
        s.unrecoverable,
        s.repair_queue,
        s.repairs_running,
        s.repairs_done,
        format_size(s.repair_bytes_done),
        format_size(s.repair_rate_bytes),
        s.gc_backlog_chunks,
        format_size(s.gc_backlog_bytes),
        format_size(s.gc_freed_bytes),
        s.scrub_checked,
        s.scrub_total,
        s.scrub_errors,
    );
}

fn node_table(h: &mut String, nodes: &[NodeInfo], now: i64) {
    if nodes.is_empty() {
        h.push_str("<p>no datanode has joined yet</p>");
        return;
    }
    h.push_str(
        "<table id=\"nodes\"><tr><th>node</th><th>state</th><th>address</th><th>used</th>\
         <th class=\"num\">capacity</th><th class=\"num\">chunks</th><th>last heartbeat</th></tr>",
    );
    for n in nodes {
        let state = state_name(n.state);
        let used = percent(n.used_bytes, n.capacity_bytes);
        let _ = write!(
            h,
            "<tr id=\"node-{id}\" data-state=\"{state}\"><td>{id}</td>\
             <td class=\"state {state}\">{state}{}</td><td>{}</td>\
             <td><div class=\"bar\" title=\"{used:.1}% used\"><div class=\"fill\" style=\"width:{used:.1}%\"></div></div>\
             {} ({used:.0}%)</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
            if n.safe_to_remove {
                " (safe to remove)"
            } else {
                ""
            },
            esc(&n.addr),
            format_size(n.used_bytes),
            format_size(n.capacity_bytes),
            n.chunk_count,
            ago(n.last_seen.as_ms(), now),
            id = esc(n.node_id.as_str()),
        );
    }
    h.push_str("</table>");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            esc("<a href=\"x\">&'"),
            "&lt;a href=&quot;x&quot;&gt;&amp;&#39;"
        );
        assert_eq!(ago(0, 5), "never");
        assert_eq!(ago(1000, 3500), "2.5 s ago");
        assert_eq!(percent(1, 0), 0.0);
    }
}
