//! Which destinations the server may call.
//!
//! Refused unless an operator allows the network (`--allow-private-destinations`):
//! loopback, unspecified, private (RFC 1918, unique-local), shared (100.64/10),
//! link-local (which holds the cloud metadata address 169.254.169.254), multicast,
//! broadcast, benchmarking and reserved ranges, and IPv6 forms that carry an IPv4
//! address (IPv4-mapped, IPv4-compatible, NAT64, 6to4). URLs are parsed the way
//! browsers do, so decimal (`http://2130706433/`), octal (`http://0177.0.0.1/`) and
//! short (`http://127.1/`) spellings are the same address. Names are resolved and
//! every address checked at save time, and again at send time by the resolver the
//! HTTP client connects through ([`GuardedResolver`]), so a name that later resolves
//! somewhere private is refused. Redirects are not followed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::Url;

/// An IP network (`10.1.0.0/16`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Net {
    addr: IpAddr,
    prefix: u8,
}

impl Net {
    pub fn parse(text: &str) -> Result<Net, String> {
        let (addr, prefix) = text.trim().split_once('/').unwrap_or((text.trim(), ""));
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{text:?} is not an IP network like 10.0.0.0/8"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if prefix.is_empty() {
            max
        } else {
            prefix
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{text:?}: prefix must be 0..{max}"))?
        };
        Ok(Net { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let shift = 32 - u32::from(self.prefix);
                shift == 32 || (u32::from(net) >> shift) == (u32::from(ip) >> shift)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let shift = 128 - u32::from(self.prefix);
                shift == 128 || (u128::from(net) >> shift) == (u128::from(ip) >> shift)
            }
            _ => false,
        }
    }
}

/// An IPv6 address that carries an IPv4 one, as that IPv4 address.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return IpAddr::V4(v4);
            }
            let s = v6.segments();
            // IPv4-compatible (::a.b.c.d, deprecated), NAT64 (64:ff9b::/96), 6to4 (2002::/16).
            if s[..6] == [0, 0, 0, 0, 0, 0] && (s[6] != 0 || s[7] > 1) {
                return IpAddr::V4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                return IpAddr::V4(Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7])));
            }
            if s[0] == 0x2002 {
                return IpAddr::V4(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
            }
            IpAddr::V6(v6)
        }
        v4 => v4,
    }
}

fn v4_public(ip: Ipv4Addr) -> bool {
    let o = ip.octets();
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_broadcast()
        || ip.is_unspecified()
        || o[0] == 0
        || (o[0] == 100 && (64..128).contains(&o[1])) // shared address space
        || (o[0] == 192 && o[1] == 0 && o[2] == 0) // IETF protocol assignments
        || (o[0] == 198 && (18..20).contains(&o[1])) // benchmarking
        || o[0] >= 240) // reserved
}

fn v6_public(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (s[0] & 0xfe00) == 0xfc00 // unique local
        || (s[0] & 0xffc0) == 0xfe80 // link local
        || (s[0] & 0xffc0) == 0xfec0 // site local (deprecated)
        || s[0] == 0x2001 && s[1] == 0x0db8) // documentation
}

/// Whether an address is on the public internet.
pub fn is_public(ip: IpAddr) -> bool {
    match canonical(ip) {
        IpAddr::V4(v4) => v4_public(v4),
        IpAddr::V6(v6) => v6_public(v6),
    }
}

/// The destinations policy: public addresses, plus the networks an operator allows.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    allow: Vec<Net>,
}

impl Destinations {
    pub fn new(allow: Vec<Net>) -> Destinations {
        Destinations { allow }
    }

    /// Parse `10.1.0.0/16,127.0.0.0/8`.
    pub fn parse_allow(text: &str) -> Result<Vec<Net>, String> {
        text.split(',')
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(Net::parse)
            .collect()
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.iter().any(|n| n.contains(ip))
    }

