//! Greenhouse in the provider registry: the streams a pull visits, and a tenant's
//! connector from its settings.

use std::sync::Arc;

use url::Url;

use super::{GreenhouseConfig, GreenhouseV3};
use crate::auth::AccessTokens;
use crate::connector::AtsConnector;
use crate::connector::ratelimit::RateLimiter;
use crate::tenants::{ApiVersion, GreenhouseSettings};

/// A tenant's Harvest v3 client. `Err` is a configuration that cannot work (a message
/// for the tenant's `needs_reauth` reason); nothing is requested here.
pub fn connector(
    settings: &GreenhouseSettings,
    base: Url,
    tokens: Arc<dyn AccessTokens>,
    limiter: Arc<RateLimiter>,
    local_testing: bool,
    fast_retries: bool,
) -> Result<Arc<dyn AtsConnector>, String> {
    if settings.api_version == ApiVersion::Retired {
        return Err(
            "the tenant is configured for Greenhouse Harvest v1/v2, which Greenhouse \
                    removed on 2026-08-31: reconnect it with OAuth (Harvest v3)"
                .into(),
        );
    }
    let mut config = GreenhouseConfig::for_tenant(base, local_testing);
    if fast_retries {
        config = config.with_fast_retries();
    }
    Ok(Arc::new(
        GreenhouseV3::new(config, tokens, limiter).map_err(|e| e.to_string())?,
    ))
}
