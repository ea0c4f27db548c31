//! The `demo` command's gateway, through the proxy, speaks MCP 2026-07-28 beside the
//! session-based versions: stateless requests with the version in `_meta` and mirrored in
//! `MCP-Protocol-Version`/`Mcp-Method`/`Mcp-Name`, `server/discover`, `resultType` and
//! `ttlMs`/`cacheScope` on the answers; headers that disagree with the body are its 400
//! HeaderMismatch (or, under a tool policy, the proxy's own); `initialize` still opens a
//! session. (The TypeScript SDK v2 client against `demo`: tests/e2e/node/.)

use crate::common::dns::DnsServer;
use crate::common::http::{send, Answer};
use crate::common::proxy::{head, Proxy};
use mcp_vpce_proxy::cmd::demo::{DemoGateway, GATEWAY_HOST, MODERN_VERSION, TOOL_NAME};
use serde_json::{json, Value};

const TOKEN: &str = "demo-gateway-test-token";

struct Rig {
    proxy: Proxy,
    _gateway: DemoGateway,
    _dns: DnsServer,
    _dir: tempfile::TempDir,
}

async fn rig(route_extra: &str) -> Rig {
    let gateway = DemoGateway::start(TOKEN).await.unwrap();
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("demo-ca.pem");
    std::fs::write(&ca, &gateway.ca_pem).unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, TOKEN).unwrap();
    let proxy = Proxy::start(&format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {{ type = "file", path = "{token}" }}
{route_extra}
"#,
        head = head(&dns),
        port = gateway.addr.port(),
        ca = ca.display(),
        token = token.display(),
    ))
    .await;
    Rig {
        proxy,
        _gateway: gateway,
        _dns: dns,
        _dir: dir,
    }
}

/// A stateless request: `params` plus the per-request `_meta` of `version`.
fn modern(id: u64, method: &str, mut params: Value, version: &str) -> String {
    params["_meta"] = json!({
        "io.modelcontextprotocol/protocolVersion": version,
        "io.modelcontextprotocol/clientInfo": {"name": "it", "version": "1"},
        "io.modelcontextprotocol/clientCapabilities": {},
    });
    json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
}

async fn post(rig: &Rig, headers: &[(&str, &str)], body: String) -> Answer {
    let mut all = vec![
        ("content-type", "application/json"),
        ("accept", "application/json, text/event-stream"),
    ];
    all.extend_from_slice(headers);
    send("POST", &rig.proxy.url(), &all, body).await
}

/// The headers a 2026-07-28 client sends with `method` (and `name`).
fn mirrored<'a>(method: &'a str, name: Option<&'a str>) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("mcp-protocol-version", MODERN_VERSION),
        ("mcp-method", method),
    ];
    h.extend(name.map(|n| ("mcp-name", n)));
    h
}