    /// Check a URL's shape (http or https, a host, no credentials) and, when its host
    /// is an address, the address.
    pub fn check_url(&self, text: &str) -> Result<Url, String> {
        let url = Url::parse(text.trim()).map_err(|e| format!("url: {e}"))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(format!(
                "url: scheme {:?} is not http or https",
                url.scheme()
            ));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("url: credentials in the URL are not allowed".into());
        }
        match url.host() {
            None => Err("url: no host".into()),
            Some(url::Host::Ipv4(v4)) => self.check_ip(IpAddr::V4(v4)).map(|()| url),
            Some(url::Host::Ipv6(v6)) => self.check_ip(IpAddr::V6(v6)).map(|()| url),
            Some(url::Host::Domain(_)) => Ok(url),
        }
    }

    fn check_ip(&self, ip: IpAddr) -> Result<(), String> {
        if self.allows(ip) {
            Ok(())
        } else {
            Err(format!(
                "url: {ip} is not a public address (loopback, private, link-local, metadata or reserved); \
                 an operator may allow it with --allow-private-destinations"
            ))
        }
    }

    /// Check a URL and every address its host resolves to now (save time).
    pub async fn check_destination(&self, text: &str) -> Result<Url, String> {
        let url = self.check_url(text)?;
        if let Some(url::Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
                .await
                .map_err(|e| format!("url: cannot resolve {name}: {e}"))?
                .collect();
            if addrs.is_empty() {
                return Err(format!("url: {name} resolves to no address"));
            }
            for a in addrs {
                self.check_ip(a.ip())
                    .map_err(|m| format!("{m} ({name} resolves to it)"))?;
            }
        }
        Ok(url)
    }
}

/// The resolver's refusal: every address a name resolves to is forbidden.
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// The resolver's refusal in an error's source chain, if any.
pub fn refusal<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a Refused> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(r) = e.downcast_ref::<Refused>() {
            return Some(r);
        }
        cur = e.source();
    }
    None
}

/// The resolver the delivery client connects through: names resolve as usual, and
/// any address the policy refuses is dropped (no address left: the send fails).
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<Destinations>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await?
                .filter(|a| policy.allows(a.ip()))
                .collect();
            if found.is_empty() {
                return Err(Box::new(Refused(format!(
                    "{host} resolves to no allowed address (loopback, private, link-local, \
                     metadata or reserved); an operator may allow it with --allow-private-destinations"
                )))
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(found.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spellings of private and special addresses an attacker would try.
    pub const REFUSED: &[&str] = &[
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0177.0.0.1/",
        "http://017700000001/",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:7f00:1]/",
        "http://[::127.0.0.1]/",
        "http://[64:ff9b::7f00:1]/",
        "http://[2002:7f00:1::]/",
        "http://0.0.0.0/",
        "http://[::]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://[fe80::1]/",
        "http://224.0.0.1/",
        "http://255.255.255.255/",
        "http://240.0.0.1/",
        "http://198.18.0.1/",
    ];

    #[test]
    fn every_spelling_of_a_private_address_is_refused() {
        let policy = Destinations::default();
        for url in REFUSED {
            assert!(policy.check_url(url).is_err(), "{url} was allowed");
        }
        for bad in [
            "ftp://example.com/",
            "file:///etc/passwd",
            "gopher://x/",
            "http://user:pw@example.com/",
            "not a url",
        ] {
            assert!(policy.check_url(bad).is_err(), "{bad} was allowed");
        }
        for ok in [
            "https://events.pagerduty.com/v2/enqueue",
            "https://hooks.slack.com/services/x",
            "http://93.184.216.34/",
        ] {
            assert!(policy.check_url(ok).is_ok(), "{ok} was refused");
        }
    }

    #[test]
    fn an_operator_allows_named_networks_only() {
        let policy =
            Destinations::new(Destinations::parse_allow("127.0.0.0/8, 10.1.0.0/16").unwrap());
        assert!(policy.check_url("http://127.0.0.1:9000/").is_ok());
        assert!(policy.check_url("http://[::ffff:127.0.0.1]/").is_ok());
        assert!(policy.check_url("http://10.1.2.3/").is_ok());
        assert!(policy.check_url("http://10.2.0.1/").is_err());
        assert!(policy.check_url("http://169.254.169.254/").is_err());
        assert!(Destinations::parse_allow("10.0.0.0/33").is_err());
        assert!(Destinations::parse_allow("nope").is_err());
    }
}
