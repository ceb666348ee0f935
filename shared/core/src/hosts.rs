//! Which hosts eds may connect to: the pure checks behind the SSRF guards (attachment
//! downloads, the ATS API base URL, the OAuth token URL). Addresses are judged as
//! written or as resolved by the caller; nothing here resolves a name or opens a socket.
//! The DNS-checking resolver the HTTP clients use lives with the adapters
//! (`eds_shared::attachments::guard`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// `EDS_LOCAL_TESTING=true`: set by the local stack only; the template declares it for
/// `sam local` alone, absent from every deployment (D26).
pub fn deployment_allows_local_testing() -> bool {
    std::env::var("EDS_LOCAL_TESTING").is_ok_and(|v| v == "true")
}

/// `EDS_LOCAL_TESTING_ADDRS`: comma-separated addresses (the Docker bridge gateway the
/// simulators listen on for `sam local`), read once; unparsable entries are ignored.
pub fn local_testing_addrs() -> &'static [IpAddr] {
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
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
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
}

/// A host name as compared: trimmed, without the root dot, lower case.
pub fn normalise_host(h: &str) -> String {
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

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

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
}