#[tokio::test]
async fn server_discover_through_the_proxy_names_the_versions_capabilities_and_cache_hints() {
    let rig = rig("").await;
    let answer = post(
        &rig,
        &mirrored("server/discover", None),
        modern(1, "server/discover", json!({}), MODERN_VERSION),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(answer.headers.get("mcp-session-id").is_none());
    let v = answer.json();
    assert_eq!(v["id"], 1);
    let result = &v["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["supportedVersions"],
        json!([
            MODERN_VERSION,
            "2025-11-25",
            "2025-06-18",
            "2025-03-26",
            "2024-11-05"
        ])
    );
    assert_eq!(result["capabilities"], json!({"tools": {}}));
    assert_eq!(
        result["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
        "demo-agentcore-gateway"
    );
    assert_eq!(result["ttlMs"], 3_600_000);
    assert_eq!(result["cacheScope"], "public");
}

#[tokio::test]
async fn tools_list_and_call_are_stateless_and_carry_their_hints() {
    let rig = rig("").await;
    let list = post(
        &rig,
        &mirrored("tools/list", None),
        modern(2, "tools/list", json!({}), MODERN_VERSION),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    assert!(list.headers.get("mcp-session-id").is_none());
    let result = &list.json()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(result["tools"][0]["name"], TOOL_NAME);
    assert_eq!(result["ttlMs"], 300_000);
    assert_eq!(result["cacheScope"], "private");

    let call = post(
        &rig,
        &mirrored("tools/call", Some(TOOL_NAME)),
        modern(
            3,
            "tools/call",
            json!({"name": TOOL_NAME, "arguments": {"city": "Zürich"}}),
            MODERN_VERSION,
        ),
    )
    .await;
    assert_eq!(call.status, 200, "{}", call.body);
    let result = &call.json()["result"];
    assert_eq!(result["resultType"], "complete");
    assert_eq!(
        result["content"][0]["text"],
        "Weather in Zürich: 22°C, sunny"
    );
    // A call result is not cacheable: no hints.
    assert!(result.get("ttlMs").is_none(), "{result}");
}

#[tokio::test]
async fn headers_that_disagree_with_the_body_are_the_gateways_header_mismatch() {
    let rig = rig("").await;
    let call = |name: &str| {
        modern(
            4,
            "tools/call",
            json!({"name": name, "arguments": {}}),
            MODERN_VERSION,
        )
    };
    let cases = [
        (
            mirrored("tools/call", Some("Other___tool")),
            call(TOOL_NAME),
            "Header mismatch: Mcp-Name header value 'Other___tool' does not match body value 'DemoTarget___get_weather'",
        ),
        (
            vec![("mcp-method", "tools/call"), ("mcp-name", TOOL_NAME)],
            call(TOOL_NAME),
            "Header mismatch: the MCP-Protocol-Version header is missing",
        ),
        (
            mirrored("tools/call", Some(TOOL_NAME)),
            modern(4, "tools/call", json!({"name": TOOL_NAME}), "2025-11-25"),
            "Header mismatch: MCP-Protocol-Version header value '2026-07-28' does not match the body's io.modelcontextprotocol/protocolVersion '2025-11-25'",
        ),
    ];
    for (headers, body, message) in cases {
        let answer = post(&rig, &headers, body).await;
        assert_eq!(answer.status, 400, "{}", answer.body);
        // The gateway's own error, passed on as it came.
        assert_eq!(
            answer.json(),
            json!({"jsonrpc": "2.0", "id": 4, "error": {"code": -32020, "message": message}})
        );
    }
}

/// Under a tool policy the proxy judges the body, so it refuses a disagreeing `Mcp-Name`
/// itself (a gateway routing on the header would run another tool than the one judged):
/// the same code, and `data.source` says who answered.
#[tokio::test]
async fn under_a_policy_the_proxy_refuses_the_mismatch_before_the_gateway() {
    let rig = rig("[route.policy]\nallow_tools = [\"DemoTarget___*\"]").await;
    let answer = post(
        &rig,
        &mirrored("tools/call", Some("Other___tool")),
        modern(
            5,
            "tools/call",
            json!({"name": TOOL_NAME, "arguments": {}}),
            MODERN_VERSION,
        ),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    let v = answer.json();
    assert_eq!(v["id"], 5);
    assert_eq!(v["error"]["code"], -32020);
    assert_eq!(v["error"]["data"]["source"], "proxy");
    assert_eq!(v["error"]["data"]["reason"], "header_mismatch");
}

#[tokio::test]
async fn an_unsupported_version_is_answered_with_the_versions_the_gateway_speaks() {
    let rig = rig("").await;
    let answer = post(
        &rig,
        &[
            ("mcp-protocol-version", "2099-01-01"),
            ("mcp-method", "tools/list"),
        ],
        modern(6, "tools/list", json!({}), "2099-01-01"),
    )
    .await;
    assert_eq!(answer.status, 400, "{}", answer.body);
    assert_eq!(
        answer.json(),
        json!({"jsonrpc": "2.0", "id": 6, "error": {
            "code": -32022,
            "message": "Unsupported protocol version",
            "data": {
                "supported": [MODERN_VERSION, "2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"],
                "requested": "2099-01-01",
            },
        }})
    );
}

#[tokio::test]
async fn a_method_the_stateless_protocol_removed_is_404_method_not_found() {
    let rig = rig("").await;
    let answer = post(
        &rig,
        &mirrored("ping", None),
        modern(7, "ping", json!({}), MODERN_VERSION),
    )
    .await;
    assert_eq!(answer.status, 404, "{}", answer.body);
    assert_eq!(answer.json()["error"]["code"], -32601);
}

#[tokio::test]
async fn initialize_still_opens_a_session_of_an_earlier_version() {
    let rig = rig("").await;
    let answer = post(
        &rig,
        &[],
        json!({"jsonrpc": "2.0", "id": 8, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {},
            "clientInfo": {"name": "it", "version": "1"}}})
        .to_string(),
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(answer.json()["result"]["protocolVersion"], "2025-11-25");
    let session = answer.headers["mcp-session-id"]
        .to_str()
        .unwrap()
        .to_string();
    let list = post(
        &rig,
        &[
            ("mcp-protocol-version", "2025-11-25"),
            ("mcp-session-id", &session),
        ],
        json!({"jsonrpc": "2.0", "id": 9, "method": "tools/list"}).to_string(),
    )
    .await;
    assert_eq!(list.status, 200, "{}", list.body);
    let result = &list.json()["result"];
    assert_eq!(result["tools"][0]["name"], TOOL_NAME);
    // The 2026-07-28 fields are not part of the session-based answers.
    assert!(result.get("ttlMs").is_none() && result.get("resultType").is_none());
}
