//! Header floods: one huge header, or very many, over HTTP/1.1 and HTTP/2 (h2c). What
//! the agent gets is hyper's answer, asserted here as it is: HTTP/1.1 `431` and the
//! connection closed; over h2 a `431` for that stream when the header list is over
//! `limits.max_header_bytes`, and `GOAWAY ENHANCE_YOUR_CALM` for the connection when it
//! is far over. Nothing reaches the gateway, agents are served meanwhile, memory stays
//! bounded.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::raw;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::ENDPOINT_HOST;
use bytes::Bytes;
use http::StatusCode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const PING: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn rig() -> (FaultyUpstream, DnsServer, ProxyProcess) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!(
        "{}\n[limits]\nmax_header_bytes = 16384\n{}",
        head(&dns),
        upstream.route("")
    ))
    .await;
    (upstream, dns, proxy)
}

/// hyper's automatic answer to a head over the limits.
const TOO_LARGE: &str =
    "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n";

fn post_with_headers(headers: &str) -> Vec<u8> {
    let mut request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\n\r\n",
        PING.len()
    )
    .into_bytes();
    request.extend_from_slice(PING);
    request
}

#[tokio::test]
async fn one_huge_header_is_431_and_the_connection_closed() {
    let (upstream, _dns, proxy) = rig().await;
    let answer = raw(
        proxy.addr(),
        &post_with_headers(&format!("X-Huge: {}\r\n", "a".repeat(100_000))),
    )
    .await;
    assert!(answer.starts_with(TOO_LARGE), "{answer}");
    assert!(
        answer.ends_with("\r\n\r\n"),
        "no body, then closed: {answer}"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn very_many_headers_are_431_and_the_connection_closed() {
    let (upstream, _dns, proxy) = rig().await;
    // hyper reads at most 100 header fields, however small.
    let many: String = (0..150).map(|i| format!("X-H{i}: v\r\n")).collect();
    let answer = raw(proxy.addr(), &post_with_headers(&many)).await;
    assert!(answer.starts_with(TOO_LARGE), "{answer}");
    assert!(upstream.requests().is_empty());
}

/// An h2c connection to the proxy (prior knowledge), driven in the background.
async fn h2c(proxy: &ProxyProcess) -> h2::client::SendRequest<Bytes> {
    let tcp = TcpStream::connect(proxy.addr()).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    client
}

/// POSTs a ping with `headers` extra headers of `size` bytes each.
async fn h2_post(
    client: h2::client::SendRequest<Bytes>,
    url: &str,
    headers: usize,
    size: usize,
) -> Result<StatusCode, h2::Error> {
    let mut client = client.ready().await?;
    let mut request = http::Request::post(url).header("content-type", "application/json");
    for i in 0..headers {
        request = request.header(format!("x-h{i}"), "a".repeat(size));
    }
    let (response, mut body) = client.send_request(request.body(()).unwrap(), false)?;
    let _ = body.send_data(Bytes::from_static(PING), true);
    Ok(response.await?.status())
}

#[tokio::test]
async fn over_h2_a_header_list_over_the_limit_is_431_and_the_connection_goes_on() {
    let (upstream, _dns, proxy) = rig().await;
    let client = h2c(&proxy).await;
    // 300 headers of 100 bytes: about 30 KB against a limit of 16 KiB.
    let refused = h2_post(client.clone(), &proxy.url(), 300, 100).await;
    assert_eq!(
        refused.unwrap(),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE
    );
    assert!(upstream.requests().is_empty());
    assert_eq!(
        h2_post(client, &proxy.url(), 1, 10).await.unwrap(),
        StatusCode::OK
    );
    assert_eq!(upstream.requests().len(), 1);
}

#[tokio::test]
async fn over_h2_a_header_list_far_over_the_limit_ends_the_connection() {
    let (upstream, _dns, proxy) = rig().await;
    let client = h2c(&proxy).await;
    let error = h2_post(client.clone(), &proxy.url(), 1, 100_000)
        .await
        .unwrap_err();
    assert!(error.is_go_away(), "{error}");
    assert_eq!(error.reason(), Some(h2::Reason::ENHANCE_YOUR_CALM));
    assert!(h2_post(client, &proxy.url(), 1, 10).await.is_err());
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_hundred_flooding_clients_leave_agents_served_and_memory_bounded() {
    let (upstream, _dns, proxy) = rig().await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(20));
    bystanders.wait_for_more(5).await;
    let floods: Vec<_> = (0..100)
        .map(|i| {
            let addr = proxy.addr();
            tokio::spawn(async move {
                // Header lines without end (64 MiB: more than any socket buffer takes)
                // until the proxy hangs up.
                let mut stream = TcpStream::connect(addr).await.unwrap();
                let _ = stream
                    .write_all(b"POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                    .await;
                let line = format!("X-Flood-{i}: {}\r\n", "f".repeat(1024));
                for _ in 0..64 * 1024 {
                    if stream.write_all(line.as_bytes()).await.is_err() {
                        return;
                    }
                }
                panic!("the proxy read a 64 MiB head");
            })
        })
        .collect();
    for flood in floods {
        flood.await.unwrap();
    }
    proxy.assert_rss_below(64, "after 100 header floods");
    bystanders.wait_for_more(10).await;
    bystanders.assert_all_succeeded(15).await;
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.headers.iter().all(|(n, _)| !n.starts_with("x-flood"))));
}
