//! A token bucket that caps the byte rate of one kind of background work on a node
//! (replication pulls, scrubbing), shared by every task doing that work, so that
//! background traffic never starves client reads and writes however many tasks run.
//!
//! Callers take tokens *before* moving the bytes. A request larger than the tokens on hand
//! is granted at once but puts the bucket into debt, and the caller sleeps until the debt is
//! paid off; later callers see the debt and queue up behind it. This keeps the long-run rate
//! exact without a lock held across an await, lets a single request exceed the burst (a
//! 64 MiB chunk under a 1 MiB/s limit simply waits 64 s), and a caller that is cancelled
//! while sleeping has still paid, which errs on the side of less traffic.

use crate::sync::Locked;
use std::sync::Mutex;
use std::time::Duration;

// tokio's clock, so that tests with a paused runtime control it.
use tokio::time::Instant;

pub struct TokenBucket {
    /// Bytes per second; 0 = unlimited.
    rate: u64,
    /// Most tokens an idle bucket saves up: one second's worth.
    burst: f64,
    state: Mutex<State>,
}

struct State {
    /// Negative while in debt.
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A bucket allowing `rate` bytes per second (0 = unlimited), starting full.
    pub fn new(rate: u64) -> Self {
        Self::new_at(rate, Instant::now())
    }

    fn new_at(rate: u64, now: Instant) -> Self {
        let burst = rate as f64;
        TokenBucket {
            rate,
            burst,
            state: Mutex::new(State {
                tokens: burst,
                last: now,
            }),
        }
    }

    /// Waits until `n` bytes may be moved.
    pub async fn acquire(&self, n: u64) {
        let wait = self.reserve(n, Instant::now());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
    }

    /// Takes `n` tokens at time `now` and returns how long the caller must wait before
    /// using them. Separate from [`TokenBucket::acquire`] so the arithmetic is testable
    /// with explicit times.
    fn reserve(&self, n: u64, now: Instant) -> Duration {
        if self.rate == 0 {
            return Duration::ZERO;
        }
        let rate = self.rate as f64;
        let mut s = self.state.locked();
        if now > s.last {
            let refill = now.duration_since(s.last).as_secs_f64() * rate;
            s.tokens = (s.tokens + refill).min(self.burst);
            s.last = now;
        }
        s.tokens -= n as f64;
        if s.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-s.tokens / rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(d: Duration) -> f64 {
        d.as_secs_f64()
    }

    #[test]
    fn unlimited_never_waits() {
        let b = TokenBucket::new(0);
        let t = Instant::now();
        for _ in 0..1000 {
            assert_eq!(b.reserve(u64::MAX / 2, t), Duration::ZERO);
        }
    }

    #[test]
    fn burst_then_steady_rate() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(1000, t0);
        // The first second's worth is free.
        assert_eq!(b.reserve(1000, t0), Duration::ZERO);
        // Then every 500 bytes cost half a second more, queued behind earlier callers.
        assert!((secs(b.reserve(500, t0)) - 0.5).abs() < 1e-9);
        assert!((secs(b.reserve(500, t0)) - 1.0).abs() < 1e-9);
        // Half a second later half the 1000-byte debt is paid: the next 500 wait 1 s.
        let t1 = t0 + Duration::from_millis(500);
        assert!((secs(b.reserve(500, t1)) - 1.0).abs() < 1e-9);
        // Once all debt is paid, waits stop.
        let t2 = t1 + Duration::from_secs(2);
        assert_eq!(b.reserve(1000, t2), Duration::ZERO);
    }

    #[test]
    fn one_request_may_exceed_the_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(1 << 20, t0);
        // 64 MiB at 1 MiB/s: granted, with 63 s to wait (1 s of burst was on hand).
        assert!((secs(b.reserve(64 << 20, t0)) - 63.0).abs() < 1e-6);
    }

    #[test]
    fn idle_time_saves_at_most_one_burst() {
        let t0 = Instant::now();
        let b = TokenBucket::new_at(100, t0);
        assert_eq!(b.reserve(100, t0), Duration::ZERO);
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.reserve(100, later), Duration::ZERO);
        assert!((secs(b.reserve(100, later)) - 1.0).abs() < 1e-9);
    }

    #[test]
    fn long_run_rate_is_exact_for_many_callers() {
        // 8 callers taking 256 KiB frames each at a 10 MiB/s limit: moving 100 MiB in total
        // must take (100 - 10 MiB of burst) / 10 MiB/s = 9 s, whoever asks.
        let rate = 10u64 << 20;
        let t0 = Instant::now();
        let b = TokenBucket::new_at(rate, t0);
        let frame = 256u64 << 10;
        let frames = (100u64 << 20) / frame;
        let mut last_wait = Duration::ZERO;
        for i in 0..frames {
            // Callers arrive spread over the first second, before any wait ends.
            let now = t0 + Duration::from_millis(i % 8);
            let w = b.reserve(frame, now);
            last_wait = last_wait.max(now.duration_since(t0) + w);
        }
        assert!((secs(last_wait) - 9.0).abs() < 0.01, "{last_wait:?}");
    }
}
