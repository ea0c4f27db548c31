//! Step 1: name resolution. The name the proxy dials (the endpoint's, or the gateway's
//! with private DNS on) must resolve, through the configured resolver, to addresses
//! inside the in-VPC ranges. The other names and the system resolver's answers are shown
//! for comparison: they explain what agents that bypass the proxy would see.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use serde_json::json;

use super::report::{Check, Step};
use crate::proxy::route::Route;
use crate::upstream::connector::DialTarget;
use crate::upstream::dns::{Dns, DnsError};

/// The system resolver gets this long per name: it only informs, it must not stall.
const SYSTEM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Resolution {
    pub checks: Vec<Check>,
    /// The addresses the proxy may dial, in order.
    pub dial: Vec<SocketAddr>,
}

/// Which name is being looked at, for the wording of causes and fixes.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The gateway's own name, dialed because private DNS is expected on.
    Gateway,
    /// The interface endpoint's name (private DNS off).
    Endpoint,
}

pub struct Resolver<'a> {
    pub dns: &'a Dns,
    /// How the configured resolver is described ("127.0.0.1:53" or "/etc/resolv.conf").
    pub label: String,
    /// Also ask the system resolver (getaddrinfo: /etc/hosts, nsswitch, resolv.conf).
    pub system: bool,
}

pub async fn check(route: &Route, resolver: &Resolver<'_>) -> Resolution {
    let mut checks = Vec::new();
    let gateway = route.gateway.host.as_str();
    let region = region_of(gateway);
    let allowed = |ip: IpAddr| !route.config.require_private || resolver.dns.in_vpc(ip);
    let ranges = ranges_text(resolver.dns);
    let mut system_names = Vec::new();
    let dial = match route.dial_target() {
        DialTarget::Static(addrs) => {
            let dial: Vec<SocketAddr> = addrs.iter().copied().filter(|a| allowed(a.ip())).collect();
            let ips: Vec<IpAddr> = addrs.iter().map(|a| a.ip()).collect();
            let summary = format!(
                "static addresses {} (no lookup)",
                classify(&ips, resolver.dns)
            );
            checks.push(if dial.is_empty() {
                Check::fail(
                    Step::Dns,
                    summary,
                    format!("no static address is inside the in-VPC ranges ({ranges})"),
                    "list the private addresses of the endpoint's network interfaces in \
                     `addresses`, or add the VPC's CIDR to dns.private_ranges",
                )
            } else {
                Check::pass(Step::Dns, summary)
            });
            system_names.push(gateway.to_string());
            dial
        }
        DialTarget::Name { name, port } => {
            let role = if route.config.endpoint.is_some() {
                Role::Endpoint
            } else {
                Role::Gateway
            };
            let started = Instant::now();
            let answer = resolver.dns.resolve(name).await;
            let took = started.elapsed();
            let dial: Vec<SocketAddr> = match &answer {
                Ok(ips) => ips
                    .iter()
                    .filter(|ip| allowed(**ip))
                    .map(|ip| SocketAddr::new(*ip, *port))
                    .collect(),
                Err(_) => Vec::new(),
            };
            checks.push(dial_name_check(
                name, role, &answer, &dial, took, resolver, &region, route,
            ));
            system_names.push(name.clone());
            if role == Role::Endpoint {
                let answer = resolver.dns.resolve(gateway).await;
                checks.push(gateway_name_info(gateway, &answer, resolver, &region));
                system_names.push(gateway.to_string());
            }
            dial
        }
    };
    if resolver.system {
        for name in &system_names {
            checks.push(system_lookup(name, resolver).await);
        }
    }
    Resolution { checks, dial }
}

