//! The connectivity walkthrough, as an agent would do it: initialize, tools/list,
//! tools/call, over plain HTTP to the proxy; then the same gateway under MCP 2026-07-28,
//! stateless: server/discover and tools/list with the mirrored headers. Prints what each
//! step returned.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::gateway::{DemoGateway, TOOL_NAME};
use super::modern::MODERN_VERSION;

struct Session {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    session_id: Option<String>,
}

impl Session {
    async fn post(&mut self, message: Value) -> Result<(StatusCode, Value), String> {
        let mut headers = vec![("mcp-protocol-version", "2025-06-18".to_string())];
        if let Some(id) = &self.session_id {
            headers.push(("mcp-session-id", id.clone()));
        }
        self.send(message, headers).await
    }

    /// A stateless MCP 2026-07-28 request: the version in `_meta`, mirrored with the
    /// method in headers; no session.
    async fn post_modern(&mut self, id: u64, method: &str) -> Result<(StatusCode, Value), String> {
        let message = json!({"jsonrpc":"2.0","id":id,"method":method,"params":{"_meta":{
            "io.modelcontextprotocol/protocolVersion": MODERN_VERSION,
            "io.modelcontextprotocol/clientInfo": {"name":"mcp-vpce-proxy-demo","version":env!("CARGO_PKG_VERSION")},
            "io.modelcontextprotocol/clientCapabilities": {},
        }}});
        let headers = vec![
            ("mcp-protocol-version", MODERN_VERSION.to_string()),
            ("mcp-method", method.to_string()),
        ];
        self.send(message, headers).await
    }

    async fn send(
        &mut self,
        message: Value,
        headers: Vec<(&str, String)>,
    ) -> Result<(StatusCode, Value), String> {
        let mut request = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(message.to_string())))
            .map_err(|e| e.to_string())?;
        let response = self
            .client
            .request(request)
            .await
            .map_err(|e| format!("proxy not reachable: {e}"))?;
        let status = response.status();
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session_id = Some(id.to_string());
        }
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        let value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&body)
                .map_err(|_| format!("HTTP {status}: {}", String::from_utf8_lossy(&body)))?
        };
        if let Some(error) = value.get("error") {
            return Err(format!("HTTP {status}: {}", error["message"]));
        }
        Ok((status, value))
    }
}

pub async fn run(url: &str, gateway: &DemoGateway) -> Result<(), String> {
    let mut s = Session {
        client: Client::builder(TokioExecutor::new()).build_http(),
        url: url.to_string(),
        session_id: None,
    };

    let (status, init) = s
        .post(
            json!({"jsonrpc":"2.0","id":1,"method":"initialize","params":{
            "protocolVersion":"2025-06-18","capabilities":{},
            "clientInfo":{"name":"mcp-vpce-proxy-demo","version":env!("CARGO_PKG_VERSION")}}}),
        )
        .await
        .map_err(|e| format!("initialize: {e}"))?;
    println!(
        "1. initialize -> HTTP {}, protocol {}, server {}, session {}",
        status.as_u16(),
        init["result"]["protocolVersion"].as_str().unwrap_or("?"),
        init["result"]["serverInfo"]["name"].as_str().unwrap_or("?"),
        s.session_id.as_deref().unwrap_or("none")
    );
    let seen = gateway
        .last_seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    println!(
        "   the gateway saw SNI {}, Host {}, and {}",
        seen.sni.as_deref().unwrap_or("(none)"),
        seen.host.as_deref().unwrap_or("(none)"),
        if seen.authorized {
            "the proxy's bearer token"
        } else {
            "no valid token"
        }
    );
    s.post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}))
        .await
        .map_err(|e| format!("notifications/initialized: {e}"))?;

    let (_, list) = s
        .post(json!({"jsonrpc":"2.0","id":2,"method":"tools/list","params":{}}))
        .await
        .map_err(|e| format!("tools/list: {e}"))?;
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .map(|tools| tools.iter().filter_map(|t| t["name"].as_str()).collect())
        .unwrap_or_default();
    println!("2. tools/list -> {}", names.join(", "));
    if !names.contains(&TOOL_NAME) {
        return Err(format!("tools/list: {TOOL_NAME} missing"));
    }

    let (_, call) = s
        .post(
            json!({"jsonrpc":"2.0","id":3,"method":"tools/call","params":{
            "name": TOOL_NAME, "arguments": {"city": "Seattle"}}}),
        )
        .await
        .map_err(|e| format!("tools/call: {e}"))?;
    let text = call["result"]["content"][0]["text"].as_str().unwrap_or("?");
    println!("3. tools/call {TOOL_NAME} {{\"city\":\"Seattle\"}} -> {text}");

    let (_, discover) = s
        .post_modern(4, "server/discover")
        .await
        .map_err(|e| format!("server/discover: {e}"))?;
    let versions: Vec<&str> = discover["result"]["supportedVersions"]
        .as_array()
        .map(|v| v.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    println!(
        "4. server/discover (MCP {MODERN_VERSION}, no session) -> versions {}",
        versions.join(", ")
    );
    if !versions.contains(&MODERN_VERSION) {
        return Err(format!("server/discover: {MODERN_VERSION} missing"));
    }
    let (_, list) = s
        .post_modern(5, "tools/list")
        .await
        .map_err(|e| format!("tools/list ({MODERN_VERSION}): {e}"))?;
    println!(
        "5. tools/list (MCP {MODERN_VERSION}) -> {} tool(s), ttlMs {}, cacheScope {}",
        list["result"]["tools"].as_array().map_or(0, Vec::len),
        list["result"]["ttlMs"],
        list["result"]["cacheScope"]
    );
    Ok(())
}
