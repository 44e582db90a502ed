//! IP addresses as bit strings: the form the index stores for CIDR queries and the
//! rule evaluator compares with (`query::values`).

use std::net::IpAddr;

/// The address as `4:` + 32 bits or `6:` + 128 bits, '0'/'1'. A CIDR is a prefix of it.
pub fn ip_bits(ip: IpAddr) -> String {
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    };
    match ip {
        IpAddr::V4(v4) => format!("4:{:032b}", u32::from(v4)),
        IpAddr::V6(v6) => format!("6:{:0128b}", u128::from(v6)),
    }
}

/// The top-level IP-valued entries of an attribute map, as `(key, bits)`: what the
/// index stores for CIDR queries.
pub fn ip_entries(map: &serde_json::Map<String, serde_json::Value>) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let parse = |v: &serde_json::Value| {
        v.as_str()
            .filter(|s| s.len() <= 64)
            .and_then(|s| s.trim().parse::<IpAddr>().ok())
            .map(ip_bits)
    };
    for (key, value) in map {
        match value {
            serde_json::Value::Array(items) => {
                out.extend(
                    items
                        .iter()
                        .take(64 /* query::values::MAX_IPS_PER_ATTRIBUTE */)
                        .filter_map(parse)
                        .map(|b| (key.clone(), b)),
                )
            }
            other => out.extend(parse(other).map(|b| (key.clone(), b))),
        }
    }
    out
}
