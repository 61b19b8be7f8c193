//! An injectable clock, so that time-based gates and lease expiry are testable without sleeping.

use std::fmt::Debug;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
///
/// # Contract
/// `now` never goes backwards within one clock instance, except when a test moves a [`ManualClock`] on
/// purpose.
pub trait Clock: Debug + Send + Sync + 'static {
    /// The current time.
    fn now(&self) -> DateTime<Utc>;
}

forward_to_inner!(Clock {
    fn now(&self) -> DateTime<Utc> {
        (**self).now()
    }
});

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that moves only when told to, for tests.
///
/// ```
/// use promote_core::clock::{Clock, ManualClock};
/// let clock = ManualClock::at("2026-01-01T00:00:00Z".parse().unwrap());
/// clock.advance(chrono::Duration::hours(2));
/// assert_eq!(clock.now().to_rfc3339(), "2026-01-01T02:00:00+00:00");
/// ```
#[derive(Debug, Clone)]
pub struct ManualClock {
    now: Arc<Mutex<DateTime<Utc>>>,
}

impl ManualClock {
    /// A clock stopped at `now`.
    pub fn at(now: DateTime<Utc>) -> Self {
        ManualClock { now: Arc::new(Mutex::new(now)) }
    }

    /// Moves the clock forward (or back, with a negative duration).
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock poisoned") += by;
    }

    /// Sets the clock.
    pub fn set(&self, now: DateTime<Utc>) {
        *self.now.lock().expect("clock poisoned") = now;
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock poisoned")
    }
}
