//! Simulator configuration: rate limits, token behaviour, expiries and faults.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// How the token endpoint states the access-token lifetime (sources disagree).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ExpiryStyle {
    /// `"expires_at": "2026-01-01T12:00:00Z"` (Greenhouse's documented form).
    #[default]
    ExpiresAt,
    /// `"expires_in": 3600`.
    ExpiresIn,
}

/// Which clock the rate-limit windows follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RateClock {
    /// Wall-clock time (default): a client that honours `Retry-After` really waits.
    #[default]
    Real,
    /// The simulated clock: tests advance it to open the next window without waiting.
    Simulated,
}

/// A run of 429 responses that starts at random, independent of the real limit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Burst429 {
    /// Probability that a request starts a burst.
    pub probability: f64,
    /// Number of consecutive requests answered 429 (including the first).
    pub length: u32,
    /// The `Retry-After` given during the burst.
    pub retry_after_secs: u64,
}

/// Seeded fault injection on the API (not the token endpoint or the storage host). All
/// rates are probabilities per request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    pub seed: u64,
    /// 500/502/503 with a JSON error body.
    pub error_5xx_rate: f64,
    /// Extra latency per request, uniform in `[min, max]`.
    pub latency: Option<(Duration, Duration)>,
    pub burst_429: Option<Burst429>,
    /// A 200 whose JSON body is cut in half.
    pub malformed_body_rate: f64,
    /// A valid cursor answered 422 as expired.
    pub cursor_expiry_rate: f64,
}

/// A deliberately hostile (or badly broken) ATS on the API surfaces, after
/// authentication: for tests of what the client does with answers no real Greenhouse
/// should give. `Default`: off.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hostile {
    /// Every API request is answered 429 with this `Retry-After` value, verbatim
    /// (`"1e20"`, `"999999"`, an HTTP date, garbage).
    pub retry_after: Option<String>,
    /// Every API request is answered 200 with a JSON array of this many synthetic rows,
    /// generated while it is sent (chunked, no `Content-Length`), so that a page of any
    /// size is served without being held in memory.
    pub page_rows: Option<u64>,
    /// Approximate size of one synthetic row in bytes (0: 1,000).
    pub row_bytes: u32,
    /// Send every API response body (not `page_rows` pages) at this many bytes per
    /// second.
    pub drip_bytes_per_sec: Option<u64>,
}

/// Everything configurable. `Default`: limits off, no faults, Greenhouse's documented
/// lifetimes.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// Requests per credential per v3 window; 0 = no limit.
    pub rate_limit_v3: u32,
    /// Token requests per client per token window; 0 = no limit.
    pub token_rate_limit: u32,
    pub rate_window_v3: Duration,
    pub token_rate_window: Duration,
    pub rate_clock: RateClock,
    pub token_expiry_style: ExpiryStyle,
    pub access_token_ttl: Duration,
    /// Refresh tokens expire this long after they were issued (each use rotates them).
    pub refresh_token_idle_ttl: Duration,
    pub auth_code_ttl: Duration,
    /// Cursor lifetime in simulated time; `None` = never expires.
    pub cursor_ttl: Option<Duration>,
    /// Lifetime of signed attachment URLs in simulated time.
    pub attachment_url_ttl: Duration,
    pub faults: Faults,
    pub hostile: Hostile,
    /// API + token listener port (0 = any free port).
    pub api_port: u16,
    /// Storage listener port (0 = any free port).
    pub storage_port: u16,
    /// The address both listeners bind (127.0.0.1; the Docker bridge gateway for the
    /// SAM CLI tests, whose functions run in containers).
    pub bind_host: std::net::IpAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rate_limit_v3: 0,
            token_rate_limit: 0,
            rate_window_v3: Duration::from_secs(30),
            token_rate_window: Duration::from_secs(60),
            rate_clock: RateClock::Real,
            token_expiry_style: ExpiryStyle::ExpiresAt,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_idle_ttl: Duration::from_secs(24 * 3600),
            auth_code_ttl: Duration::from_secs(60),
            cursor_ttl: None,
            attachment_url_ttl: Duration::from_secs(7 * 24 * 3600),
            faults: Faults::default(),
            hostile: Hostile::default(),
            api_port: 0,
            storage_port: 0,
            bind_host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }
}
