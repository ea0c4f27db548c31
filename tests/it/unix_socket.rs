//! The unix domain socket listener: same proxy, file permissions decide who may connect.

use std::os::unix::fs::PermissionsExt;

use crate::common::dns::DnsServer;
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

#[tokio::test]
async fn agents_can_use_a_unix_socket_with_the_configured_mode() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("agent.sock");
    let _proxy = Proxy::start(&format!(
        "{head}\n[unix_socket]\npath = \"{path}\"\nmode = \"0600\"\n\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{ca}\"\n",
        head = head(&dns),
        path = socket.display(),
        port = upstream.port(),
        ca = upstream.ca_file().display()
    ))
    .await;
    let mode = std::fs::metadata(&socket).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);

    let stream = tokio::net::UnixStream::connect(&socket).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let request = http::Request::post("/mcp")
        .header("host", "localhost")
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from_static(
            br#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
        )))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers().contains_key("mcp-session-id"));
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("serverInfo"));
    assert_eq!(upstream.requests().len(), 1);
}
