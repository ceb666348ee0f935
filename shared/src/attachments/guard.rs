//! SSRF guard for attachment downloads: which URLs and which resolved addresses eds may
//! connect to.
//!
//! Attachment URLs come from the ATS, i.e. from outside. A URL pointing at the instance
//! metadata service, at a VPC-internal host or at localhost would let whoever controls
//! the ATS data read our infrastructure, so every hop is checked: scheme, host against a
//! configured allow-list of suffixes, and every address the host resolves to. The caller
//! then connects to exactly the addresses checked here (no second DNS lookup that a
//! rebinding server could answer differently).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

pub use eds_core::attachments::GuardError;

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
    /// (`deployment_allows_local_testing()`), so that a tenant configuration alone can
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

/// `EDS_LOCAL_TESTING=true`: set by the local stack only; the template declares it for
/// `sam local` alone, absent from every deployment (D26).
pub fn deployment_allows_local_testing() -> bool {
    std::env::var("EDS_LOCAL_TESTING").is_ok_and(|v| v == "true")
}

/// `EDS_LOCAL_TESTING_ADDRS`: comma-separated addresses (the Docker bridge gateway the
/// simulators listen on for `sam local`), read once; unparsable entries are ignored.
fn local_testing_addrs() -> &'static [IpAddr] {
    static ADDRS: std::sync::OnceLock<Vec<IpAddr>> = std::sync::OnceLock::new();
    ADDRS.get_or_init(|| {
        std::env::var("EDS_LOCAL_TESTING_ADDRS")
            .unwrap_or_default()
            .split(',')
            .filter_map(|a| a.trim().parse().ok())
            .collect()
    })
}

/// Under the local-testing switch: whether `ip`, refused by [`forbidden_reason`] for
/// `why`, may be reached anyway. Loopback may; a private address only if `listed`
/// names it exactly (never a range); link-local, metadata and the rest never.
pub fn allowed_under_local_testing(ip: IpAddr, why: &str, listed: &[IpAddr]) -> bool {
    why == "loopback" || (why == "private" && listed.contains(&ip))
}

/// The bar the ATS API base URL and the OAuth token URL must meet (they come from tenant
/// settings, so from outside): https, no user info, and no host that is, or resolves
/// to, an address [`forbidden_reason`] refuses. Under the local-testing switch
/// (`EDS_LOCAL_TESTING`, passed in as `local_testing`) plain http and loopback are
/// allowed, as for attachments; private, link-local and metadata addresses never are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApiHostRules {
    pub local_testing: bool,
}

impl ApiHostRules {
    pub fn new(local_testing: bool) -> Self {
        Self { local_testing }
    }

    /// Scheme, user info and the host as written (no DNS). `Err` says why, without
    /// repeating the URL (a token URL could carry something it should not).
    pub fn check_url(&self, url: &Url) -> Result<(), String> {
        match url.scheme() {
            "https" => {}
            "http" if self.local_testing => {}
            "http" => {
                return Err("must be https (plain http only under EDS_LOCAL_TESTING)".into());
            }
            other => {
                let other: String = other.chars().take(16).collect();
                return Err(format!("scheme {other:?} is not allowed (https only)"));
            }
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not carry user information".into());
        }
        // The url crate has already turned decimal, hex and octal IPv4 forms
        // (`0x7f000001`, `2130706433`, `0177.0.0.1`) into `Host::Ipv4`.
        match url.host() {
            None => Err("has no host".into()),
            Some(Host::Ipv4(ip)) => self.check_ip(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => self.check_ip(IpAddr::V6(ip)),
            Some(Host::Domain(d)) => {
                let d = normalise_host(d);
                if d.is_empty() {
                    return Err("has no host".into());
                }
                if d == "localhost" || d.ends_with(".localhost") {
                    return self.check_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
                }
                Ok(())
            }
        }
    }

    /// Whether a (resolved) address may be connected to.
    pub fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        match forbidden_reason(ip) {
            None => Ok(()),
            Some(why)
                if self.local_testing
                    && allowed_under_local_testing(ip, why, local_testing_addrs()) =>
            {
                Ok(())
            }
            Some(why) => Err(format!("host is or resolves to {ip}, a {why} address")),
        }
    }

    /// A DNS resolver for the HTTP client that refuses a name if any of its addresses
    /// is refused, so that a name cannot be pointed at an internal address after the
    /// settings were checked: the client connects only to addresses checked here.
    pub fn resolver(&self) -> std::sync::Arc<CheckedResolver> {
        std::sync::Arc::new(CheckedResolver { rules: *self })
    }
}

/// See [`ApiHostRules::resolver`].
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

fn normalise_host(h: &str) -> String {
    h.trim().trim_end_matches('.').to_ascii_lowercase()
}

