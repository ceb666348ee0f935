//! SSRF guard for attachment downloads: which URLs and which resolved addresses eds may
//! connect to.
//!
//! Attachment URLs come from the ATS, i.e. from outside. A URL pointing at the instance
//! metadata service, at a VPC-internal host or at localhost would let whoever controls
//! the ATS data read our infrastructure, so every hop is checked: scheme, host against a
//! configured allow-list of suffixes, and every address the host resolves to. The caller
//! then connects to exactly the addresses checked here (no second DNS lookup that a
//! rebinding server could answer differently).

use std::net::{IpAddr, SocketAddr};

use url::{Host, Url};

pub use eds_core::attachments::GuardError;
pub use eds_core::hosts::{ApiHostRules, forbidden_reason};
use eds_core::hosts::{allowed_under_local_testing, local_testing_addrs, normalise_host};

/// Where attachments may be downloaded from.
#[derive(Debug, Clone, Default)]
pub struct HostPolicy {
    /// Host names (or IP literals) allowed, matched as exact name or dot-separated
    /// suffix: `greenhouse-storage.example` allows `a.greenhouse-storage.example`.
    pub allowed_host_suffixes: Vec<String>,
    /// Plain `http` (local simulator only).
    pub allow_http: bool,
    /// Loopback addresses (local simulator only). Private, link-local and metadata
    /// addresses stay refused even then.
    pub allow_loopback_for_local_testing: bool,
}

impl HostPolicy {
    pub fn new(allowed_host_suffixes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        Self {
            allowed_host_suffixes: allowed_host_suffixes
                .into_iter()
                .map(|s| normalise_host(&s.into()))
                .collect(),
            allow_http: false,
            allow_loopback_for_local_testing: false,
        }
    }

    /// The policy of one tenant: its configured host suffixes; plain `http` and loopback
    /// only when the tenant asks for them **and** the deployment allows local testing
    /// (`Config::local_testing`), so that a tenant configuration alone can
    /// never open loopback in production.
    pub fn for_tenant(
        hosts: &[String],
        tenant_allows_loopback: bool,
        deployment_allows_local: bool,
    ) -> Self {
        let local = tenant_allows_loopback && deployment_allows_local;
        Self {
            allow_http: local,
            allow_loopback_for_local_testing: local,
            ..Self::new(hosts.iter().cloned())
        }
    }

    /// Scheme and host allow-list (no DNS).
    pub fn check_url(&self, url: &Url) -> Result<(), GuardError> {
        match url.scheme() {
            "https" => {}
            "http" if self.allow_http => {}
            other => return Err(GuardError::Scheme(other.chars().take(16).collect())),
        }
        // Credentials in the URL would be sent to whatever host it names.
        if !url.username().is_empty() || url.password().is_some() {
            return Err(GuardError::UserInfo);
        }
        let host = match url.host() {
            None => return Err(GuardError::NoHost),
            Some(Host::Domain(d)) => normalise_host(d),
            Some(Host::Ipv4(ip)) => ip.to_string(),
            Some(Host::Ipv6(ip)) => ip.to_string(),
        };
        let is_ip = !matches!(url.host(), Some(Host::Domain(_)));
        let allowed = self.allowed_host_suffixes.iter().any(|s| {
            let s = s.trim_start_matches('.');
            // IP literals must be listed exactly: "suffix" means nothing for them.
            host == s
                || (!is_ip && host.ends_with(s) && host[..host.len() - s.len()].ends_with('.'))
        });
        if allowed {
            Ok(())
        } else {
            Err(GuardError::HostNotAllowed(host))
        }
    }

    /// Refuse addresses eds must never connect to.
    pub fn check_ip(&self, host: &str, ip: IpAddr) -> Result<(), GuardError> {
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(why)
                if self.allow_loopback_for_local_testing
                    && allowed_under_local_testing(ip, why, local_testing_addrs()) =>
            {
                Ok(())
            }
            Some(why) => Err(GuardError::ForbiddenAddress {
                host: host.to_string(),
                ip,
                why,
            }),
        }
    }

    /// Check the URL, resolve its host once, check every address. The result is what
    /// the HTTP client must connect to.
    pub async fn resolve_checked(&self, url: &Url) -> Result<Vec<SocketAddr>, GuardError> {
        self.check_url(url)?;
        let port = url.port_or_known_default().unwrap_or(443);
        let host_str = url.host_str().ok_or(GuardError::NoHost)?;
        let addrs: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(ip)) => vec![SocketAddr::new(IpAddr::V4(ip), port)],
            Some(Host::Ipv6(ip)) => vec![SocketAddr::new(IpAddr::V6(ip), port)],
            Some(Host::Domain(d)) => tokio::net::lookup_host((d, port))
                .await
                .map_err(|e| GuardError::Resolve {
                    host: d.to_string(),
                    detail: e.to_string(),
                })?
                .collect(),
            None => return Err(GuardError::NoHost),
        };
        if addrs.is_empty() {
            return Err(GuardError::Resolve {
                host: host_str.to_string(),
                detail: "no addresses".into(),
            });
        }
        // One bad address refuses the host: a name that mixes public and internal
        // addresses is not one we want to reach.
        for a in &addrs {
            self.check_ip(host_str, a.ip())?;
        }
        Ok(addrs)
    }
}

