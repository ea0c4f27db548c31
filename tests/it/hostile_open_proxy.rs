//! Not an open proxy, under fire: many clients at once sending absolute-form targets,
//! `CONNECT` (HTTP/1.1 and h2c), a spoofed `Host` (DNS rebinding) or a browser `Origin`.
//! Each gets its documented answer (tests/it/refusals.rs and tests/it/inbound_security.rs
//! hold the single cases), nothing reaches the gateway, and well-behaved agents are
//! served all along.

use std::time::Duration;

use crate::common::agents::Bystanders;
use crate::common::dns::DnsServer;
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::raw;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::ENDPOINT_HOST;
use tokio::net::TcpStream;

const PING: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

fn post(target: &str, headers: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{PING}",
        PING.len()
    )
}

/// (request, expected status line, expected body) for each kind of attempt.
fn attempts(proxy: &Proxy) -> Vec<(String, &'static str, String)> {
    vec![
        (
            post("http://169.254.169.254/latest/meta-data/", "Host: 169.254.169.254\r\n"),
            "HTTP/1.1 400 Bad Request",
            "mcp-vpce-proxy: absolute-form request targets are refused: this is not an open proxy; \
             send requests to a configured local path such as /mcp\n"
                .to_string(),
        ),
        (
            post(&format!("http://{}/mcp", proxy.addr), "Host: x\r\n"),
            "HTTP/1.1 400 Bad Request",
            "mcp-vpce-proxy: absolute-form request targets are refused: this is not an open proxy; \
             send requests to a configured local path such as /mcp\n"
                .to_string(),
        ),
        (
            "CONNECT internal.example:443 HTTP/1.1\r\nHost: internal.example:443\r\nConnection: close\r\n\r\n"
                .to_string(),
            "HTTP/1.1 405 Method Not Allowed",
            "mcp-vpce-proxy: CONNECT is refused: this is not an open proxy\n".to_string(),
        ),
        (
            post("/mcp", "Host: evil.example\r\n"),
            "HTTP/1.1 403 Forbidden",
            "mcp-vpce-proxy: Host \"evil.example\" is not a name of this listener (inbound.allowed_hosts)\n"
                .to_string(),
        ),
        (
            post("/mcp", "Host: 127.0.0.1\r\nOrigin: http://evil.example\r\n"),
            "HTTP/1.1 403 Forbidden",
            "mcp-vpce-proxy: Origin \"http://evil.example\" is not allowed (inbound.allowed_origins)\n"
                .to_string(),
        ),
    ]
}

#[tokio::test]
async fn refusals_under_load_leave_agents_served_and_the_gateway_untouched() {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    let bystanders = Bystanders::start(&proxy.url(), 4, Duration::from_millis(20));
    bystanders.wait_for_more(5).await;

    let attempts = attempts(&proxy);
    let attackers: Vec<_> = (0..250)
        .map(|i| {
            let (request, status, body) = attempts[i % attempts.len()].clone();
            let addr = proxy.addr;
            tokio::spawn(async move {
                let answer = raw(addr, request.as_bytes()).await;
                assert!(answer.starts_with(&format!("{status}\r\n")), "{answer}");
                assert!(answer.ends_with(&format!("\r\n\r\n{body}")), "{answer}");
            })
        })
        .collect();
    for attacker in attackers {
        attacker.await.unwrap();
    }
    bystanders.wait_for_more(10).await;
    bystanders.assert_all_succeeded(15).await;
    assert!(upstream
        .requests()
        .iter()
        .all(|r| String::from_utf8_lossy(&r.body).contains("DemoTarget___echo")));
}

#[tokio::test]
async fn connect_over_h2_is_405() {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!("{}{}", head(&dns), upstream.route(""))).await;
    let tcp = TcpStream::connect(proxy.addr).await.unwrap();
    let (client, connection) = h2::client::handshake(tcp).await.unwrap();
    tokio::spawn(connection);
    let mut client = client.ready().await.unwrap();
    let request = http::Request::connect("internal.example:443")
        .body(())
        .unwrap();
    let (response, _) = client.send_request(request, true).unwrap();
    let response = response.await.unwrap();
    assert_eq!(response.status(), 405);
    assert_eq!(response.headers()["allow"], "GET, POST, DELETE");
    assert!(upstream.requests().is_empty());
}
