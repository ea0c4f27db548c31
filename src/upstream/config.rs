//! `[dns]`: the settings of the resolver and the in-VPC ranges, and the parsing of a name
//! server or static address. Declared here, next to their only user; `config` holds them
//! in the whole file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

/// Address ranges that count as "inside the VPC" unless configured otherwise:
/// RFC 1918, carrier-grade NAT space (used by some VPC CIDRs) and IPv6 ULAs.
pub const DEFAULT_PRIVATE_RANGES: [&str; 5] = [
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "fc00::/7",
];

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DnsConfig {
    /// Name servers (`IP:PORT`, or `IP` for port 53). Empty: the system's resolv.conf.
    #[serde(default)]
    pub servers: Vec<String>,
    /// Ranges that count as in-VPC addresses.
    #[serde(default = "default_private_ranges")]
    pub private_ranges: Vec<IpNet>,
    /// Time allowed for one DNS query attempt.
    #[serde(default = "default_dns_timeout", with = "humantime_serde")]
    pub timeout: Duration,
    /// While the name servers fail, keep using the last good answer for at most this long.
    #[serde(default = "default_stale_limit", with = "humantime_serde")]
    pub stale_limit: Duration,
    /// How often every route's name is resolved again in the background, so that a
    /// changed endpoint address is noticed even while pooled connections carry all the
    /// traffic (connections to addresses no longer in the answer are then retired).
    #[serde(default = "default_dns_refresh", with = "humantime_serde")]
    pub refresh: Duration,
}

impl Default for DnsConfig {
    fn default() -> Self {
        DnsConfig {
            servers: Vec::new(),
            private_ranges: default_private_ranges(),
            timeout: default_dns_timeout(),
            stale_limit: default_stale_limit(),
            refresh: default_dns_refresh(),
        }
    }
}

fn default_private_ranges() -> Vec<IpNet> {
    DEFAULT_PRIVATE_RANGES
        .iter()
        .map(|r| r.parse().expect("valid constant"))
        .collect()
}
fn default_dns_timeout() -> Duration {
    Duration::from_secs(2)
}
fn default_stale_limit() -> Duration {
    Duration::from_secs(300)
}
fn default_dns_refresh() -> Duration {
    Duration::from_secs(30)
}

/// Parses `IP` or `IP:PORT` (IPv6 as `[::1]:443`); a bare IP takes `default_port`.
pub fn parse_address(value: &str, default_port: u16) -> Result<SocketAddr, String> {
    if let Ok(sa) = value.parse::<SocketAddr>() {
        return Ok(sa);
    }
    let trimmed = value.trim_start_matches('[').trim_end_matches(']');
    trimmed
        .parse::<IpAddr>()
        .map(|ip| SocketAddr::new(ip, default_port))
        .map_err(|_| format!("{value:?} is not an IP address or IP:PORT"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_the_default_port() {
        assert_eq!(
            parse_address("127.0.0.1", 443).unwrap(),
            "127.0.0.1:443".parse().unwrap()
        );
        assert_eq!(
            parse_address("[::1]:8443", 443).unwrap(),
            "[::1]:8443".parse().unwrap()
        );
        assert_eq!(
            parse_address("::1", 443).unwrap(),
            "[::1]:443".parse().unwrap()
        );
        assert!(parse_address("localhost", 443).is_err());
    }
}
