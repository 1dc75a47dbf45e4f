//! Points in time as dfsd records them: milliseconds since the Unix epoch, the unit of the
//! store and the wire. A newtype so a time is never mistaken for a size or a count.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_ms(ms: i64) -> Timestamp {
        Timestamp(ms)
    }

    pub fn now() -> Timestamp {
        Timestamp(super::now_ms())
    }

    pub const fn as_ms(self) -> i64 {
        self.0
    }

    /// The time as a `SystemTime` (times before the epoch become the epoch).
    pub fn to_system_time(self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.0.max(0) as u64)
    }

    /// `None` for 0, the wire's "not set".
    pub fn nonzero(ms: i64) -> Option<Timestamp> {
        (ms != 0).then_some(Timestamp(ms))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_unset_and_times_round_trip() {
        assert_eq!(Timestamp::nonzero(0), None);
        assert_eq!(Timestamp::nonzero(5).map(Timestamp::as_ms), Some(5));
        assert_eq!(
            Timestamp::from_ms(1_500).to_system_time(),
            UNIX_EPOCH + Duration::from_millis(1_500)
        );
        assert_eq!(Timestamp::from_ms(-3).to_system_time(), UNIX_EPOCH);
    }
}
