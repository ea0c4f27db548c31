//! What the gateway sees: its own name in SNI and Host (also when the proxy dials the
//! VPC endpoint's name), the route's credential, and never the caller's Authorization.

use std::time::Duration;

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::proxy::{head, Mode, Proxy, Setup, GATEWAY_TOKEN};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};

fn assert_gateway_identity(upstream: &Upstream, expected_auth: &str) {
    let seen = upstream.requests();
    assert!(!seen.is_empty());
    let host = format!("{GATEWAY_HOST}:{}", upstream.port());
    for r in &seen {
        assert_eq!(
            r.sni.as_deref(),
            Some(GATEWAY_HOST),
            "SNI of {} {}",
            r.method,
            r.path
        );
        assert_eq!(
            r.host.as_deref(),
            Some(host.as_str()),
            "Host of {} {}",
            r.method,
            r.path
        );
        assert_eq!(
            r.authorization.as_deref(),
            Some(expected_auth),
            "{} {}",
            r.method,
            r.path
        );
    }
}

async fn identity(mode: Mode) {
    let s = Setup::start(mode).await;
    // The agent sends its own credential: it must never reach the gateway.
    let agent = client::connect_with_bearer(&s.proxy.url(), "caller-secret").await;
    client::call_tool(
        &agent,
        "DemoTarget___echo",
        serde_json::json!({"text": "hi"}),
    )
    .await;
    agent.cancel().await.unwrap();
    assert_gateway_identity(&s.upstream, &format!("Bearer {GATEWAY_TOKEN}"));
    for r in s.upstream.requests() {
        for value in r.headers.values() {
            assert!(!value.to_str().unwrap_or("").contains("caller-secret"));
        }
    }
}

#[tokio::test]
async fn sni_and_host_carry_the_gateway_name_with_private_dns_on() {
    identity(Mode::PrivateDnsOn).await;
}

#[tokio::test]
async fn sni_and_host_carry_the_gateway_name_when_dialing_the_endpoint() {
    identity(Mode::PrivateDnsOff).await;
}

#[tokio::test]
async fn a_rotated_token_file_is_used_without_restart() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let agent = client::connect(&s.proxy.url()).await;
    agent.list_all_tools().await.unwrap();
    std::fs::write(&s.token_file, "rotated-token-42\n").unwrap();
    // The file is looked at again at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    agent.list_all_tools().await.unwrap();
    let last = s.upstream.requests().pop().unwrap();
    assert_eq!(
        last.authorization.as_deref(),
        Some("Bearer rotated-token-42")
    );
    agent.cancel().await.unwrap();
}

#[tokio::test]
async fn a_passthrough_route_forwards_the_callers_authorization() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
credential = {{ type = "passthrough" }}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display()
    ))
    .await;
    let agent = client::connect_with_bearer(&proxy.url(), "user-token-7").await;
    agent.list_all_tools().await.unwrap();
    agent.cancel().await.unwrap();
    assert_gateway_identity(&upstream, "Bearer user-token-7");
}
