//! Client-side pacing from the ATS's rate-limit headers.
//!
//! Greenhouse limits requests per credential per fixed window and reports
//! `X-RateLimit-Limit`, `X-RateLimit-Remaining` and `X-RateLimit-Reset` (epoch seconds)
//! on every response. Every worker of a tenant in this process shares one
//! [`RateLimiter`] (see [`RateLimiter::shared`]), which counts requests as they are sent
//! and, when the window's budget is used up, makes the next sender wait until the
//! reset instead of hitting 429. A 429 (`Retry-After`) blocks every sharer likewise.
//!
//! The decision logic takes the current time as an argument so that it is tested
//! without clocks or sleeps.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// The rate-limit headers of one response, as far as they parsed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RateLimitHeaders {
    pub limit: Option<u64>,
    pub remaining: Option<u64>,
    /// Epoch milliseconds at which the window resets.
    pub reset_ms: Option<i64>,
}

/// Values below this are taken as "seconds from now" rather than epoch seconds: some
/// APIs send a delta, and no epoch second in this century is that small.
const EPOCH_SECONDS_FLOOR: i64 = 1_000_000_000;

impl RateLimitHeaders {
    /// Reads the headers (names are case-insensitive in `HeaderMap`). `now_ms` resolves
    /// a reset given as a delta.
    pub fn parse(headers: &HeaderMap, now_ms: i64) -> Self {
        let num = |name: &str| -> Option<i64> {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .and_then(|s| s.trim().parse::<f64>().ok())
                .filter(|n| n.is_finite() && *n >= 0.0)
                .map(|n| n as i64)
        };
        // A reset further away than `MAX_RETRY_AFTER` is clamped to it, like a
        // `Retry-After`: a hostile value must not stop pacing for ever (nor overflow).
        let latest = now_ms.saturating_add(MAX_RETRY_AFTER.as_millis() as i64);
        let reset_ms = num("x-ratelimit-reset").map(|r| {
            if r < EPOCH_SECONDS_FLOOR {
                now_ms.saturating_add(r.saturating_mul(1000))
            } else {
                r.saturating_mul(1000)
            }
            .min(latest)
        });
        Self {
            limit: num("x-ratelimit-limit").map(|n| n as u64),
            remaining: num("x-ratelimit-remaining").map(|n| n as u64),
            reset_ms,
        }
    }
}

/// The longest wait eds takes from the ATS's headers (`Retry-After`, a reset time): a
/// longer one is clamped to this, so that a hostile or buggy value (`1e20`, a date in
/// the year 9999) neither panics nor parks a tenant forever. A wait beyond the caller's
/// deadline is carried into the next invocation as `ConnectorError::RateLimited`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// The shortest wait after a 429 (`Retry-After: 0`, a date in the past), so that a 429
/// is never retried in a tight loop.
pub const MIN_RETRY_AFTER: Duration = Duration::from_millis(100);

fn clamp_wait(d: Duration) -> Duration {
    d.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER)
}

/// `Retry-After` as a duration in `[MIN_RETRY_AFTER, MAX_RETRY_AFTER]`: delta seconds
/// or an HTTP date. Missing, negative, NaN or unparsable gives `fallback` (clamped
/// too). Never panics, whatever the header says.
pub fn retry_after(headers: &HeaderMap, now: SystemTime, fallback: Duration) -> Duration {
    let fallback = clamp_wait(fallback);
    let Some(v) = headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
    else {
        return fallback;
    };
    if let Ok(secs) = v.parse::<f64>() {
        if secs.is_nan() || secs < 0.0 {
            return fallback;
        }
        // Compared before converting: `Duration::from_secs_f64` panics on values that
        // do not fit (and on infinity).
        if secs >= MAX_RETRY_AFTER.as_secs_f64() {
            return MAX_RETRY_AFTER;
        }
        return clamp_wait(Duration::from_secs_f64(secs));
    }
    match chrono::DateTime::parse_from_rfc2822(v) {
        Ok(at) => {
            let at: SystemTime = at.into();
            clamp_wait(at.duration_since(now).unwrap_or(Duration::ZERO))
        }
        Err(_) => fallback,
    }
}

