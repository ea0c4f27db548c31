//! `/metrics` after a known sequence of requests, forwarded, refused and failing: every
//! series of the routes under test has exactly the value it must have.
//!
//! Metrics are process-wide and every integration test shares the test process, so the
//! proxy here is the binary as a child process of its own (admin listener on): its
//! `/metrics` holds this test's requests alone.

use std::collections::BTreeMap;

use crate::common::aws::ChildProxy;
use crate::common::dns::DnsServer;
use crate::common::http::{send, Answer};
use crate::common::proxy::{head, GATEWAY_TOKEN};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::{json, Value};

const DOWN_ENDPOINT: &str =
    "vpce-0ddd0000000000000-down0000.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com";

/// The proxy binary and its admin listener, as `run` starts them, in a process of its
/// own; one worker, so that every agent connection shares one upstream pool, as in a
/// proxy in-process.
async fn start(toml: &str) -> ChildProxy {
    ChildProxy::start_with_admin(toml, &[], "info", &["--workers", "1"]).await
}

/// The JSON-RPC message of a JSON or single-event SSE answer.
fn message(answer: &Answer) -> Value {
    let data = answer
        .body
        .lines()
        .find_map(|l| l.strip_prefix("data: ").filter(|d| d.starts_with('{')))
        .unwrap_or(&answer.body);
    serde_json::from_str(data).unwrap_or_else(|e| panic!("{e}: {}", answer.body))
}

/// `series -> value` of the exposition, for the series whose line contains `filter`.
fn scrape(text: &str, filter: &[&str]) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && filter.iter().any(|f| l.contains(f)))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').unwrap();
            (series.to_string(), value.parse().unwrap())
        })
        .collect()
}

fn family(all: &BTreeMap<String, f64>, name: &str) -> Vec<(String, f64)> {
    all.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
        .map(|(k, v)| (k.clone(), *v))
        .collect()
}

fn series(name: &str, labels: &str, value: f64) -> (String, f64) {
    (format!("mcp_vpce_proxy_{name}{{{labels}}}"), value)
}

