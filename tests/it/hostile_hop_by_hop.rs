//! Hop-by-hop headers stop at the proxy (RFC 9110 7.6.1): the fixed list, and every
//! header an agent names in `Connection`, however many `Connection` headers it sends.
//! (Found by the `headers` fuzz target.)

use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::raw;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn forwarded_headers(extra: &str) -> Vec<(String, String)> {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    let answer = raw(
        proxy.addr,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{PING}",
            PING.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    upstream.requests()[0].headers.clone()
}

/// Sends `extra` headers with a call; asserts none of `hops` reached the gateway and the
/// end-to-end `X-End-To-End` did.
async fn assert_stay_behind(extra: &str, hops: &[&str]) {
    let seen = forwarded_headers(extra).await;
    let names: Vec<&str> = seen.iter().map(|(n, _)| n.as_str()).collect();
    for hop in hops {
        assert!(!names.contains(hop), "{hop} reached the gateway: {names:?}");
    }
    assert!(names.contains(&"x-end-to-end"), "{names:?}");
}

#[tokio::test]
async fn headers_named_in_connection_stay_behind() {
    assert_stay_behind(
        "Connection: close, x-hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nX-End-To-End: 2\r\n",
        &["connection", "x-hop", "keep-alive", "te"],
    )
    .await;
}

#[tokio::test]
async fn headers_named_in_a_second_connection_header_stay_behind() {
    assert_stay_behind(
        "Connection: close\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-End-To-End: 2\r\n",
        &["x-hop"],
    )
    .await;
}
