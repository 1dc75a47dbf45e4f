//! Progress bars for `put` and `get` (indicatif): the SDK's progress events drawn as bytes,
//! rate and ETA on stderr, only when stderr is a terminal and the command was not asked to
//! be quiet.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::client::Progress;

/// A bar on stderr: a spinner with a byte count until the transfer's total is known.
pub struct Bar(ProgressBar);

impl Bar {
    /// A bar, or `None` when progress should not be shown.
    pub fn new(quiet: bool) -> Option<Bar> {
        if quiet || !std::io::stderr().is_terminal() {
            return None;
        }
        let pb = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()).with_style(
            ProgressStyle::with_template(
                "{spinner} {binary_bytes} {binary_bytes_per_sec} {elapsed}",
            )
            .expect("valid template"),
        );
        pb.enable_steady_tick(Duration::from_millis(200));
        Some(Bar(pb))
    }

    /// Draws one progress event.
    pub fn show(&self, p: Progress) {
        match p {
            Progress::Total(n) => {
                self.0.set_style(
                    ProgressStyle::with_template(
                        "{wide_bar} {binary_bytes}/{binary_total_bytes} {binary_bytes_per_sec} ETA {eta}",
                    )
                    .expect("valid template"),
                );
                self.0.set_length(n);
            }
            Progress::Advanced(n) => self.0.inc(n),
        }
    }

    /// Removes the bar, before the command's own output.
    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// The callback to hand the SDK: draws on `bar`, if there is one.
pub fn reporter(bar: &Option<Bar>) -> impl Fn(Progress) + Sync + '_ {
    move |p| {
        if let Some(b) = bar {
            b.show(p);
        }
    }
}
