//! Thread-per-core serving: `--workers N` serves agent connections on N threads, each
//! with its own upstream pool, handing accepted connections to them in turn. Agents see
//! one proxy; the gateway sees one (multiplexed h2) connection per worker that had work.

use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http;
use crate::common::proxy::head;
use crate::common::proxy_process::ProxyProcess;
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::json;

async fn rig(workers: &str) -> (Upstream, DnsServer, ProxyProcess) {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n",
        head(&dns),
        upstream.port(),
        upstream.ca_file().display()
    );
    let proxy = ProxyProcess::start_with_args(&toml, &["--workers", workers]).await;
    (upstream, dns, proxy)
}

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"workers-test","version":"1"}}}"#;

/// Sends `initialize` `n` times, each on a new agent connection, and checks each answer.
async fn initialize_on_new_connections(proxy: &ProxyProcess, n: usize) {
    for _ in 0..n {
        let answer = http::post_rpc(&proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        assert!(answer.body.contains("protocolVersion"), "{}", answer.body);
    }
}

/// Six requests, each on a new agent connection, go round the three workers twice:
/// each worker opens one upstream connection for its first request and reuses it for
/// its second.
#[tokio::test]
async fn connections_go_round_the_workers_each_with_its_own_pool() {
    let (upstream, _dns, proxy) = rig("3").await;
    initialize_on_new_connections(&proxy, 6).await;
    assert_eq!(
        upstream.connections(),
        3,
        "one upstream connection per worker; proxy log: {}",
        proxy.log()
    );
}

/// An MCP session is not tied to a worker: its POSTs and its GET stream arrive on
/// different agent connections, served by different workers.
#[tokio::test]
async fn an_mcp_session_spans_workers() {
    let (_upstream, _dns, proxy) = rig("3").await;
    let agent = client::connect(&proxy.url()).await;
    for i in 0..6 {
        let result = client::call_tool(
            &agent,
            "DemoTarget___echo",
            json!({ "text": i.to_string() }),
        )
        .await;
        assert_eq!(client::first_text(&result), Some(i.to_string().as_str()));
    }
}

/// One worker: everything runs on the main thread, over one upstream connection.
#[tokio::test]
async fn one_worker_serves_every_agent_over_one_upstream_connection() {
    let (upstream, _dns, proxy) = rig("1").await;
    initialize_on_new_connections(&proxy, 4).await;
    assert_eq!(upstream.connections(), 1, "proxy log: {}", proxy.log());
}
