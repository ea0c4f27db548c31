//! Connection reuse: one pool per route, kept alive across requests, never shared
//! between routes.

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::post_rpc;
use crate::common::proxy::{head, ChildSetup, Mode, Proxy, Setup};
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

/// `n` pings sent at once; each answer's status.
async fn burst(url: &str, n: usize) -> Vec<u16> {
    let calls = (0..n).map(|i| {
        let url = url.to_string();
        tokio::spawn(async move {
            post_rpc(
                &url,
                &format!(r#"{{"jsonrpc":"2.0","id":{i},"method":"ping"}}"#),
            )
            .await
            .status
            .as_u16()
        })
    });
    let mut statuses = Vec::new();
    for call in calls {
        statuses.push(call.await.unwrap());
    }
    statuses
}

#[tokio::test]
async fn a_cold_burst_of_a_hundred_shares_one_h2_connection() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let statuses = burst(&s.proxy.url(), 100).await;
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    // The first request opens the connection; the 99 others wait for it rather than
    // dialing their own.
    assert_eq!(s.upstream.connections(), 1);
    assert_eq!(s.upstream.requests().len(), 100);
}

#[tokio::test]
async fn a_cold_burst_on_two_workers_opens_at_most_one_h2_connection_per_worker() {
    let workers = [("MCP_VPCE_PROXY_WORKERS", "2".to_string())];
    let s = ChildSetup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions::default(),
        "",
        &workers,
    )
    .await;
    let statuses = burst(&s.proxy.url(), 100).await;
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    let opened = s.upstream.connections();
    assert!(
        (1..=2).contains(&opened),
        "{opened} connections for 2 workers"
    );
    assert_eq!(s.upstream.requests().len(), 100);
}

#[tokio::test]
async fn a_cold_burst_to_an_http1_gateway_opens_a_bounded_number_of_connections() {
    let options = UpstreamOptions {
        h2: false,
        ..UpstreamOptions::default()
    };
    let s = Setup::start_with(Mode::PrivateDnsOff, options, "max_connecting = 3").await;
    let statuses = burst(&s.proxy.url(), 60).await;
    assert!(statuses.iter().all(|s| *s < 500), "{statuses:?}");
    // One HTTP/1.1 connection carries one request at a time: the burst queues for at
    // most three being opened at once (and the ones that come back).
    let opened = s.upstream.connections();
    assert!((1..=3).contains(&opened), "{opened} connections");
    assert_eq!(s.upstream.requests().len(), 60);
}
