//! Calling again with exponential backoff while a failure is one worth waiting out (a
//! coordinator restarting, a connection refused), up to a deadline.
//!
//! Used where a peer is expected back soon: the datanode's replica reports and the SDK's
//! upload calls. The caller says which errors are transient; any other error, and the last
//! transient one once the next pause would pass the deadline, is returned as it came.

use std::future::Future;
use std::time::Duration;

use tokio::time::Instant;

/// How long to wait between calls, and for how long in all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The pause after the first failure; each next pause is twice the last.
    pub first: Duration,
    /// The longest pause.
    pub max: Duration,
    /// No call starts later than this after the first.
    pub give_up_after: Duration,
}

impl Backoff {
    /// 50 ms, doubling up to 2 s, for `give_up_after` in all.
    pub const fn patient(give_up_after: Duration) -> Backoff {
        Backoff {
            first: Duration::from_millis(50),
            max: Duration::from_secs(2),
            give_up_after,
        }
    }

    /// Calls `call` until it succeeds, fails with an error `transient` refuses, or the next
    /// pause would end past the deadline. `on_retry` hears each transient error with the
    /// pause about to be taken (for logging).
    pub async fn retry<T, E, F, Fut>(
        self,
        mut call: F,
        transient: impl Fn(&E) -> bool,
        on_retry: impl Fn(&E, Duration),
    ) -> Result<T, E>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let deadline = Instant::now() + self.give_up_after;
        let mut pause = self.first;
        loop {
            match call().await {
                Err(e) if transient(&e) && Instant::now() + pause < deadline => {
                    on_retry(&e, pause);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(self.max);
                }
                other => return other,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Debug, PartialEq, Eq)]
    enum Failure {
        Transient(u32),
        Final,
    }

    /// Runs a retry whose call fails transiently `fail_first` times (then succeeds), and
    /// returns the result, the number of calls and the (virtual) time taken.
    async fn run(fail_first: u32, give_up_after: Duration) -> (Result<u32, Failure>, u32, u128) {
        let calls = Cell::new(0u32);
        let pauses = Cell::new(0u32);
        let start = Instant::now();
        let result = Backoff::patient(give_up_after)
            .retry(
                || {
                    calls.set(calls.get() + 1);
                    let n = calls.get();
                    async move {
                        if n <= fail_first {
                            Err(Failure::Transient(n))
                        } else {
                            Ok(n)
                        }
                    }
                },
                |e| matches!(e, Failure::Transient(_)),
                |_, _| pauses.set(pauses.get() + 1),
            )
            .await;
        assert_eq!(pauses.get() + 1, calls.get(), "one pause between calls");
        (result, calls.get(), start.elapsed().as_millis())
    }

    #[tokio::test(start_paused = true)]
    async fn pauses_double_up_to_the_cap_until_success() {
        // 50 + 100 + 200 + 400 + 800 + 1600 + 2000 + 2000 ms of pauses before call 9.
        let (result, calls, ms) = run(8, Duration::from_secs(60)).await;
        assert_eq!(result, Ok(9));
        assert_eq!(calls, 9);
        assert_eq!(ms, 7150);
    }

    #[tokio::test(start_paused = true)]
    async fn gives_up_with_the_last_error_before_the_deadline() {
        // Calls at 0, 50, 150, 350, 750, 1550, 3150, then every 2 s up to 19150 ms; the
        // next pause would end past 20 s.
        let (result, calls, ms) = run(u32::MAX, Duration::from_secs(20)).await;
        assert_eq!(result, Err(Failure::Transient(15)));
        assert_eq!(calls, 15);
        assert_eq!(ms, 19150);
    }

    #[tokio::test(start_paused = true)]
    async fn a_final_error_is_returned_at_once() {
        let calls = Cell::new(0u32);
        let start = Instant::now();
        let result: Result<(), Failure> = Backoff::patient(Duration::from_secs(20))
            .retry(
                || {
                    calls.set(calls.get() + 1);
                    async { Err(Failure::Final) }
                },
                |e| matches!(e, Failure::Transient(_)),
                |_, _| panic!("no retry after a final error"),
            )
            .await;
        assert_eq!(result, Err(Failure::Final));
        assert_eq!(calls.get(), 1);
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
