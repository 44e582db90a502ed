//! Value semantics shared by the index compiler ([`crate::compile`]) and the in-memory
//! evaluator of alert rules, so both agree on what a clause matches.
//!
//! * Attribute and resource values match as whole values (case-sensitive); a
//!   trailing `*` is a prefix of the whole value.
//! * `addr/len` against an attribute or resource is a CIDR: it matches IP-valued
//!   attributes at the top level of the map (flat keys such as `k8s.client.ip`, and
//!   arrays of addresses), IPv4 and IPv6, IPv4-mapped IPv6 read as IPv4. Both sides
//!   compare the address as a bit string (see [`ip_bits`]).
//! * `level:`/`severity:` names (`error`, `warn`...) also match the OpenTelemetry
//!   severity-number range of that level ([`level_range`]).

use std::net::IpAddr;

pub use model::ip::{ip_bits, ip_entries};

/// If `text` is `addr/len`, the bit-string prefix every address inside it starts with.
pub fn cidr_prefix(text: &str) -> Option<Result<String, String>> {
    let (addr, len) = text.split_once('/')?;
    let addr: IpAddr = addr.parse().ok()?;
    let len: usize = match len.parse() {
        Ok(len) => len,
        Err(_) => return Some(Err(format!("{text:?}: the prefix length must be a number"))),
    };
    let bits = ip_bits(addr);
    let width = bits.len() - 2;
    let max = if addr.is_ipv4() || width == 32 {
        32
    } else {
        128
    };
    // An IPv4-mapped IPv6 network (::ffff:10.0.0.0/104) is read as IPv4 too.
    let len = if max == 32 && !addr.is_ipv4() {
        match len.checked_sub(96) {
            Some(l) => l,
            None => {
                return Some(Err(format!(
                    "{text:?}: prefix too short for an IPv4-mapped network"
                )));
            }
        }
    } else {
        len
    };
    if len > max {
        return Some(Err(format!("{text:?}: the prefix length must be 0..{max}")));
    }
    Some(Ok(bits[..2 + len].to_string()))
}

/// Array elements of one attribute considered for CIDR matching (as indexed).
pub const MAX_IPS_PER_ATTRIBUTE: usize = 64;

/// Whether a string value is an address inside the network of `prefix`.
pub fn in_cidr(value: &str, prefix: &str) -> bool {
    value.len() <= 64
        && value
            .trim()
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip_bits(ip).starts_with(prefix))
}

/// The severity-number range of a level name (OpenTelemetry log data model).
pub fn level_range(text: &str) -> Option<(i64, i64)> {
    Some(match text.to_ascii_lowercase().as_str() {
        "trace" => (1, 4),
        "debug" => (5, 8),
        "info" | "information" => (9, 12),
        "warn" | "warning" => (13, 16),
        "error" | "err" => (17, 20),
        "fatal" | "critical" | "crit" => (21, 24),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cidrs_are_bit_prefixes() {
        let p = cidr_prefix("10.0.0.0/8").unwrap().unwrap();
        assert!(in_cidr("10.30.1.5", &p));
        assert!(!in_cidr("192.168.99.1", &p));
        assert!(!in_cidr("110.0.0.1", &p));
        let p = cidr_prefix("172.16.0.0/12").unwrap().unwrap();
        assert!(in_cidr("172.31.255.1", &p) && !in_cidr("172.32.0.1", &p));
        let p = cidr_prefix("127.0.0.1/32").unwrap().unwrap();
        assert!(in_cidr("127.0.0.1", &p) && !in_cidr("127.0.0.10", &p));
        assert!(in_cidr("::ffff:127.0.0.1", &p));
        let p = cidr_prefix("2001:db8::/32").unwrap().unwrap();
        assert!(in_cidr("2001:db8::1", &p) && !in_cidr("2001:db9::1", &p));
        assert!(cidr_prefix("10.0.0.0/33").unwrap().is_err());
        assert!(cidr_prefix("/api/v1").is_none());
        assert!(cidr_prefix("a/b").is_none());
        assert_eq!(level_range("ERROR"), Some((17, 20)));
        assert_eq!(level_range("bogus"), None);
    }
}