#[derive(Debug, Default)]
struct State {
    limit: Option<u64>,
    /// Budget left in the current window as of the latest response.
    remaining: Option<u64>,
    reset_ms: Option<i64>,
    /// Requests sent and not yet answered: the ATS may not have counted them yet, so
    /// they are subtracted from `remaining`.
    in_flight: u64,
    /// Set by a 429: nobody sends before this.
    blocked_until_ms: Option<i64>,
    /// The client-side bucket of a [`Pace`]: tokens left as of `bucket_at_ms`.
    bucket_tokens: f64,
    bucket_at_ms: Option<i64>,
}

/// A client-side token bucket for an ATS that publishes its limit but sends no
/// rate-limit headers (Lever: 10 requests/s, bursts to 20, per credential): sends are
/// spaced so that the ATS's own bucket is never emptied.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub per_second: f64,
    pub burst: f64,
}

/// How long a sender waits while the window's budget is unknown and another request
/// is already out to learn it.
const PROBE_WAIT: Duration = Duration::from_millis(20);

/// Shared pacing state of one credential.
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<State>,
    /// Requests kept in reserve per window (e.g. for other tools using the same
    /// credential).
    reserve: u64,
    /// Added to a reset time before sending again: the reset header has one-second
    /// resolution and the ATS's and our clocks differ a little.
    slack: Duration,
    pace: Option<Pace>,
}

impl Default for RateLimiter {
    fn default() -> Self {
        Self::new(0, Duration::from_millis(250))
    }
}

