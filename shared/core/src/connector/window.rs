//! Pull windows: which `updated_at` range a run asks the ATS for.
//!
//! Windows are two-sided (`from <= updated_at <= to`) because list results are ordered
//! by id, not by timestamp: a record updated during a crawl can move, and an open upper
//! end would let it slip between pages. The upper end stops a *lag* short of now (the
//! ATS's index may still be catching up with the last minutes), and each run re-reads a
//! *lookback* before the previous watermark to pick up records whose `updated_at` was
//! committed late. Re-reading is harmless: versioning ignores unchanged content.

use chrono::{DateTime, Duration, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// `from <= updated_at <= to`, both at millisecond precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
}

impl Window {
    pub fn contains(&self, t: DateTime<Utc>) -> bool {
        self.from <= t && t <= self.to
    }
}

/// How windows are derived from a watermark (the `to` of the last completed window).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowPolicy {
    /// How far short of now a window ends.
    pub lag: Duration,
    /// How far before the watermark the next window starts.
    pub lookback: Duration,
}

impl Default for WindowPolicy {
    fn default() -> Self {
        Self {
            lag: Duration::minutes(5),
            lookback: Duration::hours(1),
        }
    }
}

fn millis(t: DateTime<Utc>) -> DateTime<Utc> {
    // Truncation cannot fail for in-range timestamps; fall back to the value itself.
    t.duration_trunc(TimeDelta::milliseconds(1)).unwrap_or(t)
}

impl WindowPolicy {
    /// The first window of a tenant: everything since the epoch (full backfill).
    pub fn initial(&self, now: DateTime<Utc>) -> Window {
        Window {
            from: DateTime::<Utc>::UNIX_EPOCH,
            to: millis(now - self.lag).max(DateTime::<Utc>::UNIX_EPOCH),
        }
    }

    /// The window after a completed one whose `to` was `watermark`; `None` without a
    /// watermark means "start with [`WindowPolicy::initial`]". Returns `None` when the
    /// window would be empty (clock moved backwards), so the caller skips the run.
    pub fn next(&self, watermark: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Window> {
        let Some(wm) = watermark else {
            return Some(self.initial(now));
        };
        let from = millis(wm - self.lookback).max(DateTime::<Utc>::UNIX_EPOCH);
        let to = millis(now - self.lag);
        (to > from).then_some(Window { from, to })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn initial_window_starts_at_epoch_and_stops_lag_short_of_now() {
        let w = WindowPolicy::default().initial(t("2026-03-01T12:00:00.123456Z"));
        assert_eq!(w.from, DateTime::<Utc>::UNIX_EPOCH);
        assert_eq!(w.to, t("2026-03-01T11:55:00.123Z"));
    }

    #[test]
    fn next_window_reaches_back_by_lookback_and_overlaps_the_previous_one() {
        let p = WindowPolicy::default();
        let wm = t("2026-03-01T11:55:00Z");
        let w = p.next(Some(wm), t("2026-03-01T12:30:00Z")).unwrap();
        assert_eq!(w.from, t("2026-03-01T10:55:00Z"));
        assert_eq!(w.to, t("2026-03-01T12:25:00Z"));
        assert!(w.contains(wm), "the watermark itself is re-read");
    }

    #[test]
    fn consecutive_windows_leave_no_gap() {
        let p = WindowPolicy::default();
        let mut now = t("2026-03-01T00:00:00Z");
        let mut w = p.initial(now);
        for step_min in [1, 7, 60, 180, 2] {
            now += Duration::minutes(step_min);
            let n = p.next(Some(w.to), now).unwrap();
            assert!(n.from <= w.to, "gap between {w:?} and {n:?}");
            assert!(n.to >= w.to);
            w = n;
        }
    }

    #[test]
    fn no_watermark_means_initial_backfill() {
        let p = WindowPolicy::default();
        let now = t("2026-03-01T00:00:00Z");
        assert_eq!(p.next(None, now), Some(p.initial(now)));
    }

    #[test]
    fn clock_moving_backwards_yields_no_window() {
        let p = WindowPolicy {
            lag: Duration::minutes(5),
            lookback: Duration::zero(),
        };
        assert_eq!(
            p.next(Some(t("2026-03-01T12:00:00Z")), t("2026-03-01T11:00:00Z")),
            None
        );
    }

    #[test]
    fn lookback_never_goes_before_epoch() {
        let p = WindowPolicy {
            lag: Duration::zero(),
            lookback: Duration::days(365 * 100),
        };
        let w = p
            .next(Some(t("2000-01-01T00:00:00Z")), t("2000-01-02T00:00:00Z"))
            .unwrap();
        assert_eq!(w.from, DateTime::<Utc>::UNIX_EPOCH);
    }
}
