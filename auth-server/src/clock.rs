//! The auth server's one clock: wall time in ms or seconds since the Unix epoch, and one
//! conversion of a `Duration` to ms.
//!
//! Decisions about sessions and lockouts take their time from Redis (`TIME`, inside the Lua
//! scripts), so instances whose clocks disagree still agree on them; this clock is for what
//! the instance itself stamps.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `d` in whole ms, saturating (a `Duration` of more than 584 million years is `u64::MAX`).
pub fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Now, in ms since the Unix epoch (0 for a clock set before 1970).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(millis).unwrap_or_default()
}

/// Now, in whole seconds since the Unix epoch.
pub fn now_secs() -> u64 {
    now_ms() / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_saturates_and_now_is_after_2020() {
        assert_eq!(millis(Duration::from_micros(1999)), 1);
        assert_eq!(millis(Duration::MAX), u64::MAX);
        assert!(now_ms() > 1_577_836_800_000);
        assert!(now_secs().abs_diff(now_ms() / 1000) <= 1);
    }
}