fn system_now_ms(now: SystemTime) -> i64 {
    now.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl RateLimiter {
    pub fn new(reserve: u64, slack: Duration) -> Self {
        Self {
            state: Mutex::new(State::default()),
            reserve,
            slack,
            pace: None,
        }
    }

    /// A limiter that also spaces sends by `pace` (from a full bucket).
    pub fn paced(pace: Pace) -> Self {
        Self {
            pace: Some(pace),
            ..Self::default()
        }
    }

    /// The limiter shared by every client of `credential_key` (e.g. the tenant id) in
    /// this process. Dropped when the last client is dropped.
    pub fn shared(credential_key: &str) -> Arc<RateLimiter> {
        Self::shared_with(credential_key, None)
    }

    /// [`RateLimiter::shared`] with a client-side [`Pace`] (the pace of the first
    /// limiter created for the key holds while it lives).
    pub fn shared_with(credential_key: &str, pace: Option<Pace>) -> Arc<RateLimiter> {
        static REGISTRY: OnceLock<Mutex<HashMap<String, Weak<RateLimiter>>>> = OnceLock::new();
        let reg = REGISTRY.get_or_init(Default::default);
        let mut map = match reg.lock() {
            Ok(m) => m,
            Err(poisoned) => poisoned.into_inner(),
        };
        if let Some(l) = map.get(credential_key).and_then(Weak::upgrade) {
            return l;
        }
        map.retain(|_, w| w.strong_count() > 0);
        let l = Arc::new(match pace {
            Some(p) => RateLimiter::paced(p),
            None => RateLimiter::default(),
        });
        map.insert(credential_key.to_string(), Arc::downgrade(&l));
        l
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is a few counters: a panic elsewhere cannot leave it inconsistent
        // in a way that matters more than losing pacing for one window.
        match self.state.lock() {
            Ok(s) => s,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// Call before sending. `None`: send now; the request counts as in flight until
    /// [`RateLimiter::release`] (call it exactly once per send, after
    /// [`RateLimiter::observe`]; a drop guard does that in the HTTP core, also when the
    /// request future is cancelled). `Some(d)`: wait `d`, then ask again.
    pub fn acquire_at(&self, now: SystemTime) -> Option<Duration> {
        let now_ms = system_now_ms(now);
        let mut s = self.lock();
        if let Some(until) = s.blocked_until_ms {
            if until > now_ms {
                return Some(Duration::from_millis(until.saturating_sub(now_ms) as u64));
            }
            s.blocked_until_ms = None;
        }
        if let Some(reset) = s.reset_ms
            && now_ms >= reset.saturating_add(self.slack.as_millis() as i64)
        {
            // A new window has started: its budget is learnt from the next response.
            s.remaining = None;
            s.reset_ms = None;
        }
        match s.remaining {
            // Unknown budget: one request at a time probes it, so that concurrent
            // senders cannot overrun a window they know nothing about. (A paced
            // limiter knows its budget: its bucket.)
            None if s.in_flight > 0 && self.pace.is_none() => return Some(PROBE_WAIT),
            Some(remaining) if remaining.saturating_sub(s.in_flight) <= self.reserve => {
                let reset = s
                    .reset_ms
                    .unwrap_or(now_ms)
                    .saturating_add(self.slack.as_millis() as i64);
                return Some(Duration::from_millis(
                    reset.saturating_sub(now_ms).max(1) as u64
                ));
            }
            None | Some(_) => {}
        }
        if let Some(pace) = self.pace {
            let rate = pace.per_second.max(0.001);
            let tokens = match s.bucket_at_ms {
                None => pace.burst,
                Some(at) => (s.bucket_tokens
                    + (now_ms.saturating_sub(at).max(0) as f64) * rate / 1000.0)
                    .min(pace.burst),
            };
            s.bucket_at_ms = Some(now_ms);
            s.bucket_tokens = tokens;
            if tokens < 1.0 {
                let ms = ((1.0 - tokens) * 1000.0 / rate).ceil().max(1.0);
                return Some(Duration::from_millis(ms as u64));
            }
            s.bucket_tokens = tokens - 1.0;
        }
        s.in_flight += 1;
        None
    }

    pub fn acquire(&self) -> Option<Duration> {
        self.acquire_at(SystemTime::now())
    }

    /// Feeds a response's headers back.
    pub fn observe(&self, h: RateLimitHeaders) {
        let mut s = self.lock();
        if h.limit.is_some() {
            s.limit = h.limit;
        }
        let (Some(remaining), Some(reset)) = (h.remaining, h.reset_ms) else {
            return;
        };
        match s.reset_ms {
            // A response from an older window arriving late says nothing about now.
            Some(cur) if reset < cur => {}
            // Same window: answers may arrive out of order; keep the lower.
            Some(cur) if reset == cur => {
                s.remaining = Some(s.remaining.map_or(remaining, |r| r.min(remaining)));
            }
            _ => {
                s.reset_ms = Some(reset);
                s.remaining = Some(remaining);
            }
        }
    }

    /// An acquired send is answered (or failed, or was abandoned).
    pub fn release(&self) {
        let mut s = self.lock();
        s.in_flight = s.in_flight.saturating_sub(1);
    }

    pub fn observe_headers(&self, headers: &HeaderMap) {
        self.observe(RateLimitHeaders::parse(
            headers,
            system_now_ms(SystemTime::now()),
        ));
    }

    /// After a 429: nobody sharing this credential sends for `wait` (clamped to
    /// [`MAX_RETRY_AFTER`]).
    pub fn block_for_at(&self, wait: Duration, now: SystemTime) {
        let wait = wait.min(MAX_RETRY_AFTER);
        self.block_until_ms(system_now_ms(now).saturating_add(wait.as_millis() as i64));
    }

    pub fn block_for(&self, wait: Duration) {
        self.block_for_at(wait, SystemTime::now());
    }

    /// Seeds a block known from outside, e.g. a `retry_at` persisted by an earlier
    /// invocation: nobody sharing this credential sends before `until`. An earlier
    /// block than the current one changes nothing; a time in the past neither.
    pub fn block_until(&self, until: SystemTime) {
        self.block_until_ms(system_now_ms(until));
    }

    fn block_until_ms(&self, until: i64) {
        let mut s = self.lock();
        s.blocked_until_ms = Some(s.blocked_until_ms.map_or(until, |u| u.max(until)));
    }

    /// Until when a 429 (or a seeded block) holds every sender back, if it does at
    /// `now`.
    pub fn blocked_until_at(&self, now: SystemTime) -> Option<SystemTime> {
        let s = self.lock();
        s.blocked_until_ms
            .filter(|u| *u > system_now_ms(now))
            .map(|u| UNIX_EPOCH + Duration::from_millis(u.max(0) as u64))
    }

    pub fn blocked_until(&self) -> Option<SystemTime> {
        self.blocked_until_at(SystemTime::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderName, HeaderValue};

    fn at(ms: i64) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(ms as u64)
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const T0: i64 = 1_780_000_000_000;

    #[test]
    fn header_names_are_case_insensitive_and_reset_is_epoch_seconds() {
        let h = headers(&[
            ("X-RateLimit-Limit", "50"),
            ("x-ratelimit-remaining", "7"),
            ("X-RATELIMIT-RESET", "1780000030"),
        ]);
        let p = RateLimitHeaders::parse(&h, T0);
        assert_eq!(p.limit, Some(50));
        assert_eq!(p.remaining, Some(7));
        assert_eq!(p.reset_ms, Some(1_780_000_030_000));
    }

    #[test]
    fn small_reset_values_are_read_as_seconds_from_now() {
        let h = headers(&[("x-ratelimit-reset", "12")]);
        assert_eq!(RateLimitHeaders::parse(&h, T0).reset_ms, Some(T0 + 12_000));
    }

    #[test]
    fn garbage_headers_are_ignored() {
        let h = headers(&[
            ("x-ratelimit-remaining", "lots"),
            ("x-ratelimit-limit", "-3"),
        ]);
        assert_eq!(RateLimitHeaders::parse(&h, T0), RateLimitHeaders::default());
    }

    fn hdr(remaining: u64, reset_ms: i64) -> RateLimitHeaders {
        RateLimitHeaders {
            limit: Some(5),
            remaining: Some(remaining),
            reset_ms: Some(reset_ms),
        }
    }

    #[test]
    fn sends_until_budget_is_used_then_waits_until_reset() {
        let l = RateLimiter::new(0, Duration::from_millis(500));
        assert_eq!(l.acquire_at(at(T0)), None, "unknown state: one probe");
        l.observe(hdr(2, T0 + 10_000));
        l.release();
        assert_eq!(l.acquire_at(at(T0 + 1)), None);
        assert_eq!(l.acquire_at(at(T0 + 2)), None);
        assert_eq!(
            l.acquire_at(at(T0 + 3_000)),
            Some(Duration::from_millis(7_500)),
            "budget taken by requests in flight: wait until reset + slack"
        );
        l.release();
        l.release();
        assert_eq!(l.acquire_at(at(T0 + 10_500)), None, "new window: probe");
    }

    #[test]
    fn unknown_budget_is_probed_by_one_request_at_a_time() {
        let l = RateLimiter::new(0, Duration::ZERO);
        assert_eq!(l.acquire_at(at(T0)), None);
        assert_eq!(l.acquire_at(at(T0)), Some(PROBE_WAIT));
        l.release();
        assert_eq!(l.acquire_at(at(T0)), None, "a failed probe frees the slot");
    }

    #[test]
    fn requests_in_flight_count_against_the_reported_budget() {
        let l = RateLimiter::new(0, Duration::ZERO);
        assert_eq!(l.acquire_at(at(T0)), None);
        l.observe(hdr(3, T0 + 1_000));
        l.release();
        // Three sends while none has been answered use the whole budget.
        for _ in 0..3 {
            assert_eq!(l.acquire_at(at(T0)), None);
        }
        assert!(l.acquire_at(at(T0)).is_some());
        // One answer saying 2 left (it counted only itself): the two others are still
        // in flight, so nothing more may go.
        l.observe(hdr(2, T0 + 1_000));
        l.release();
        assert!(l.acquire_at(at(T0)).is_some());
    }

    #[test]
    fn reserve_is_kept_back() {
        let l = RateLimiter::new(2, Duration::ZERO);
        assert_eq!(l.acquire_at(at(T0)), None);
        l.observe(hdr(3, T0 + 1_000));
        l.release();
        assert_eq!(l.acquire_at(at(T0)), None);
        assert!(l.acquire_at(at(T0)).is_some());
    }

    #[test]
    fn late_response_from_an_older_window_does_not_reset_budget() {
        let l = RateLimiter::new(0, Duration::ZERO);
        l.observe(hdr(0, T0 + 30_000));
        l.observe(hdr(4, T0));
        assert!(l.acquire_at(at(T0 + 1)).is_some());
    }

    #[test]
    fn same_window_keeps_the_lower_remaining() {
        let l = RateLimiter::new(0, Duration::ZERO);
        l.observe(hdr(1, T0 + 30_000));
        l.observe(hdr(3, T0 + 30_000));
        assert_eq!(l.acquire_at(at(T0)), None);
        assert!(l.acquire_at(at(T0)).is_some());
    }

    #[test]
    fn a_429_blocks_every_sharer() {
        let l = RateLimiter::new(0, Duration::ZERO);
        l.block_for_at(Duration::from_secs(3), at(T0));
        assert_eq!(l.acquire_at(at(T0 + 1_000)), Some(Duration::from_secs(2)));
        assert_eq!(l.acquire_at(at(T0 + 3_000)), None);
    }

    #[test]
    fn shared_limiter_is_one_per_credential() {
        let a = RateLimiter::shared("tenant-a-ratelimit-test");
        let b = RateLimiter::shared("tenant-a-ratelimit-test");
        let c = RateLimiter::shared("tenant-c-ratelimit-test");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &c));
    }

    #[test]
    fn retry_after_accepts_seconds_and_dates_and_never_zero() {
        let now = at(T0);
        let fb = Duration::from_secs(1);
        assert_eq!(
            retry_after(&headers(&[("Retry-After", "4")]), now, fb),
            Duration::from_secs(4)
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "0")]), now, fb),
            Duration::from_millis(100)
        );
        assert_eq!(retry_after(&HeaderMap::new(), now, fb), fb);
        assert_eq!(
            retry_after(&headers(&[("retry-after", "soon")]), now, fb),
            fb
        );
        let date = chrono::DateTime::<chrono::Utc>::from(now + Duration::from_secs(5))
            .format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string();
        let d = retry_after(&headers(&[("retry-after", &date)]), now, fb);
        assert_eq!(d, Duration::from_secs(5));
    }

    #[test]
    fn hostile_retry_after_values_never_panic_and_are_clamped() {
        let now = at(T0);
        let fb = Duration::from_secs(5);
        let ra = |v: &str| retry_after(&headers(&[("retry-after", v)]), now, fb);
        for huge in [
            "1e20",
            "999999",
            "3601",
            "inf",
            "+inf",
            "1.8e308",
            "18446744073709551616",
        ] {
            assert_eq!(ra(huge), MAX_RETRY_AFTER, "{huge}");
        }
        for bad in ["-1", "-inf", "NaN", "nan", "", "soon", "1 2", "0x10"] {
            assert_eq!(ra(bad), fb, "{bad:?}");
        }
        assert_eq!(ra("3600"), MAX_RETRY_AFTER);
        assert_eq!(ra("0.001"), MIN_RETRY_AFTER);
        assert_eq!(ra("1.5"), Duration::from_millis(1500));
        assert_eq!(ra("Fri, 31 Dec 9999 23:59:59 GMT"), MAX_RETRY_AFTER);
        assert_eq!(ra("Thu, 01 Jan 1970 00:00:00 GMT"), MIN_RETRY_AFTER);
        assert_eq!(ra("Mon, 32 Foo 2026 99:99:99 GMT"), fb);
        // The fallback itself is clamped.
        assert_eq!(
            retry_after(&HeaderMap::new(), now, Duration::from_secs(u64::MAX)),
            MAX_RETRY_AFTER
        );
        assert_eq!(
            retry_after(&HeaderMap::new(), now, Duration::ZERO),
            MIN_RETRY_AFTER
        );
    }

    #[test]
    fn hostile_reset_headers_are_clamped_and_never_overflow() {
        for v in ["9e18", "1e300", "9223372036854775807"] {
            let h = headers(&[("x-ratelimit-remaining", "0"), ("x-ratelimit-reset", v)]);
            let p = RateLimitHeaders::parse(&h, T0);
            assert_eq!(p.reset_ms, Some(T0 + 3_600_000), "{v}");
            let l = RateLimiter::new(0, Duration::from_millis(250));
            l.observe(p);
            assert_eq!(
                l.acquire_at(at(T0)),
                Some(Duration::from_millis(3_600_250)),
                "{v}"
            );
        }
        // A delta just under the epoch floor, from a clock near the end of time.
        let h = headers(&[("x-ratelimit-reset", "999999999")]);
        assert_eq!(
            RateLimitHeaders::parse(&h, i64::MAX - 5).reset_ms,
            Some(i64::MAX)
        );
    }

    #[test]
    fn a_huge_block_is_clamped_and_a_seeded_block_holds_senders_back() {
        let l = RateLimiter::new(0, Duration::ZERO);
        l.block_for_at(Duration::MAX, at(T0));
        assert_eq!(l.acquire_at(at(T0)), Some(MAX_RETRY_AFTER));

        let l = RateLimiter::new(0, Duration::ZERO);
        assert_eq!(l.blocked_until_at(at(T0)), None);
        l.block_until(at(T0 + 90_000));
        assert_eq!(l.acquire_at(at(T0)), Some(Duration::from_secs(90)));
        assert_eq!(l.blocked_until_at(at(T0)), Some(at(T0 + 90_000)));
        // An earlier block does not shorten it; the past does not block.
        l.block_until(at(T0 + 1_000));
        assert_eq!(l.blocked_until_at(at(T0)), Some(at(T0 + 90_000)));
        assert_eq!(l.blocked_until_at(at(T0 + 90_000)), None);
        assert_eq!(l.acquire_at(at(T0 + 90_000)), None);
        let l = RateLimiter::new(0, Duration::ZERO);
        l.block_until(at(T0 - 1_000));
        assert_eq!(l.acquire_at(at(T0)), None);
    }

    #[test]
    fn a_paced_limiter_sends_its_burst_then_one_request_per_interval() {
        let l = RateLimiter::paced(Pace {
            per_second: 8.0,
            burst: 10.0,
        });
        for _ in 0..10 {
            assert_eq!(l.acquire_at(at(T0)), None);
            l.release();
        }
        // The bucket is empty: the next token comes 1/8 s later.
        assert_eq!(l.acquire_at(at(T0)), Some(Duration::from_millis(125)));
        assert_eq!(l.acquire_at(at(T0 + 125)), None);
        l.release();
        assert!(l.acquire_at(at(T0 + 130)).is_some());
        // A long pause refills the bucket to its burst, never beyond.
        for _ in 0..10 {
            assert_eq!(l.acquire_at(at(T0 + 60_000)), None);
            l.release();
        }
        assert!(l.acquire_at(at(T0 + 60_000)).is_some());
    }

    #[test]
    fn over_any_second_a_paced_limiter_sends_at_most_burst_plus_rate() {
        let l = RateLimiter::paced(Pace {
            per_second: 8.0,
            burst: 10.0,
        });
        let mut sent = Vec::new();
        let mut now = T0;
        while now < T0 + 5_000 {
            match l.acquire_at(at(now)) {
                None => {
                    l.release();
                    sent.push(now);
                }
                Some(wait) => now += wait.as_millis() as i64,
            }
        }
        for (i, t) in sent.iter().enumerate() {
            let in_second = sent[i..].iter().take_while(|u| **u < t + 1000).count();
            assert!(in_second <= 18, "{in_second} sends in the second from {t}");
        }
        // Steady state: 8 per second after the burst.
        assert!((48..=52).contains(&sent.len()), "{}", sent.len());
    }
}
