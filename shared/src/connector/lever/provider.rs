//! Lever in the provider registry: a tenant's connector from its settings.

use std::sync::Arc;

use url::Url;

use super::{LeverClient, LeverConfig};
use crate::auth::AccessTokens;
use crate::connector::AtsConnector;
use crate::connector::ratelimit::RateLimiter;
use crate::tenants::LeverSettings;

/// A tenant's Lever client. `Err` is a configuration that cannot work; nothing is
/// requested here.
pub fn connector(
    _settings: &LeverSettings,
    base: Url,
    tokens: Arc<dyn AccessTokens>,
    limiter: Arc<RateLimiter>,
    local_testing: bool,
    fast_retries: bool,
) -> Result<Arc<dyn AtsConnector>, String> {
    let mut config = LeverConfig::for_tenant(base, local_testing);
    if fast_retries {
        config = config.with_fast_retries();
    }
    Ok(Arc::new(
        LeverClient::new(config, tokens, limiter).map_err(|e| e.to_string())?,
    ))
}
