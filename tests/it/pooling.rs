//! Connection reuse: one pool per route, kept alive across requests, never shared
//! between routes.

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::post_rpc;
use crate::common::proxy::{head, Mode, Proxy, Setup};
use crate::common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::json;

#[tokio::test]
async fn a_hundred_sequential_calls_use_one_upstream_connection() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let agent = client::connect(&s.proxy.url()).await;
    for i in 0..100 {
        let text = format!("call {i}");
        let result = client::call_tool(&agent, "DemoTarget___echo", json!({"text": text})).await;
        assert_eq!(client::first_text(&result), Some(text.as_str()));
    }
    agent.cancel().await.unwrap();
    // Over h2 (ALPN) every request, the GET stream included, shares one connection.
    assert_eq!(s.upstream.connections(), 1);
    assert!(s.upstream.requests().len() >= 103);
}

#[tokio::test]
async fn http1_upstream_connections_are_kept_alive_and_reused() {
    let options = UpstreamOptions {
        h2: false,
        ..UpstreamOptions::default()
    };
    let s = Setup::start_with(Mode::PrivateDnsOff, options, "").await;
    for i in 0..100 {
        // Without a session the gateway answers each POST with an error, which is fine:
        // what counts here is the connection that carried it.
        let answer = post_rpc(
            &s.proxy.url(),
            &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#),
        )
        .await;
        assert!(answer.status.as_u16() < 500, "{}", answer.body);
    }
    assert_eq!(s.upstream.connections(), 1);
    assert_eq!(s.upstream.requests().len(), 100);
    assert!(s
        .upstream
        .requests()
        .iter()
        .all(|r| r.version == http::Version::HTTP_11));
}

#[tokio::test]
async fn two_routes_to_the_same_gateway_never_share_a_connection() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let route = |path: &str| {
        format!(
            r#"
[[route]]
path = "{path}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
"#,
            port = upstream.port(),
            ca = upstream.ca_file().display()
        )
    };
    let proxy = Proxy::start(&format!(
        "{}{}{}",
        head(&dns),
        route("/a/mcp"),
        route("/b/mcp")
    ))
    .await;
    for _ in 0..5 {
        for path in ["/a/mcp", "/b/mcp"] {
            post_rpc(
                &proxy.url_for(path),
                r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
            )
            .await;
        }
    }
    assert_eq!(upstream.connections(), 2);
    assert_eq!(upstream.requests().len(), 10);
}
