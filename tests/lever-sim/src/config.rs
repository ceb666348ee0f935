//! Simulator configuration. Where public descriptions of Lever disagree, the behaviour
//! is an option here and the default is the documented one (README, "Decisions").

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Which clock the rate-limit buckets refill on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum RateClock {
    /// Wall-clock time (default): a client that backs off really waits.
    #[default]
    Real,
    /// The simulated clock: tests advance it to refill the bucket without waiting.
    Simulated,
}

/// What a `limit` outside 1..=100 gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum LimitPolicy {
    /// 400 `BadRequestError` (default: Lever documents the range; a client sending
    /// 500 should find out rather than silently get 100).
    #[default]
    Reject,
    /// Clamped into 1..=100.
    Clamp,
}

/// What a credential without `confidential:access:admin` gets when it asks for
/// confidential opportunities or postings in a list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum ConfidentialPolicy {
    /// They are left out silently (default), as if they did not exist.
    #[default]
    Omit,
    /// The list request is refused with 403.
    Forbid,
}

/// A run of 429 answers that starts at random, independent of the real bucket.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Burst429 {
    /// Probability that a request starts a burst.
    pub probability: f64,
    /// Consecutive requests answered 429 (including the first).
    pub length: u32,
}

/// Seeded fault injection on the API (not the token endpoint). Rates are
/// probabilities per request. `SimHandle::fail_next` / `delay_next` /
/// `rate_limit_next` add deterministic faults on top.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Faults {
    pub seed: u64,
    /// 500/502/503 with a JSON error body.
    pub error_5xx_rate: f64,
    /// Extra latency per request, uniform in `[min, max]` (a timeout test sets it
    /// above the client's timeout).
    pub latency: Option<(Duration, Duration)>,
    pub burst_429: Option<Burst429>,
}

/// Everything configurable. `Default` is Lever as documented, without faults.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SimConfig {
    /// Token bucket per credential: steady refill rate (requests per second); 0 = off.
    pub rate_per_sec: f64,
    /// Token bucket capacity (the burst).
    pub rate_burst: u32,
    pub rate_clock: RateClock,
    /// (uncertain) Send `Retry-After` (whole seconds until a request would pass) on 429.
    /// Default `false`: Lever documents no rate-limit headers.
    pub retry_after_header: bool,
    pub access_token_ttl: Duration,
    /// A refresh token family dies this long after the authorization-code grant.
    pub refresh_token_max_ttl: Duration,
    /// A refresh token dies when unused this long.
    pub refresh_token_idle_ttl: Duration,
    pub auth_code_ttl: Duration,
    /// The `audience` the token endpoint expects.
    pub audience: String,
    /// (uncertain) Whether a refresh grant must carry `audience`. Default `false`; when
    /// it is sent it must be right either way.
    pub require_audience_on_refresh: bool,
    /// HTTP status of `invalid_grant` (400 per RFC 6749; some Auth0 tenants send 403).
    pub invalid_grant_status: u16,
    /// (extra) Re-using a rotated refresh token also revokes every token of its family
    /// (Auth0's reuse detection). Default `false`.
    pub revoke_family_on_reuse: bool,
    pub limit_policy: LimitPolicy,
    /// Largest page of `/resumes` and `/files` (Lever's own cap is 100; tests set 2 to
    /// get several pages without generating hundreds of resumes).
    pub resume_page_size: usize,
    pub confidential_policy: ConfidentialPolicy,
    /// (uncertain) Widest `deleted_at_start..deleted_at_end` window accepted by
    /// `/opportunities/deleted`; wider is 400. Default `None`: no limit.
    pub deleted_max_window: Option<Duration>,
    pub faults: Faults,
    /// Listener port for API and token endpoint (0 = any free port).
    pub port: u16,
    pub bind_host: std::net::IpAddr,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            rate_per_sec: 10.0,
            rate_burst: 20,
            rate_clock: RateClock::Real,
            retry_after_header: false,
            access_token_ttl: Duration::from_secs(3600),
            refresh_token_max_ttl: Duration::from_secs(365 * 24 * 3600),
            refresh_token_idle_ttl: Duration::from_secs(90 * 24 * 3600),
            auth_code_ttl: Duration::from_secs(600),
            audience: crate::AUDIENCE.to_string(),
            require_audience_on_refresh: false,
            invalid_grant_status: 400,
            revoke_family_on_reuse: false,
            limit_policy: LimitPolicy::Reject,
            resume_page_size: 100,
            confidential_policy: ConfidentialPolicy::Omit,
            deleted_max_window: None,
            faults: Faults::default(),
            port: 0,
            bind_host: std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST),
        }
    }
}
