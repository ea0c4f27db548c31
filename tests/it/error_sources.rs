//! An agent (or its retry policy) can tell the sidecar's failures from the gateway's.
//! Errors the proxy makes itself use its own `-310NN` codes, outside JSON-RPC's reserved
//! range where the gateway's codes live (`-32003` is AgentCore's "Rate limit exceeded"),
//! and say `"source": "proxy"` in their `data`; an error the gateway sends reaches the
//! agent exactly as sent. (The code table: docs/forwarding.md.)

use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, Answer};
use crate::common::proxy::{head, Mode, Proxy, Setup};
use crate::common::scripted_upstream::{Scripted, ScriptedUpstream};
use crate::common::upstream::{UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::{json, Value};

/// AgentCore Gateway's throttle code.
const GATEWAY_RATE_LIMITED: i64 = -32003;

const CALL: &str = r#"{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"search","arguments":{}}}"#;

/// The error object of a proxy-made answer, after checking what every one of them shares.
fn proxy_error(answer: &Answer, status: u16, code: i64, reason: &str) -> Value {
    assert_eq!(answer.status.as_u16(), status, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["id"], "call-1", "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert_ne!(v["error"]["code"], GATEWAY_RATE_LIMITED, "{v}");
    assert_eq!(
        v["error"]["data"],
        json!({"source": "proxy", "reason": reason, "route": "mcp"}),
        "{v}"
    );
    v
}

#[tokio::test]
async fn a_name_that_does_not_resolve_is_the_proxys_dns_error_not_a_throttle() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    s.dns.remove(ENDPOINT_HOST);
    let answer = post_rpc(&s.proxy.url(), CALL).await;
    let v = proxy_error(&answer, 503, -31003, "dns");
    assert_eq!(
        v["error"]["message"],
        format!(
            "mcp-vpce-proxy: route mcp: DNS name {ENDPOINT_HOST} has no addresses (NXDOMAIN or no A/AAAA records)"
        )
    );
    assert_eq!(s.upstream.connections(), 0);
}

#[tokio::test]
async fn a_failed_tls_handshake_is_the_proxys_tls_error() {
    let options = UpstreamOptions {
        cert_names: vec!["not-the-gateway.example.com".to_string()],
        ..UpstreamOptions::default()
    };
    let s = Setup::start_with(Mode::PrivateDnsOff, options, "").await;
    let answer = post_rpc(&s.proxy.url(), CALL).await;
    let v = proxy_error(&answer, 502, -31004, "tls");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "mcp-vpce-proxy: route mcp: TLS handshake with {ENDPOINT_HOST} (127.0.0.1:{}) failed for server name {GATEWAY_HOST}: ",
            s.upstream.port()
        )),
        "{message}"
    );
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn a_credential_that_cannot_be_had_is_the_proxys_credential_error() {
    let upstream = ScriptedUpstream::start(|_| Scripted::json("{}")).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = Proxy::start(&format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {{ type = "command", command = ["/bin/sh", "-c", "exit 3"] }}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    ))
    .await;
    let answer = post_rpc(&proxy.url(), CALL).await;
    let v = proxy_error(&answer, 503, -31005, "credential");
    assert_eq!(
        v["error"]["message"],
        "mcp-vpce-proxy: route mcp: no gateway credential: token command /bin/sh failed \
         (exit status: 3); its output is in the proxy log"
    );
    assert!(upstream.seen().is_empty());
}

/// The other side of the line: the gateway's own throttle reaches the agent untouched, with
/// its code and its `data`, and no `source` the proxy would have added.
#[tokio::test]
async fn the_gateways_throttle_reaches_the_agent_as_the_gateway_sent_it() {
    let throttled = json!({
        "jsonrpc": "2.0", "id": "call-1",
        "error": {
            "code": GATEWAY_RATE_LIMITED,
            "message": "Rate limit exceeded",
            "data": {"retryAfter": 2, "limitKey": "toolName=search"}
        }
    });
    let sent = throttled.to_string();
    let upstream = ScriptedUpstream::start(move |_| Scripted::json(sent.clone())).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "gateway-token").unwrap();
    let proxy = Proxy::start(&format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {{ type = "file", path = "{token}" }}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        token = token.display(),
    ))
    .await;
    let answer = post_rpc(&proxy.url(), CALL).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json(), throttled);
    assert_eq!(upstream.seen().len(), 1);
}
