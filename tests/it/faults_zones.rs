//! Two availability zones: the endpoint name answers one address per zone. When one
//! zone's address fails the other carries the traffic; when both work, the agent's own
//! zone (`preferred_ranges`) is used.

use crate::common::agents::rpc;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{FaultyUpstream, Handshake};
use crate::common::http::post_rpc;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;

const ZONE_A: &str = "127.0.0.1";
const ZONE_B: &str = "127.0.0.4";

/// DNS answers both zones' addresses (zone B first), both are in-VPC; every call dials
/// (no idle pool) so that every call makes the choice again.
async fn proxy(upstream: &FaultyUpstream, preferred: Option<&str>) -> (Proxy, DnsServer) {
    let dns = DnsServer::start(&[
        (ENDPOINT_HOST, ZONE_B.parse().unwrap()),
        (ENDPOINT_HOST, ZONE_A.parse().unwrap()),
    ])
    .await;
    let preferred = preferred
        .map(|zone| format!("preferred_ranges = [\"{zone}/32\"]"))
        .unwrap_or_default();
    let toml = format!(
        "{}{}",
        head(&dns).replace(
            r#"private_ranges = ["127.0.0.1/32"]"#,
            &format!(r#"private_ranges = ["{ZONE_A}/32", "{ZONE_B}/32"]"#)
        ),
        upstream.route(&format!(
            "pool_max_idle = 0\ntls_timeout = \"300ms\"\n{preferred}"
        ))
    );
    (Proxy::start(&toml).await, dns)
}

async fn served_by(proxy: &Proxy, id: u64) -> String {
    let answer = post_rpc(&proxy.url(), &rpc(id)).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["result"]["servedBy"]
        .as_str()
        .unwrap()
        .to_string()
}

#[tokio::test]
async fn a_zone_that_refuses_connections_is_skipped_for_the_other() {
    // Only zone A listens: connections to zone B's address are refused.
    let upstream = FaultyUpstream::start_on(&[ZONE_A.parse().unwrap()]).await;
    // Even with zone B preferred (tried first), every call succeeds through zone A.
    let (proxy, _dns) = proxy(&upstream, Some(ZONE_B)).await;
    for id in 0..5 {
        assert_eq!(served_by(&proxy, id).await, ZONE_A);
    }
    assert_eq!(upstream.connections_to(ZONE_A), 5);
}

#[tokio::test]
async fn the_preferred_zone_is_used_while_both_work() {
    let upstream =
        FaultyUpstream::start_on(&[ZONE_A.parse().unwrap(), ZONE_B.parse().unwrap()]).await;
    let (in_a, _dns_a) = proxy(&upstream, Some(ZONE_A)).await;
    let (in_b, _dns_b) = proxy(&upstream, Some(ZONE_B)).await;
    for id in 0..5 {
        assert_eq!(served_by(&in_a, id).await, ZONE_A);
        assert_eq!(served_by(&in_b, id).await, ZONE_B);
    }
    assert_eq!(upstream.connections_to(ZONE_A), 5);
    assert_eq!(upstream.connections_to(ZONE_B), 5);
}

/// A zone whose address accepts TCP but never completes TLS (a half-dead endpoint
/// network interface) costs a `tls_timeout`, not the call.
#[tokio::test]
async fn a_zone_that_accepts_tcp_but_never_answers_tls_is_skipped_for_the_other() {
    let upstream =
        FaultyUpstream::start_on(&[ZONE_A.parse().unwrap(), ZONE_B.parse().unwrap()]).await;
    upstream.set_handshake_at(ZONE_B, Handshake::Never);
    let (proxy, _dns) = proxy(&upstream, Some(ZONE_B)).await;
    assert_eq!(served_by(&proxy, 1).await, ZONE_A);
}
