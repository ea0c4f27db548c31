//! Name resolution for the upstream connector: hickory's resolver (which caches by TTL),
//! a last-good-answer fallback for name-server outages, and the in-VPC classification.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_resolver::config::{LookupIpStrategy, NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::{Resolver, TokioResolver};
use ipnet::IpNet;

use super::config::{parse_address, DnsConfig};

/// Answers with a shorter TTL are kept this long anyway: a connection pool re-resolves
/// only when it dials, and a 0 s TTL would otherwise mean a query per new connection.
const MIN_TTL: Duration = Duration::from_secs(5);
/// NXDOMAIN is not remembered for long, so that a newly created endpoint is seen quickly.
const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(5);

pub struct Dns {
    resolver: TokioResolver,
    ranges: Vec<IpNet>,
    stale_limit: Duration,
    last_good: Mutex<HashMap<String, (Vec<IpAddr>, Instant)>>,
    /// Bumped whenever an answer in `last_good` changes, so that the request path can
    /// tell with one atomic load that nothing moved since it last looked.
    generation: AtomicU64,
}

/// What a lookup yielded: the addresses, and whether they are a current answer or the
/// last good one, served because the name servers failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    pub addrs: Vec<IpAddr>,
    /// The name servers failed: these are the last good answer (younger than the
    /// stale limit), not a current one.
    pub stale: bool,
}

/// Why a name could not be resolved; phrased for the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DnsError {
    /// The name has no address records (NXDOMAIN or an empty answer).
    NotFound { name: String },
    /// The name servers failed or timed out and no usable earlier answer exists.
    Failed { name: String, cause: String },
}

impl std::fmt::Display for DnsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DnsError::NotFound { name } => write!(
                f,
                "DNS name {name} has no addresses (NXDOMAIN or no A/AAAA records)"
            ),
            DnsError::Failed { name, cause } => write!(f, "DNS lookup of {name} failed: {cause}"),
        }
    }
}

impl std::error::Error for DnsError {}

impl Dns {
    pub fn new(config: &DnsConfig) -> Result<Dns, String> {
        let mut options = ResolverOpts::default();
        options.timeout = config.timeout;
        options.attempts = 2;
        options.ip_strategy = LookupIpStrategy::Ipv4AndIpv6;
        options.positive_min_ttl = Some(MIN_TTL);
        options.negative_max_ttl = Some(MAX_NEGATIVE_TTL);
        options.ndots = 0;

        let builder = if config.servers.is_empty() {
            let mut builder = TokioResolver::builder_tokio()
                .map_err(|e| format!("cannot read the system DNS configuration: {e}"))?;
            // Keep the system's timeouts unless ours are stricter.
            let system = builder.options_mut();
            system.timeout = system.timeout.min(options.timeout);
            system.ip_strategy = options.ip_strategy;
            system.positive_min_ttl = options.positive_min_ttl;
            system.negative_max_ttl = options.negative_max_ttl;
            builder
        } else {
            let servers = config
                .servers
                .iter()
                .map(|s| parse_address(s, 53).map(name_server))
                .collect::<Result<Vec<_>, _>>()?;
            Resolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
            .with_options(options)
        };
        let resolver = builder
            .build()
            .map_err(|e| format!("cannot build the DNS resolver: {e}"))?;
        Ok(Dns {
            resolver,
            ranges: config.private_ranges.clone(),
            stale_limit: config.stale_limit,
            last_good: Mutex::new(HashMap::new()),
            generation: AtomicU64::new(0),
        })
    }

    /// The in-VPC ranges in force.
    pub fn ranges(&self) -> &[IpNet] {
        &self.ranges
    }

    pub fn in_vpc(&self, ip: IpAddr) -> bool {
        self.ranges.iter().any(|r| r.contains(&ip))
    }

    /// Resolves `name` (always as a fully qualified name: search domains such as a
    /// pod's `ndots:5` list must never turn the gateway name into something else).
    /// When the name servers fail, the last good answer is used while it is younger
    /// than the stale limit.
    pub async fn resolve(&self, name: &str) -> Result<Vec<IpAddr>, DnsError> {
        self.lookup(name).await.map(|answer| answer.addrs)
    }

    /// Like [`resolve`](Self::resolve), telling a current answer from the last good one
    /// served through a name-server failure.
    pub async fn lookup(&self, name: &str) -> Result<Answer, DnsError> {
        let fqdn = if name.ends_with('.') {
            name.to_string()
        } else {
            format!("{name}.")
        };
        match self.resolver.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => {
                let addrs: Vec<IpAddr> = lookup.iter().collect();
                if addrs.is_empty() {
                    return Err(DnsError::NotFound {
                        name: name.to_string(),
                    });
                }
                self.remember(name, &addrs);
                Ok(Answer {
                    addrs,
                    stale: false,
                })
            }
            Err(e) if e.is_no_records_found() => Err(DnsError::NotFound {
                name: name.to_string(),
            }),
            Err(e) => {
                if let Some(addrs) = self.stale_answer(name) {
                    tracing::warn!(name, "DNS lookup failed ({e}); using the last good answer");
                    return Ok(Answer { addrs, stale: true });
                }
                Err(DnsError::Failed {
                    name: name.to_string(),
                    cause: e.to_string(),
                })
            }
        }
    }

    /// Changes whenever any remembered answer changes.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the last good answer for `name` includes `ip` (None: never resolved).
    pub fn answers_with(&self, name: &str, ip: IpAddr) -> Option<bool> {
        let map = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name).map(|(addrs, _)| addrs.contains(&ip))
    }

    /// How old the answer in use is for each name resolved so far.
    pub fn answer_ages(&self) -> Vec<(String, Duration)> {
        let map = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        map.iter()
            .map(|(name, (_, at))| (name.clone(), at.elapsed()))
            .collect()
    }

    fn remember(&self, name: &str, addrs: &[IpAddr]) {
        let mut map = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        match map.get_mut(name) {
            Some(entry) if entry.0 == addrs => entry.1 = Instant::now(),
            _ => {
                map.insert(name.to_string(), (addrs.to_vec(), Instant::now()));
                self.generation.fetch_add(1, Ordering::AcqRel);
            }
        }
    }

    fn stale_answer(&self, name: &str) -> Option<Vec<IpAddr>> {
        let map = self.last_good.lock().unwrap_or_else(|p| p.into_inner());
        map.get(name)
            .filter(|(_, at)| at.elapsed() <= self.stale_limit)
            .map(|(addrs, _)| addrs.clone())
    }
}

fn name_server(addr: SocketAddr) -> NameServerConfig {
    let mut config = NameServerConfig::udp_and_tcp(addr.ip());
    for connection in &mut config.connections {
        connection.port = addr.port();
    }
    config
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn classifies_against_the_configured_ranges() {
        let dns = Dns::new(&DnsConfig {
            servers: vec!["127.0.0.1:5353".into()],
            private_ranges: vec!["10.0.0.0/8".parse().unwrap(), "fc00::/7".parse().unwrap()],
            ..DnsConfig::default()
        })
        .unwrap();
        assert!(dns.in_vpc("10.1.2.3".parse().unwrap()));
        assert!(dns.in_vpc("fd00::1".parse().unwrap()));
        assert!(!dns.in_vpc("52.1.2.3".parse().unwrap()));
        assert!(!dns.in_vpc("127.0.0.1".parse().unwrap()));
    }
}
