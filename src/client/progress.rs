//! Progress bars for `put` and `get` (indicatif): bytes, rate and ETA on stderr, only
//! when stderr is a terminal and the command was not asked to be quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A bar for `total` bytes (a spinner with a byte count when unknown), or `None` when
/// progress should not be shown.
pub fn bar(total: Option<u64>, quiet: bool) -> Option<ProgressBar> {
    if quiet || !std::io::stderr().is_terminal() {
        return None;
    }
    let pb = match total {
        Some(n) => ProgressBar::with_draw_target(Some(n), ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
            )
            .expect("valid template"),
        ),
        None => ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
            )
            .expect("valid template"),
        ),
    };
    pb.enable_steady_tick(Duration::from_millis(200));
    Some(pb)
}
