//! Request smuggling: requests whose length is ambiguous (conflicting or malformed
//! `Content-Length` / `Transfer-Encoding`). hyper refuses every ambiguous form with an
//! automatic `400` and closes the connection; `Content-Length` together with chunked
//! `Transfer-Encoding` is framed by the chunks (RFC 9112 6.3) and the connection is
//! closed after the answer, so bytes after the body are never read as a request. The
//! proxy reads each body whole and sends it with its own `Content-Length`, so the
//! gateway never sees the agent's framing, let alone a smuggled request.

use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::{self, FaultyUpstream};
use crate::common::http::raw;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;
use bytes::Bytes;
use serde_json::json;
use tokio::net::TcpStream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
/// A whole second request, which a desynchronised server would take as the next one.
const SMUGGLED: &str = "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: 42\r\n\r\n{\"jsonrpc\":\"2.0\",\"id\":666,\"method\":\"ping\"}";

/// hyper's automatic answer to a request it cannot frame.
const BAD_REQUEST: &str = "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n";

async fn rig() -> (FaultyUpstream, Proxy, DnsServer) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    (upstream, proxy, dns)
}

fn assert_never_smuggled(upstream: &FaultyUpstream) {
    assert!(
        upstream
            .requests()
            .iter()
            .all(|r| !String::from_utf8_lossy(&r.body).contains("666")),
        "the smuggled request reached the gateway"
    );
}

#[tokio::test]
async fn ambiguous_lengths_are_400_and_the_connection_closed() {
    let (upstream, proxy, _dns) = rig().await;
    let chunked = format!("{:x}\r\n{PING}\r\n0\r\n\r\n", PING.len());
    let n = PING.len();
    let cases = [
        (
            "two different Content-Length",
            format!("Content-Length: {n}\r\nContent-Length: 5\r\n\r\n{PING}"),
        ),
        (
            "a Content-Length list",
            format!("Content-Length: {n}, {n}\r\n\r\n{PING}"),
        ),
        (
            "a signed Content-Length",
            format!("Content-Length: +{n}\r\n\r\n{PING}"),
        ),
        (
            "chunked not last",
            format!("Transfer-Encoding: chunked, identity\r\n\r\n{chunked}"),
        ),
        (
            "an unknown coding",
            format!("Transfer-Encoding: xchunked\r\nContent-Length: {n}\r\n\r\n{PING}"),
        ),
        (
            "whitespace before the colon",
            format!("Transfer-Encoding : chunked\r\nContent-Length: {n}\r\n\r\n{PING}"),
        ),
        (
            "an obsolete line folding",
            format!("X-Fold: a\r\n chunked\r\nContent-Length: {n}\r\n\r\n{PING}"),
        ),
    ];
    for (case, rest) in cases {
        let request = format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n{rest}{SMUGGLED}"
        );
        let answer = raw(proxy.addr, request.as_bytes()).await;
        assert!(answer.starts_with(BAD_REQUEST), "{case}: {answer}");
        assert!(answer.ends_with("\r\n\r\n"), "{case}: one answer: {answer}");
    }
    // HTTP/1.0 has no chunked coding.
    let answer = raw(
        proxy.addr,
        format!("POST /mcp HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{chunked}{SMUGGLED}").as_bytes(),
    )
    .await;
    assert!(answer.starts_with(BAD_REQUEST), "{answer}");
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn content_length_with_chunked_is_framed_by_the_chunks_and_the_connection_closed() {
    let (upstream, proxy, _dns) = rig().await;
    // Content-Length says 4 (a front end trusting it would take the rest as a new
    // request); the chunks say the body is PING, and the smuggled request follows.
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n{PING}\r\n0\r\n\r\n{SMUGGLED}",
        PING.len()
    );
    let answer = raw(proxy.addr, request.as_bytes()).await;
    let body = faulty_upstream::answer(&json!(1), "127.0.0.1");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\r\nconnection: close\r\n"), "{answer}");
    assert!(
        answer.ends_with(&format!("\r\n\r\n{body}")),
        "one answer only: {answer}"
    );
    let seen = upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, PING.as_bytes());
    assert_eq!(
        seen[0].header("content-length"),
        Some(PING.len().to_string().as_str())
    );
    assert_eq!(seen[0].header("transfer-encoding"), None);
    assert_never_smuggled(&upstream);
}

#[tokio::test]
async fn identical_duplicate_content_lengths_are_one_length() {
    let (upstream, proxy, _dns) = rig().await;
    let n = PING.len();
    let request = format!(
        "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {n}\r\nContent-Length: {n}\r\n\r\n{PING}{SMUGGLED}"
    );
    let answer = raw(proxy.addr, request.as_bytes()).await;
    // RFC 9110 8.6 allows identical values; the bytes after the body are the next
    // request on this connection, answered as such (it is not hidden in a body).
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    let seen = upstream.requests();
    assert_eq!(seen.len(), 2);
    assert_eq!(seen[0].body, PING.as_bytes());
    assert_eq!(
        seen[0].header("content-length"),
        Some(PING.len().to_string().as_str())
    );
    assert!(String::from_utf8_lossy(&seen[1].body).contains("666"));
}

#[tokio::test]
async fn over_h2_a_body_longer_than_its_content_length_is_reset() {
    let (upstream, proxy, _dns) = rig().await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::post(format!("http://{}/mcp", proxy.addr))
        .header("content-type", "application/json")
        .header("content-length", "5")
        .body(())
        .unwrap();
    let (response, mut body) = client.send_request(request, false).unwrap();
    let _ = body.send_data(Bytes::from(format!("{PING}{SMUGGLED}")), true);
    // h2 checks the length itself: the stream is reset before the proxy sees a body.
    let error = response.await.unwrap_err();
    assert_eq!(error.reason(), Some(h2::Reason::PROTOCOL_ERROR), "{error}");
    assert!(upstream.requests().is_empty());
}
