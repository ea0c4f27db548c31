//! Every refusal answers exactly as documented (README, "What the agent sees").

use crate::common::dns::{DnsMode, DnsServer};
use crate::common::http::{assert_rpc_error, post_rpc, raw, send};
use crate::common::proxy::{head, Mode, Proxy, Setup};
use crate::common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::json;

const INIT: &str = r#"{"jsonrpc":"2.0","id":"req-1","method":"initialize","params":{}}"#;

#[tokio::test]
async fn an_unknown_path_is_404() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let answer = post_rpc(&s.proxy.url_for("/other"), INIT).await;
    assert_eq!(answer.status, 404);
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(answer.body, "mcp-vpce-proxy: no route for path /other\n");
    let trailing = post_rpc(&s.proxy.url_for("/mcp/"), INIT).await;
    assert_eq!(trailing.status, 404);
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn absolute_form_requests_are_refused() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let response = raw(
        s.proxy.addr,
        b"GET http://example.com/mcp HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert!(response.ends_with(
        "mcp-vpce-proxy: absolute-form request targets are refused: this is not an open proxy; \
         send requests to a configured local path such as /mcp\n"
    ), "{response}");
    // Even when the absolute URL names a configured path.
    let response = raw(
        s.proxy.addr,
        format!("POST http://{}/mcp HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}", s.proxy.addr).as_bytes(),
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{response}"
    );
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn connect_is_refused() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let response = raw(
        s.proxy.addr,
        b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"),
        "{response}"
    );
    assert!(
        response
            .to_ascii_lowercase()
            .contains("\r\nallow: get, post, delete\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("mcp-vpce-proxy: CONNECT is refused: this is not an open proxy\n"),
        "{response}"
    );
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn other_methods_are_405_with_allow() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    for method in ["PUT", "PATCH", "OPTIONS"] {
        let answer = send(method, &s.proxy.url(), &[], "").await;
        assert_eq!(answer.status, 405, "{method}");
        assert_eq!(answer.headers["allow"], "GET, POST, DELETE");
        assert_eq!(
            answer.body,
            format!("mcp-vpce-proxy: method {method} is not allowed; use GET, POST, DELETE\n")
        );
    }
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn a_body_over_the_limit_is_413_before_any_connection() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions::default(),
        "max_body_bytes = 1024",
    )
    .await;
    let big = format!(
        r#"{{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{{"x":"{}"}}}}"#,
        "a".repeat(2000)
    );
    let answer = post_rpc(&s.proxy.url(), &big).await;
    assert_rpc_error(
        &answer,
        413,
        -31006,
        json!(null),
        "mcp-vpce-proxy: route mcp: request body exceeds the limit of 1024 bytes",
    );
    // Also when the length is only known while streaming (chunked).
    let response = raw(
        s.proxy.addr,
        format!(
            "POST /mcp HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{:x}\r\n{big}\r\n0\r\n\r\n",
            big.len()
        )
        .as_bytes(),
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 413 Payload Too Large\r\n"),
        "{response}"
    );
    // A body at the limit goes through.
    let frame = r#"{"jsonrpc":"2.0","id":6,"method":"ping","pad":""}"#;
    let fits = frame.replace(
        r#""pad":"""#,
        &format!(r#""pad":"{}""#, "b".repeat(1024 - frame.len())),
    );
    assert_eq!(fits.len(), 1024);
    let answer = post_rpc(&s.proxy.url(), &fits).await;
    assert_ne!(answer.status, 413);
    assert_eq!(s.upstream.requests().len(), 1);
}

#[tokio::test]
async fn upstream_down_is_502_naming_the_address() {
    // A port that was just free: nothing listens there.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\n",
        head(&dns)
    ))
    .await;
    let answer = post_rpc(&proxy.url(), INIT).await;
    assert_rpc_error(
        &answer,
        502,
        -31000,
        json!("req-1"),
        &format!(
            "mcp-vpce-proxy: route mcp: cannot connect to {ENDPOINT_HOST}: 127.0.0.1:{port}: Connection refused (os error 111)"
        ),
    );
    // The proxy keeps serving.
    let again = post_rpc(&proxy.url(), INIT).await;
    assert_eq!(again.status, 502);
}

#[tokio::test]
async fn an_unknown_endpoint_name_is_503() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    s.dns.remove(ENDPOINT_HOST);
    let answer = post_rpc(&s.proxy.url(), INIT).await;
    assert_rpc_error(
        &answer,
        503,
        -31003,
        json!("req-1"),
        &format!(
            "mcp-vpce-proxy: route mcp: DNS name {ENDPOINT_HOST} has no addresses (NXDOMAIN or no A/AAAA records)"
        ),
    );
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn failing_name_servers_are_503() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[]).await;
    dns.set_mode(DnsMode::ServFail);
    let proxy = Proxy::start(&format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{ca}\"\n",
        head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display()
    ))
    .await;
    let answer = post_rpc(&proxy.url(), INIT).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["error"]["code"], -31003);
    let message = v["error"]["message"].as_str().unwrap();
    let prefix = format!("mcp-vpce-proxy: route mcp: DNS lookup of {ENDPOINT_HOST} failed: ");
    assert!(message.starts_with(&prefix), "{message}");
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn a_certificate_for_another_name_is_refused() {
    let options = UpstreamOptions {
        cert_names: vec!["not-the-gateway.example.com".to_string()],
        ..UpstreamOptions::default()
    };
    let s = Setup::start_with(Mode::PrivateDnsOff, options, "").await;
    let answer = post_rpc(&s.proxy.url(), INIT).await;
    assert_eq!(answer.status, 502, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["id"], "req-1");
    assert_eq!(v["error"]["code"], -31004);
    assert_eq!(v["error"]["data"]["reason"], "tls");
    let message = v["error"]["message"].as_str().unwrap();
    let prefix = format!(
        "mcp-vpce-proxy: route mcp: TLS handshake with {ENDPOINT_HOST} (127.0.0.1:{}) failed for server name {GATEWAY_HOST}: invalid peer certificate: ",
        s.upstream.port()
    );
    assert!(message.starts_with(&prefix), "{message}");
    assert!(s.upstream.requests().is_empty());
}

/// With `validate = false` the route forwards what it cannot read; by default it answers
/// -32700 itself (tests/it/request_validation.rs).
#[tokio::test]
async fn malformed_json_is_forwarded_for_the_gateway_to_judge() {
    let s = Setup::start_with(
        Mode::PrivateDnsOff,
        UpstreamOptions::default(),
        "[route.policy]\nvalidate = false\n",
    )
    .await;
    let answer = post_rpc(&s.proxy.url(), "{not json").await;
    // The gateway's own answer, not one of ours.
    assert!(!answer.body.contains("mcp-vpce-proxy"), "{}", answer.body);
    assert_eq!(s.upstream.requests().len(), 1);
    assert_eq!(s.upstream.requests()[0].method, http::Method::POST);
}
