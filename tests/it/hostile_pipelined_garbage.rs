//! Pipelined garbage: bytes that are not HTTP, alone or after a valid request on the
//! same connection. hyper answers what it could parse, then its automatic `400` and
//! closes; nothing but the valid requests reaches the gateway, and agents are served
//! meanwhile. Well-formed pipelined requests are answered in order.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, FaultyUpstream};
use crate::common::http::raw;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;
use serde_json::json;

async fn rig() -> (FaultyUpstream, Proxy, DnsServer) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    (upstream, proxy, dns)
}

const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n";

fn post(id: u64, connection: &str) -> Vec<u8> {
    let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
    format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{connection}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What no HTTP parser should take for a request: control bytes, a TLS ClientHello
/// sent to the plain listener, a line of text.
fn garbage() -> Vec<Vec<u8>> {
    vec![
        b"\x00\x01\x02\x03GARBAGE\r\n\r\n".to_vec(),
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x8a\x1f".to_vec(),
        b"hello proxy, please forward this\r\n\r\n".to_vec(),
        b"POST /mcp HTTP/9.9\r\n\r\n".to_vec(),
    ]
}

#[tokio::test]
async fn garbage_alone_is_400_and_the_connection_closed() {
    let (upstream, proxy, _dns) = rig().await;
    for bytes in garbage() {
        let answer = raw(proxy.addr, &bytes).await;
        assert!(answer.starts_with(BAD_REQUEST), "{bytes:?}: {answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{bytes:?}: {answer}");
    }
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn garbage_after_a_request_is_answered_after_it_with_400() {
    let (upstream, proxy, _dns) = rig().await;
    for (id, bytes) in garbage().into_iter().enumerate() {
        let mut pipelined = post(id as u64, "");
        pipelined.extend_from_slice(&bytes);
        let answer = raw(proxy.addr, &pipelined).await;
        let body = faulty_upstream::answer(&json!(id), "127.0.0.1");
        let (first, second) = answer
            .split_once(&format!("\r\n\r\n{body}"))
            .unwrap_or_else(|| panic!("{bytes:?}: {answer}"));
        assert!(first.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(second.starts_with(BAD_REQUEST), "{bytes:?}: {answer}");
    }
    assert_eq!(upstream.requests().len(), garbage().len());
}

#[tokio::test]
async fn well_formed_pipelined_requests_are_answered_in_order() {
    let (upstream, proxy, _dns) = rig().await;
    let mut pipelined = post(1, "");
    pipelined.extend(post(2, ""));
    pipelined.extend(post(3, "Connection: close\r\n"));
    let answer = raw(proxy.addr, &pipelined).await;
    let bodies: Vec<usize> = (1..=3)
        .map(|id| {
            answer
                .find(&faulty_upstream::answer(&json!(id), "127.0.0.1"))
                .unwrap_or_else(|| panic!("no answer {id}: {answer}"))
        })
        .collect();
    assert!(bodies.windows(2).all(|w| w[0] < w[1]), "{answer}");
    assert_eq!(answer.matches("HTTP/1.1 200 OK\r\n").count(), 3);
    assert_eq!(upstream.requests().len(), 3);
}

#[tokio::test]
async fn garbage_from_many_clients_leaves_agents_served() {
    let (upstream, proxy, _dns) = rig().await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(20));
    bystanders.wait_for_more(5).await;
    let attackers: Vec<_> = (0..200)
        .map(|i| {
            let addr = proxy.addr;
            let bytes = garbage()[i % 4].clone();
            tokio::spawn(async move { raw(addr, &bytes).await })
        })
        .collect();
    for attacker in attackers {
        assert!(attacker.await.unwrap().starts_with(BAD_REQUEST));
    }
    bystanders.wait_for_more(10).await;
    bystanders.assert_all_succeeded(15).await;
    // Only the bystanders' calls reached the gateway.
    assert!(upstream
        .requests()
        .iter()
        .all(|r| String::from_utf8_lossy(&r.body).contains("DemoTarget___echo")));
}
