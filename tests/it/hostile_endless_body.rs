//! Bodies that never end: a `Content-Length` never reached, a chunked body without its
//! last chunk, a body trickled a byte at a time. `limits.body_read_timeout` bounds the
//! whole body (not each read), the agent gets `400` with JSON-RPC `-31008`, nothing
//! reaches the gateway, and agents are served meanwhile.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::raw;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

async fn rig() -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\nbody_read_timeout = \"1s\"\n{}",
        head(&dns),
        upstream.route("")
    ))
    .await;
    (upstream, dns, proxy)
}

const REFUSED: &str = r#"{"error":{"code":-31008,"data":{"reason":"body_incomplete","route":"mcp","source":"proxy"},"message":"mcp-vpce-proxy: route mcp: request body not received within 1s"},"id":null,"jsonrpc":"2.0"}"#;

fn assert_refused(answer: &str) {
    assert!(
        answer.starts_with("HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\n"),
        "{answer}"
    );
    assert!(answer.ends_with(&format!("\r\n\r\n{REFUSED}")), "{answer}");
}

#[tokio::test]
async fn a_content_length_never_reached_is_400() {
    let (upstream, _dns, proxy) = rig().await;
    let answer = raw(
        proxy.addr(),
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"jsonrpc\":",
    )
    .await;
    assert_refused(&answer);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_chunked_body_without_its_last_chunk_is_400() {
    let (upstream, _dns, proxy) = rig().await;
    let answer = raw(
        proxy.addr(),
        b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n{\"jsonrpc\":\r\n",
    )
    .await;
    assert_refused(&answer);
    assert!(upstream.requests().is_empty());
}

/// Sends a head announcing a large body, then one byte every 100 ms; returns the answer
/// read while still sending.
async fn trickle(addr: std::net::SocketAddr) -> String {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let head = b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n";
        if write.write_all(head).await.is_err() {
            return;
        }
        for _ in 0..100_000 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), read.read_to_end(&mut answer)).await;
    writer.abort();
    String::from_utf8_lossy(&answer).into_owned()
}

#[tokio::test]
async fn a_body_trickled_a_byte_at_a_time_is_400_at_the_deadline() {
    let (upstream, _dns, proxy) = rig().await;
    assert_refused(&trickle(proxy.addr()).await);
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_hundred_endless_bodies_leave_agents_served_and_memory_bounded() {
    let (upstream, _dns, proxy) = rig().await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(20));
    bystanders.wait_for_more(5).await;
    let trickles: Vec<_> = (0..100)
        .map(|_| tokio::spawn(trickle(proxy.addr())))
        .collect();
    bystanders.wait_for_more(10).await;
    proxy.assert_rss_below(64, "with 100 bodies trickling in");
    for answer in trickles {
        assert_refused(&answer.await.unwrap());
    }
    bystanders.assert_all_succeeded(15).await;
    // Only the bystanders' calls (each a whole JSON-RPC message) reached the gateway.
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.body.starts_with(b"{\"jsonrpc\"")));
}