/// A DNS resolver for the HTTP client that refuses a name if any of its addresses is
/// refused by `rules`, so that a name cannot be pointed at an internal address after the
/// settings were checked: the client connects only to addresses checked here.
pub fn checked_resolver(rules: ApiHostRules) -> std::sync::Arc<CheckedResolver> {
    std::sync::Arc::new(CheckedResolver { rules })
}

/// See [`checked_resolver`].
#[derive(Debug)]
pub struct CheckedResolver {
    rules: ApiHostRules,
}

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let rules = self.rules;
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if addrs.is_empty() {
                return Err(format!("{host} resolves to no address").into());
            }
            for a in &addrs {
                rules
                    .check_ip(a.ip())
                    .map_err(|why| format!("refusing to connect to {host}: {why}"))?;
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn local_testing_allowance_covers_loopback_only() {
        let mut p = HostPolicy::new(["localhost"]);
        assert!(p.check_ip("h", ip("127.0.0.1")).is_err());
        p.allow_loopback_for_local_testing = true;
        assert!(p.check_ip("h", ip("127.0.0.1")).is_ok());
        assert!(p.check_ip("h", ip("::1")).is_ok());
        for still_bad in [
            "169.254.169.254",
            "10.0.0.1",
            "fd00:ec2::254",
            "192.168.0.1",
        ] {
            assert!(p.check_ip("h", ip(still_bad)).is_err(), "{still_bad}");
        }
    }

    #[test]
    fn host_must_match_an_allowed_suffix_on_a_label_boundary() {
        let p = HostPolicy::new(["storage.example.com", "127.0.0.1"]);
        let ok = |u: &str| p.check_url(&Url::parse(u).unwrap());
        assert!(ok("https://storage.example.com/a").is_ok());
        assert!(ok("https://eu.storage.example.com/a").is_ok());
        assert!(ok("https://STORAGE.example.com./a").is_ok());
        assert!(ok("https://evilstorage.example.com/a").is_err());
        assert!(ok("https://storage.example.com.evil.net/a").is_err());
        assert!(ok("https://169.254.169.254/latest").is_err());
        assert!(ok("https://127.0.0.1/a").is_ok());
        assert!(ok("https://127.0.0.2/a").is_err());
        assert!(matches!(
            ok("https://u:p@storage.example.com/a"),
            Err(GuardError::UserInfo)
        ));
        // Scheme: http only with the local allowance.
        assert!(matches!(
            ok("http://storage.example.com/a"),
            Err(GuardError::Scheme(_))
        ));
        assert!(matches!(
            ok("file:///etc/passwd"),
            Err(GuardError::Scheme(_))
        ));
        let mut local = p.clone();
        local.allow_http = true;
        assert!(
            local
                .check_url(&Url::parse("http://storage.example.com/a").unwrap())
                .is_ok()
        );
    }

    #[test]
    fn tenant_cannot_enable_loopback_without_the_deployment() {
        let hosts = vec!["127.0.0.1".to_string()];
        let p = HostPolicy::for_tenant(&hosts, true, false);
        assert!(!p.allow_loopback_for_local_testing && !p.allow_http);
        assert!(p.check_ip("h", ip("127.0.0.1")).is_err());
        let p = HostPolicy::for_tenant(&hosts, true, true);
        assert!(p.allow_loopback_for_local_testing && p.allow_http);
        let p = HostPolicy::for_tenant(&hosts, false, true);
        assert!(!p.allow_loopback_for_local_testing);
    }

    #[tokio::test]
    async fn literal_metadata_address_is_refused_even_if_listed() {
        let p = HostPolicy {
            allowed_host_suffixes: vec!["169.254.169.254".into()],
            allow_http: true,
            allow_loopback_for_local_testing: true,
        };
        let err = p
            .resolve_checked(&Url::parse("http://169.254.169.254/latest/meta-data").unwrap())
            .await
            .unwrap_err();
        assert!(matches!(err, GuardError::ForbiddenAddress { .. }), "{err}");
    }

    #[tokio::test]
    async fn the_checked_resolver_refuses_names_of_internal_addresses() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let err = checked_resolver(ApiHostRules::new(false))
            .resolve(name("localhost"))
            .await
            .err()
            .expect("localhost refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        let addrs: Vec<SocketAddr> = checked_resolver(ApiHostRules::new(true))
            .resolve(name("localhost"))
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