#[allow(clippy::too_many_arguments)]
fn dial_name_check(
    name: &str,
    role: Role,
    answer: &Result<Vec<IpAddr>, DnsError>,
    dial: &[SocketAddr],
    took: Duration,
    resolver: &Resolver<'_>,
    region: &str,
    route: &Route,
) -> Check {
    let via = &resolver.label;
    let ranges = ranges_text(resolver.dns);
    let details = |ips: &[IpAddr]| {
        json!({
            "name": name,
            "resolver": via,
            "addresses": ips.iter().map(|ip| json!({
                "address": ip.to_string(),
                "in_vpc": resolver.dns.in_vpc(*ip),
            })).collect::<Vec<_>>(),
            "lookup_ms": took.as_secs_f64() * 1000.0,
        })
    };
    let endpoint_hint = endpoint_hint(region);
    match answer {
        Ok(ips) if !dial.is_empty() => Check::pass(
            Step::Dns,
            format!("{name} via {via} -> {}", classify(ips, resolver.dns)),
        )
        .with_details(details(ips)),
        Ok(ips) => {
            let list = join(ips);
            let public = ips.iter().all(|ip| is_public(*ip));
            let summary = if public {
                format!("{name} via {via} resolves to public {list}")
            } else {
                format!("{name} via {via} resolves to {list}, outside the in-VPC ranges ({ranges})")
            };
            let private_elsewhere = ips.iter().any(|ip| looks_private(*ip));
            let (cause, fix) = if private_elsewhere {
                (
                    format!(
                        "{list} is a private address, but not inside dns.private_ranges ({ranges}): \
                         the VPC's CIDR is not listed"
                    ),
                    "add the VPC's CIDR to dns.private_ranges (or --private-range)".to_string(),
                )
            } else if role == Role::Gateway {
                (
                    format!(
                        "gateway name resolves to {}{list}: private DNS is off for this endpoint \
                         or this VPC has none, so traffic would leave PrivateLink",
                        if public { "public " } else { "" }
                    ),
                    format!(
                        "set endpoint = \"{endpoint_hint}\" on this route (the DNS name of the \
                         VPC endpoint: {}), or enable private DNS on that endpoint",
                        describe_endpoints_command(region)
                    ),
                )
            } else {
                (
                    "an interface endpoint's DNS name resolves to the private addresses of its \
                     network interfaces; this one does not, so it is not an endpoint of this VPC \
                     (or a DNS proxy rewrote the answer)"
                        .to_string(),
                    format!(
                        "copy the endpoint's DNS name from {}",
                        describe_endpoints_command(region)
                    ),
                )
            };
            Check::fail(Step::Dns, summary, cause, fix).with_details(details(ips))
        }
        Err(DnsError::NotFound { .. }) => {
            let summary = format!("{name} via {via}: NXDOMAIN (no A/AAAA records)");
            let (cause, fix) = match role {
                Role::Gateway => (
                    format!(
                        "the VPC's resolver has no record for the gateway name. The known pitfall: \
                         the VPC has an interface endpoint for the AgentCore data plane \
                         (com.amazonaws.{region}.bedrock-agentcore) with private DNS, whose \
                         private zone answers for bedrock-agentcore.{region}.amazonaws.com names \
                         but holds no gateway records, and no gateway endpoint \
                         (com.amazonaws.{region}.bedrock-agentcore.gateway). Or the gateway id \
                         in the URL is wrong"
                    ),
                    format!(
                        "create an interface endpoint for \
                         com.amazonaws.{region}.bedrock-agentcore.gateway with private DNS \
                         enabled, or set endpoint = \"{endpoint_hint}\" on this route; check \
                         the gateway URL ({})",
                        route.config.gateway
                    ),
                ),
                Role::Endpoint => (
                    "the endpoint's DNS name does not exist: a typo, a deleted endpoint, or an \
                     endpoint in another region"
                        .to_string(),
                    format!(
                        "copy the endpoint's DNS name from {}",
                        describe_endpoints_command(region)
                    ),
                ),
            };
            Check::fail(Step::Dns, summary, cause, fix).with_details(details(&[]))
        }
        Err(DnsError::Failed { cause, .. }) => Check::fail(
            Step::Dns,
            format!("{name} via {via}: lookup failed: {cause}"),
            format!("the name servers ({via}) did not answer, or answered with an error"),
            "use the VPC's resolver (the VPC CIDR base + 2, or 169.254.169.253) or your Route 53 \
             Resolver endpoints in dns.servers, and allow UDP and TCP 53 to them",
        )
        .with_details(details(&[])),
    }
}

/// The gateway's own name when the route dials an endpoint: never a verdict, since the
/// proxy does not resolve it, but it tells whether private DNS is on.
fn gateway_name_info(
    gateway: &str,
    answer: &Result<Vec<IpAddr>, DnsError>,
    resolver: &Resolver<'_>,
    region: &str,
) -> Check {
    let via = &resolver.label;
    let text = match answer {
        Ok(ips) if ips.iter().all(|ip| resolver.dns.in_vpc(*ip)) => format!(
            "{gateway} via {via} -> {}: private DNS is on for a gateway endpoint; `endpoint` is \
             optional on this route",
            classify(ips, resolver.dns)
        ),
        Ok(ips) => format!(
            "{gateway} via {via} -> {}: expected with private DNS off; the proxy dials the \
             endpoint and sends this name only in TLS SNI and Host",
            classify(ips, resolver.dns)
        ),
        Err(DnsError::NotFound { .. }) => format!(
            "{gateway} via {via}: NXDOMAIN; harmless for the proxy, which dials the endpoint, but \
             agents that bypass it cannot reach the gateway (a data-plane endpoint \
             com.amazonaws.{region}.bedrock-agentcore with private DNS hides gateway names)"
        ),
        Err(e) => format!("{gateway} via {via}: {e}; the proxy does not need this name"),
    };
    Check::info(Step::Dns, text)
}