/// Why an address is off limits, or `None` if it is a public unicast address.
pub fn forbidden_reason(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => v4_reason(v4),
        IpAddr::V6(v6) => v6_reason(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], bits: u32) -> bool {
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn v4_reason(ip: Ipv4Addr) -> Option<&'static str> {
    const TABLE: &[([u8; 4], u32, &str)] = &[
        ([127, 0, 0, 0], 8, "loopback"),
        ([0, 0, 0, 0], 8, "unspecified"),
        ([10, 0, 0, 0], 8, "private"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 168, 0, 0], 16, "private"),
        ([169, 254, 0, 0], 16, "link-local (metadata)"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([192, 0, 0, 0], 24, "IETF protocol"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
    ];
    TABLE
        .iter()
        .find(|(net, bits, _)| in_v4(ip, *net, *bits))
        .map(|(_, _, why)| *why)
}

fn v6_reason(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_loopback() {
        return Some("loopback");
    }
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    // IPv4 carried inside IPv6 is judged as the IPv4 address it reaches.
    if let Some(v4) = ip.to_ipv4_mapped() {
        return v4_reason(v4);
    }
    let seg = ip.segments();
    if seg[0] == 0x64 && seg[1] == 0xff9b && seg[2..6] == [0, 0, 0, 0] {
        let o = ip.octets();
        return v4_reason(Ipv4Addr::new(o[12], o[13], o[14], o[15]));
    }
    if seg[..6] == [0, 0, 0, 0, 0, 0] {
        // Deprecated IPv4-compatible form ::a.b.c.d.
        let o = ip.octets();
        return v4_reason(Ipv4Addr::new(o[12], o[13], o[14], o[15])).or(Some("reserved"));
    }
    match seg[0] {
        s if s & 0xfe00 == 0xfc00 => Some("private (unique local)"),
        s if s & 0xffc0 == 0xfe80 => Some("link-local"),
        s if s & 0xffc0 == 0xfec0 => Some("site-local"),
        s if s & 0xff00 == 0xff00 => Some("multicast"),
        0x2002 => {
            // 6to4 embeds an IPv4 address in bits 16..48.
            let o = ip.octets();
            v4_reason(Ipv4Addr::new(o[2], o[3], o[4], o[5]))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_testing_allows_loopback_and_only_the_listed_private_addresses() {
        let gw: IpAddr = "172.17.0.1".parse().unwrap();
        let other: IpAddr = "172.17.0.2".parse().unwrap();
        let meta: IpAddr = "169.254.169.254".parse().unwrap();
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let reason = |ip| forbidden_reason(ip).unwrap();
        assert!(allowed_under_local_testing(lo, reason(lo), &[]));
        assert!(allowed_under_local_testing(gw, reason(gw), &[gw]));
        assert!(!allowed_under_local_testing(other, reason(other), &[gw]));
        assert!(!allowed_under_local_testing(gw, reason(gw), &[]));
        assert!(!allowed_under_local_testing(meta, reason(meta), &[meta]));
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn internal_addresses_are_refused() {
        for bad in [
            "127.0.0.1",
            "127.1.2.3",
            "0.0.0.0",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "ff02::1",
            "::ffff:169.254.169.254",
            "::ffff:127.0.0.1",
            "64:ff9b::a9fe:a9fe",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(forbidden_reason(ip(bad)).is_some(), "{bad} allowed");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for good in [
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "11.0.0.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(forbidden_reason(ip(good)), None, "{good} refused");
        }
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

    #[test]
    fn api_urls_must_be_https_on_a_public_host() {
        let strict = ApiHostRules::new(false);
        let local = ApiHostRules::new(true);
        let check = |r: ApiHostRules, u: &str| r.check_url(&Url::parse(u).unwrap());
        assert!(check(strict, "https://harvest.greenhouse.io").is_ok());
        assert!(check(strict, "https://auth.greenhouse.io/token").is_ok());
        assert!(check(strict, "https://8.8.8.8/v3").is_ok());
        for bad in [
            "http://harvest.greenhouse.io",
            "ftp://harvest.greenhouse.io",
            "https://u:p@harvest.greenhouse.io",
            "https://169.254.169.254/latest/meta-data",
            "https://0xa9fea9fe/",
            "https://0x7f000001:8080/",
            "https://2130706433/",
            "https://0177.0.0.1/",
            "https://127.1/",
            "https://[::1]:8080/",
            "https://[::ffff:169.254.169.254]/",
            "https://[::ffff:7f00:1]/",
            "https://[fd00:ec2::254]/",
            "https://[fe80::1]/",
            "https://localhost:22/",
            "https://LOCALHOST./",
            "https://api.localhost/",
            "https://10.0.0.1/",
            "https://192.168.1.1/",
            "https://172.16.0.1/",
            "https://100.64.0.1/",
            "https://0.0.0.0/",
            "https://[::]/",
        ] {
            assert!(check(strict, bad).is_err(), "{bad} accepted");
        }
        // Local testing: http and loopback, nothing else internal.
        assert!(check(local, "http://127.0.0.1:8080/").is_ok());
        assert!(check(local, "http://localhost:8080/").is_ok());
        assert!(check(local, "http://[::1]:8080/").is_ok());
        for still_bad in [
            "http://169.254.169.254/",
            "http://10.0.0.1/",
            "http://[fd00:ec2::254]/",
            "file:///etc/passwd",
            "http://u:p@127.0.0.1/",
        ] {
            assert!(check(local, still_bad).is_err(), "{still_bad} accepted");
        }
    }

    #[tokio::test]
    async fn the_checked_resolver_refuses_names_of_internal_addresses() {
        use reqwest::dns::Resolve;
        let name = |s: &str| s.parse::<reqwest::dns::Name>().unwrap();
        let err = ApiHostRules::new(false)
            .resolver()
            .resolve(name("localhost"))
            .await
            .err()
            .expect("localhost refused");
        assert!(err.to_string().contains("loopback"), "{err}");
        let addrs: Vec<SocketAddr> = ApiHostRules::new(true)
            .resolver()
            .resolve(name("localhost"))
            .await
            .unwrap()
            .collect();
        assert!(addrs.iter().all(|a| a.ip().is_loopback()), "{addrs:?}");
    }
}
