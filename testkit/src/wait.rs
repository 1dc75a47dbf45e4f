//! Deadline-bounded waits: poll a condition until it holds, or fail the test naming what
//! was awaited. The only sleeps in the kit are these polls' intervals.

use std::future::Future;
use std::time::{Duration, Instant};

/// Polls `cond` until it is true or `timeout` passes (then panics with `what`).
pub fn wait_until(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Polls an async condition until it holds or `timeout` passes (then panics with `what`).
pub async fn eventually<F: Future<Output = bool>>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> F,
) {
    let deadline = Instant::now() + timeout;
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}
