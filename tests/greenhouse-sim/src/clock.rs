//! The simulated clock. It drives token, authorization-code, cursor and attachment-URL
//! expiry and the `updated_at` written by mutations, so tests can jump a week ahead
//! without waiting.

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

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let mut g = self.0.lock().unwrap_or_else(|p| p.into_inner());
        *g += chrono::Duration::from_std(by).unwrap_or(chrono::Duration::MAX);
    }

    /// Sets the clock (may go backwards; tests decide).
    pub fn set(&self, to: DateTime<Utc>) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = to;
    }
}
