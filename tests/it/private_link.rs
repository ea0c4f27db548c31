//! The in-VPC check: with `require_private` (the default) an address outside the in-VPC
//! ranges is never dialed, and the agent is told PrivateLink is not in use. In these
//! tests 127.0.0.1/32 is "the VPC" and 127.0.0.2 is "the internet".

use std::net::SocketAddr;

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc, send};
use crate::common::proxy::{head, Proxy, OUTSIDE};
use crate::common::relay::Relay;
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use serde_json::json;

/// A gateway whose name resolves outside the VPC, with a relay listening there so that
/// any dial is counted (and would still reach the upstream).
struct PublicGateway {
    upstream: Upstream,
    relay: Relay,
    _dns: DnsServer,
    proxy: Proxy,
}

async fn public_gateway(route_extra: &str) -> PublicGateway {
    let upstream = Upstream::start().await;
    let outside: SocketAddr = format!("{OUTSIDE}:{}", upstream.port()).parse().unwrap();
    let relay = Relay::start(outside, upstream.addr).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, OUTSIDE.parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
{route_extra}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display()
    ))
    .await;
    PublicGateway {
        upstream,
        relay,
        _dns: dns,
        proxy,
    }
}

fn refusal_message() -> String {
    format!(
        "mcp-vpce-proxy: route mcp: PrivateLink is not in use: {GATEWAY_HOST} resolved to 127.0.0.2 \
         (outside the in-VPC ranges 127.0.0.1/32); refusing to connect. Enable private DNS on the \
         VPC endpoint or set the route's `endpoint` to the endpoint's DNS name"
    )
}

#[tokio::test]
async fn an_address_outside_the_vpc_is_refused_without_a_connection_attempt() {
    let g = public_gateway("").await;
    let answer = post_rpc(
        &g.proxy.url(),
        r#"{"jsonrpc":"2.0","id":42,"method":"initialize","params":{}}"#,
    )
    .await;
    assert_rpc_error(&answer, 502, -31002, json!(42), &refusal_message());
    let v = answer.json();
    assert_eq!(v["error"]["data"]["reason"], "not_private");
    assert_eq!(v["error"]["data"]["route"], "mcp");

    // A GET gets the same refusal as text.
    let get = send(
        "GET",
        &g.proxy.url(),
        &[("accept", "text/event-stream")],
        "",
    )
    .await;
    assert_eq!(get.status, 502);
    assert_eq!(get.body, format!("{}\n", refusal_message()));

    assert_eq!(g.relay.connections(), 0, "the outside address was dialed");
    assert_eq!(g.upstream.connections(), 0);
}

#[tokio::test]
async fn allow_public_dials_an_address_outside_the_vpc() {
    let g = public_gateway("require_private = false").await;
    let agent = client::connect(&g.proxy.url()).await;
    let result =
        client::call_tool(&agent, "DemoTarget___get_weather", json!({"city": "Oslo"})).await;
    assert_eq!(
        client::first_text(&result),
        Some("Weather in Oslo: 22°C, sunny")
    );
    agent.cancel().await.unwrap();
    assert!(g.relay.connections() >= 1);
}
