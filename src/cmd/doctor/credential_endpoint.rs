//! Step 4, first half: the endpoint a fetching source calls (a token URL, an AWS API or
//! its VPC endpoint), resolved the way the source dials it. A source that must stay
//! inside the VPC (`require_private`) resolves with the proxy's resolver and may use
//! in-VPC addresses only: that is a verdict. Any other source resolves with the system
//! resolver or goes through `HTTPS_PROXY`: shown for information.

use std::net::IpAddr;
use std::time::Duration;

use hyper_util::client::proxy::matcher::Matcher;
use serde_json::json;

use super::names::Resolver;
use super::report::{Check, Step};
use crate::auth::SourceEndpoint;
use crate::upstream::dns::DnsError;

const SYSTEM_LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

pub async fn check(endpoint: &SourceEndpoint, resolver: &Resolver<'_>, region: &str) -> Check {
    let host = endpoint.host.as_str();
    let literal = host.parse::<IpAddr>().ok();
    let dns = resolver.dns;
    let class = |ips: &[IpAddr]| {
        ips.iter()
            .map(|ip| {
                let class = if dns.in_vpc(*ip) { "in-VPC" } else { "outside" };
                format!("{ip} ({class})")
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    let details = |ips: &[IpAddr], via: &str| {
        json!({
            "endpoint": endpoint.url,
            "private": endpoint.private,
            "resolver": via,
            "addresses": ips.iter().map(|ip| json!({
                "address": ip.to_string(),
                "in_vpc": dns.in_vpc(*ip),
            })).collect::<Vec<_>>(),
        })
    };
    if endpoint.private {
        let via = resolver.label.as_str();
        let answer = match literal {
            Some(ip) => Ok(vec![ip]),
            None => dns.resolve(host).await,
        };
        let head = format!("endpoint {} (in-VPC addresses only)", endpoint.url);
        return match answer {
            Ok(ips) if ips.iter().any(|ip| dns.in_vpc(*ip)) => Check::pass(
                Step::Credential,
                format!("{head}: {host} via {via} -> {}", class(&ips)),
            )
            .with_details(details(&ips, via)),
            Ok(ips) => Check::fail(
                Step::Credential,
                format!("{head}: {host} via {via} -> {}", class(&ips)),
                "the endpoint resolves outside the in-VPC ranges, so the proxy refuses to call \
                 it: private DNS is off for its interface endpoint, or this VPC has none",
                format!(
                    "create the interface endpoint for this service with private DNS enabled, \
                     or set `endpoint` to its DNS name (aws ec2 describe-vpc-endpoints \
                     --region {region} --query 'VpcEndpoints[].[ServiceName,DnsEntries[0].DnsName]'); \
                     or add the VPC's CIDR to dns.private_ranges"
                ),
            )
            .with_details(details(&ips, via)),
            Err(e) => Check::fail(
                Step::Credential,
                format!("{head}: {host} via {via}: {e}"),
                match e {
                    DnsError::NotFound { .. } => {
                        "the endpoint's name does not exist: a typo, a deleted endpoint, or one in \
                         another region"
                    }
                    DnsError::Failed { .. } => "the name servers did not answer",
                },
                format!(
                    "copy the endpoint's DNS name from aws ec2 describe-vpc-endpoints --region \
                     {region}, or enable private DNS on it and leave `endpoint` out"
                ),
            )
            .with_details(details(&[], via)),
        };
    }
    let head = format!("endpoint {}", endpoint.url);
    if let Ok(uri) = endpoint.url.parse::<http::Uri>() {
        if let Some(proxy) = Matcher::from_env().intercept(&uri) {
            let proxy_host = proxy.uri().host().unwrap_or("?").to_string();
            return Check::info(
                Step::Credential,
                format!(
                    "{head}: through HTTPS_PROXY (proxy host {proxy_host}), which resolves {host}"
                ),
            );
        }
    }
    let ips = match literal {
        Some(ip) => vec![ip],
        None if !resolver.system => {
            return Check::info(
                Step::Credential,
                format!(
                    "{head}: not resolved here (--no-system-resolver); the proxy resolves it \
                     with the system resolver"
                ),
            )
        }
        None => {
            let lookup = tokio::net::lookup_host((host, endpoint.port));
            match tokio::time::timeout(SYSTEM_LOOKUP_TIMEOUT, lookup).await {
                Ok(Ok(addrs)) => {
                    let mut ips: Vec<IpAddr> = addrs.map(|a| a.ip()).collect();
                    ips.dedup();
                    ips
                }
                Ok(Err(e)) => {
                    return Check::info(
                        Step::Credential,
                        format!("{head}: {host} via the system resolver: {e}"),
                    )
                }
                Err(_) => {
                    return Check::info(
                        Step::Credential,
                        format!("{head}: {host} via the system resolver: no answer"),
                    )
                }
            }
        }
    };
    let note = if ips.iter().all(|ip| dns.in_vpc(*ip)) {
        "inside the VPC"
    } else {
        "the call leaves the VPC (over a NAT route or a proxy)"
    };
    Check::info(
        Step::Credential,
        format!("{head}: {host} -> {}: {note}", class(&ips)),
    )
    .with_details(details(&ips, "system"))
}
