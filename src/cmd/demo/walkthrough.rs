//! The connectivity walkthrough, as an agent would do it: initialize, tools/list,
//! tools/call, over plain HTTP to the proxy. Prints what each step returned.

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};

use super::gateway::{DemoGateway, TOOL_NAME};

struct Session {
    client: Client<HttpConnector, Full<Bytes>>,
    url: String,
    session_id: Option<String>,
}

impl Session {
    async fn post(&mut self, message: Value) -> Result<(StatusCode, Value), String> {
        let mut request = Request::post(&self.url)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream")
            .header("mcp-protocol-version", "2025-06-18");
        if let Some(id) = &self.session_id {
            request = request.header("mcp-session-id", id);
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
    Ok(())
}