async fn system_lookup(name: &str, resolver: &Resolver<'_>) -> Check {
    let configured: Option<BTreeSet<IpAddr>> = resolver
        .dns
        .resolve(name)
        .await
        .ok()
        .map(|ips| ips.into_iter().collect());
    let lookup = tokio::time::timeout(SYSTEM_LOOKUP_TIMEOUT, tokio::net::lookup_host((name, 0)));
    let text = match lookup.await {
        Err(_) => format!(
            "{name} via the system resolver: no answer within {}",
            humantime::format_duration(SYSTEM_LOOKUP_TIMEOUT)
        ),
        Ok(Err(e)) => format!("{name} via the system resolver: {e}"),
        Ok(Ok(addrs)) => {
            let ips: BTreeSet<IpAddr> = addrs.map(|a| a.ip()).collect();
            let list: Vec<IpAddr> = ips.iter().copied().collect();
            let comparison = match &configured {
                Some(c) if *c == ips => "the same as the configured resolver".to_string(),
                Some(c) => format!(
                    "differs from the configured resolver ({}): programs using the system \
                     resolver see other addresses than the proxy",
                    join(&c.iter().copied().collect::<Vec<_>>())
                ),
                None => "the configured resolver has no answer".to_string(),
            };
            format!(
                "{name} via the system resolver -> {}; {comparison}",
                classify(&list, resolver.dns)
            )
        }
    };
    Check::info(Step::Dns, text)
}

/// `10.0.1.5 (in-VPC), 52.1.2.3 (outside)`.
fn classify(ips: &[IpAddr], dns: &Dns) -> String {
    if ips.is_empty() {
        return "no addresses".into();
    }
    ips.iter()
        .map(|ip| {
            let class = if dns.in_vpc(*ip) { "in-VPC" } else { "outside" };
            format!("{ip} ({class})")
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn join(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(IpAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

fn ranges_text(dns: &Dns) -> String {
    dns.ranges()
        .iter()
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// RFC 1918, carrier-grade NAT and IPv6 unique-local space: addresses a VPC may use.
fn looks_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Globally routable as far as we can tell cheaply: the addresses a public AWS name has.
fn is_public(ip: IpAddr) -> bool {
    let special = match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_link_local() || v4.is_unspecified(),
        IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unspecified() || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    };
    !special && !looks_private(ip)
}

/// The region of `<id>.gateway.bedrock-agentcore.<region>.amazonaws.com`, else `<region>`.
pub fn region_of(gateway_host: &str) -> String {
    let labels: Vec<&str> = gateway_host.split('.').collect();
    match labels.as_slice() {
        [_, "gateway", "bedrock-agentcore", region, "amazonaws", ..] => region.to_string(),
        _ => "<region>".to_string(),
    }
}

fn endpoint_hint(region: &str) -> String {
    format!("vpce-….gateway.bedrock-agentcore.{region}.vpce.amazonaws.com")
}

fn describe_endpoints_command(region: &str) -> String {
    format!(
        "aws ec2 describe-vpc-endpoints --filters Name=service-name,Values=com.amazonaws.{region}.bedrock-agentcore.gateway --query 'VpcEndpoints[].DnsEntries[0].DnsName'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_gateway_name() {
        assert_eq!(
            region_of("gw-1.gateway.bedrock-agentcore.eu-west-1.amazonaws.com"),
            "eu-west-1"
        );
        assert_eq!(region_of("gw.example.com"), "<region>");
    }

    #[test]
    fn public_and_private_are_told_apart() {
        assert!(is_public("52.1.2.3".parse().unwrap()));
        assert!(!is_public("10.0.0.1".parse().unwrap()));
        assert!(!is_public("100.64.0.1".parse().unwrap()));
        assert!(!is_public("127.0.0.2".parse().unwrap()));
        assert!(!is_public("fd00::1".parse().unwrap()));
        assert!(looks_private("172.16.5.4".parse().unwrap()));
        assert!(!looks_private("127.0.0.2".parse().unwrap()));
    }

    #[tokio::test]
    async fn the_system_resolver_answers_for_localhost() {
        let dns = Dns::new(&crate::upstream::config::DnsConfig {
            servers: vec!["127.0.0.1:9".into()],
            private_ranges: vec!["127.0.0.1/32".parse().unwrap()],
            timeout: Duration::from_millis(200),
            ..crate::upstream::config::DnsConfig::default()
        })
        .unwrap();
        let resolver = Resolver {
            dns: &dns,
            label: "127.0.0.1:9".into(),
            system: true,
        };
        let check = system_lookup("localhost", &resolver).await;
        assert!(
            check
                .summary
                .starts_with("localhost via the system resolver -> "),
            "{}",
            check.summary
        );
        assert!(
            check.summary.contains("127.0.0.1 (in-VPC)"),
            "{}",
            check.summary
        );
    }
}
