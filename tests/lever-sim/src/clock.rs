//! The simulated clock. It drives token and authorization-code expiry, the `updatedAt`
//! and `deletedAt` written by mutations and (optionally) the rate-limit buckets, so a
//! test can jump a day or a year ahead without waiting.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// A shared, manually driven clock. Cloning shares the same time.
#[derive(Debug, Clone)]
pub struct SimClock(Arc<Mutex<DateTime<Utc>>>);

impl SimClock {
    pub fn new(start: DateTime<Utc>) -> Self {
        SimClock(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Now in epoch milliseconds, Lever's timestamp unit.
    pub fn now_ms(&self) -> i64 {
        self.now().timestamp_millis()
    }

    pub fn advance(&self, by: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// Sets the clock (it may go backwards; the test decides).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}
