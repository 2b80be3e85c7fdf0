use std::sync::{Arc, Mutex, PoisonError};

use chrono::{DateTime, SecondsFormat, TimeDelta, Utc};

/// Where the current time comes from. Code never reads the wall clock directly, so tests
/// can move time forward (session expiry, retention) without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The current UTC time.
    fn now(&self) -> DateTime<Utc>;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place that reads the wall clock"
    )]
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that only moves when told to; for tests.
#[derive(Debug, Clone)]
pub struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    /// A clock stopped at `start`.
    pub fn new(start: DateTime<Utc>) -> Self {
        Self(Arc::new(Mutex::new(start)))
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: TimeDelta) {
        let mut now = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        *now += by;
    }

    /// Sets the clock to `to`.
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = to;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The one text form of a stored time: RFC 3339, UTC, milliseconds, `Z`. Fixed width, so
/// stored times compare correctly as strings in SQL.
pub fn format_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses a time written by [`format_time`] (or any RFC 3339 time).
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_times_round_trip_and_sort_as_text() {
        let a = parse_time("2026-01-02T03:04:05.006Z").unwrap();
        let b = a + TimeDelta::milliseconds(1);
        assert_eq!(format_time(a), "2026-01-02T03:04:05.006Z");
        assert!(format_time(a) < format_time(b));
        assert_eq!(parse_time(&format_time(b)), Some(b));
    }

    #[test]
    fn a_manual_clock_moves_only_when_told() {
        let start = parse_time("2026-01-01T00:00:00Z").unwrap();
        let clock = ManualClock::new(start);
        assert_eq!(clock.now(), start);
        clock.advance(TimeDelta::hours(12));
        assert_eq!(clock.now(), start + TimeDelta::hours(12));
    }
}