#[tokio::test]
async fn scraped_values_match_the_requests_made() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[
        (ENDPOINT_HOST, "127.0.0.1".parse().unwrap()),
        (DOWN_ENDPOINT, "127.0.0.1".parse().unwrap()),
    ])
    .await;
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, GATEWAY_TOKEN).unwrap();
    let child = start(&format!(
        r#"{head}
[[route]]
name = "metrics-ok"
path = "/ok"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
credential = {{ type = "file", path = "{token}" }}
max_body_bytes = 4096
[route.policy]
deny_tools = ["DemoTarget___echo"]

[[route]]
name = "metrics-down"
path = "/down"
gateway = "https://{GATEWAY_HOST}:{closed_port}/mcp"
endpoint = "{DOWN_ENDPOINT}"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        token = token.display(),
    ))
    .await;
    let (proxy, admin) = (child.addr, child.admin.expect("the admin listener"));
    let ok = format!("http://{proxy}/ok");
    let down = format!("http://{proxy}/down");

    // The agent's session: initialize, the initialized notification, two tool calls (one
    // succeeds, one reports a tool error), each forwarded; bytes counted as they pass.
    let mut bytes_in = 0;
    let mut bytes_out = 0;
    let base = [
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    let init = json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
        "protocolVersion":"2025-06-18","capabilities":{},
        "clientInfo":{"name":"metrics-test","version":"1"}}})
    .to_string();
    let answer = send("POST", &ok, &base, init.clone()).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    bytes_in += init.len();
    bytes_out += answer.body.len();
    let session = answer.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let version = message(&answer)["result"]["protocolVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let headers = [
        base[0],
        base[1],
        ("mcp-session-id", session.as_str()),
        ("mcp-protocol-version", version.as_str()),
    ];
    let forwarded = |body: String, status: u16| {
        let ok = ok.clone();
        async move {
            let answer = send("POST", &ok, &headers, body.clone()).await;
            assert_eq!(answer.status, status, "{}", answer.body);
            (body.len(), answer)
        }
    };
    let (n, answer) = forwarded(
        json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string(),
        202,
    )
    .await;
    bytes_in += n;
    bytes_out += answer.body.len();
    let (n, answer) = forwarded(
        json!({"jsonrpc":"2.0","id":2,"method":"tools/call","params":{
            "name":"DemoTarget___get_weather","arguments":{"city":"Oslo"}}})
        .to_string(),
        200,
    )
    .await;
    assert_eq!(message(&answer)["result"]["isError"], false);
    bytes_in += n;
    bytes_out += answer.body.len();
    let (n, answer) = forwarded(
        json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name":"DemoTarget___fail","arguments":{}}})
        .to_string(),
        200,
    )
    .await;
    assert_eq!(message(&answer)["result"]["isError"], true);
    bytes_in += n;
    bytes_out += answer.body.len();

    // Refused by the proxy itself: a denied tool, a body over the limit. Every request
    // counts in the byte counters and request_seconds, whatever its outcome: what was read
    // from the agent (nothing of a body refused while being read) and what it was sent.
    let denied_body = json!({"jsonrpc":"2.0","id":4,"method":"tools/call","params":{
        "name":"DemoTarget___echo","arguments":{"text":"x"}}})
    .to_string();
    let denied = send("POST", &ok, &headers, denied_body.clone()).await;
    bytes_in += denied_body.len();
    bytes_out += denied.body.len();
    assert_eq!(message(&denied)["error"]["data"]["reason"], "tool_refused");
    // A refused tool is a JSON-RPC error in an HTTP 200 answer, like the gateway's own.
    assert_eq!(denied.status, 200);
    let too_big = send("POST", &ok, &headers, "x".repeat(5000)).await;
    assert_eq!(too_big.status, 413);
    bytes_out += too_big.body.len();

    // A route whose gateway does not listen: twice.
    let (mut down_in, mut down_out) = (0, 0);
    for _ in 0..2 {
        let ping = r#"{"jsonrpc":"2.0","id":5,"method":"ping"}"#;
        let answer = send("POST", &down, &base, ping).await;
        assert_eq!(answer.status, 502, "{}", answer.body);
        down_in += ping.len();
        down_out += answer.body.len();
    }
    assert_eq!(upstream.connections(), 1);

    let scraped = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    assert_eq!(scraped.status, 200);
    let all = scrape(
        &scraped.body,
        &[
            "route=\"metrics-ok\"",
            "route=\"metrics-down\"",
            ENDPOINT_HOST,
            DOWN_ENDPOINT,
        ],
    );

    let requests = |rpc: &str, status: u16, route: &str| {
        format!("route=\"{route}\",method=\"POST\",rpc_method=\"{rpc}\",status=\"{status}\"")
    };
    let mut expected_requests = vec![
        series(
            "requests_total",
            &requests("initialize", 200, "metrics-ok"),
            1.0,
        ),
        series(
            "requests_total",
            &requests("notifications/initialized", 202, "metrics-ok"),
            1.0,
        ),
        series(
            "requests_total",
            &requests("tools/call", 200, "metrics-ok"),
            3.0,
        ),
        series("requests_total", &requests("-", 413, "metrics-ok"), 1.0),
        series(
            "requests_total",
            &requests("ping", 502, "metrics-down"),
            2.0,
        ),
    ];
    expected_requests.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        family(&all, "mcp_vpce_proxy_requests_total"),
        expected_requests
    );

    let mut expected_refused = vec![
        series(
            "refused_total",
            "route=\"metrics-ok\",reason=\"tool_refused\"",
            1.0,
        ),
        series(
            "refused_total",
            "route=\"metrics-ok\",reason=\"body_too_large\"",
            1.0,
        ),
        series(
            "refused_total",
            "route=\"metrics-down\",reason=\"unreachable\"",
            2.0,
        ),
    ];
    expected_refused.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        family(&all, "mcp_vpce_proxy_refused_total"),
        expected_refused
    );

    let tool = |name: &str, outcome: &str| {
        format!("route=\"metrics-ok\",tool=\"DemoTarget___{name}\",outcome=\"{outcome}\"")
    };
    let mut expected_tools = vec![
        series("tool_calls_total", &tool("get_weather", "ok"), 1.0),
        series("tool_calls_total", &tool("fail", "tool_error"), 1.0),
        // Refused before the gateway ever listed or ran it on this route: a name the agent
        // merely sent labels no series of its own.
        series(
            "tool_calls_total",
            "route=\"metrics-ok\",tool=\"other\",outcome=\"refused\"",
            1.0,
        ),
    ];
    expected_tools.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        family(&all, "mcp_vpce_proxy_tool_calls_total"),
        expected_tools
    );

    let value = |name: &str, labels: &str| {
        let key = format!("mcp_vpce_proxy_{name}{{{labels}}}");
        *all.get(&key)
            .unwrap_or_else(|| panic!("no {key} in\n{}", scraped.body))
    };
    let ok_route = "route=\"metrics-ok\"";
    let down_route = "route=\"metrics-down\"";
    // Four forwarded requests on one h2 connection: one opened, then reused three times.
    assert_eq!(value("upstream_connections_opened_total", ok_route), 1.0);
    assert_eq!(value("upstream_connections_reused_total", ok_route), 3.0);
    assert_eq!(value("upstream_connections_open", ok_route), 1.0);
    assert_eq!(value("upstream_connections_opened_total", down_route), 0.0);
    assert_eq!(value("tls_handshake_failures_total", ok_route), 0.0);
    assert_eq!(value("active_streams", ok_route), 0.0);
    assert_eq!(value("bytes_in_total", ok_route), bytes_in as f64);
    assert_eq!(value("bytes_out_total", ok_route), bytes_out as f64);
    assert_eq!(value("bytes_in_total", down_route), down_in as f64);
    assert_eq!(value("bytes_out_total", down_route), down_out as f64);
    // Four forwarded, two refused on the first route; two failed on the other.
    assert_eq!(value("request_seconds_count", ok_route), 6.0);
    assert_eq!(value("upstream_seconds_count", ok_route), 4.0);
    assert_eq!(value("request_seconds_count", down_route), 2.0);
    // One resolution per new connection: one for the working route, one per attempt on
    // the other, where each ping (a read) refused while connecting was sent once more.
    assert_eq!(value("upstream_retries_total", down_route), 2.0);
    assert_eq!(value("upstream_retries_total", ok_route), 0.0);
    assert_eq!(
        value(
            "dns_resolutions_total",
            &format!("name=\"{ENDPOINT_HOST}\",result=\"in_vpc\"")
        ),
        1.0
    );
    assert_eq!(
        value(
            "dns_resolutions_total",
            &format!("name=\"{DOWN_ENDPOINT}\",result=\"in_vpc\"")
        ),
        4.0
    );
    assert!(
        value(
            "dns_answer_age_seconds",
            &format!("name=\"{ENDPOINT_HOST}\"")
        ) >= 0.0
    );
    // Nothing was reloaded in the proxy's process.
    assert!(!scraped
        .body
        .contains("mcp_vpce_proxy_config_reloads_total{"));
}
