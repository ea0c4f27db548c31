//! Step 5: an MCP session through the route's own client (its pool, connector, TLS and
//! credential), each request sent as the proxy sends it (`proxy::send`): `initialize` (or `server/discover` for servers that only speak the
//! stateless protocol), `notifications/initialized`, `tools/list` with every page, and a
//! DELETE of the session. The gateway's answers are read as JSON or as an SSE stream.

use std::time::Duration;

use crate::upstream::gateway_conns::UpstreamBody;
use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use serde_json::{json, Value};

use super::report::{Check, Step};
use crate::exchange::error::ProxyError;
use crate::mcp::sse::{Collect, Scanner};
use crate::proxy::route::Route;
use crate::proxy::send::send;

/// The newest version that still has the `initialize` handshake.
const HANDSHAKE_VERSION: &str = "2025-11-25";
/// The first version without it (`server/discover` and per-request `_meta`).
const STATELESS_VERSION: &str = "2026-07-28";
/// One answer may take this long (the route's response timeout if shorter).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(30);
/// The largest answer read; a tools/list of thousands of tools stays well below.
const MAX_ANSWER_BYTES: usize = 32 * 1024 * 1024;
/// tools/list pages followed at most.
const MAX_PAGES: usize = 100;
const METHOD_NOT_FOUND: i64 = -32601;

struct Failure {
    summary: String,
    cause: String,
    fix: String,
    /// The answer is what a correctly working route gives (401 on passthrough routes).
    expected: bool,
}

impl Failure {
    fn into_check(self, what: &str) -> Check {
        let summary = format!("{what}: {}", self.summary);
        if self.expected {
            Check::info(Step::Mcp, format!("{summary}; {}", self.cause))
        } else {
            Check::fail(Step::Mcp, summary, self.cause, self.fix)
        }
    }
}

struct Session<'a> {
    route: &'a Route,
    session_id: Option<String>,
    /// The negotiated version, sent as MCP-Protocol-Version after the handshake.
    protocol: Option<String>,
    /// Stateless protocol: every request carries the client context in `_meta`.
    stateless: bool,
    next_id: u64,
}

pub async fn check(route: &Route) -> Vec<Check> {
    let mut session = Session {
        route,
        session_id: None,
        protocol: None,
        stateless: false,
        next_id: 1,
    };
    let mut checks = Vec::new();
    match session.handshake().await {
        Ok(check) => checks.push(check),
        Err((what, failure)) => {
            checks.push(failure.into_check(what));
            return checks;
        }
    }
    checks.push(match session.list_tools().await {
        Ok(check) => check,
        Err(failure) => failure.into_check("tools/list"),
    });
    session.close().await;
    checks
}

impl Session<'_> {
    async fn handshake(&mut self) -> Result<Check, (&'static str, Failure)> {
        let params = json!({
            "protocolVersion": HANDSHAKE_VERSION,
            "capabilities": {},
            "clientInfo": client_info(),
        });
        let answer = self
            .request("initialize", params)
            .await
            .map_err(|f| ("initialize", f))?;
        if rpc_error_code(&answer) == Some(METHOD_NOT_FOUND) {
            return self.discover().await.map_err(|f| ("server/discover", f));
        }
        let result = result_of(&answer).map_err(|f| ("initialize", f))?;
        let version = result["protocolVersion"]
            .as_str()
            .unwrap_or("?")
            .to_string();
        self.protocol = Some(version.clone());
        let server = server_name(&result["serverInfo"]);
        let session = if self.session_id.is_some() {
            "session id present"
        } else {
            "no session id (stateless server)"
        };
        self.notify("notifications/initialized")
            .await
            .map_err(|f| ("notifications/initialized", f))?;
        Ok(Check::pass(
            Step::Mcp,
            format!("initialize: protocol {version}, server {server}, {session}"),
        )
        .with_details(json!({
            "protocol_version": version,
            "server": result["serverInfo"],
            "session_id": self.session_id.is_some(),
        })))
    }

    /// Servers that only speak the stateless protocol answer `initialize` with "method
    /// not found"; they describe themselves through `server/discover` instead.
    async fn discover(&mut self) -> Result<Check, Failure> {
        self.stateless = true;
        self.protocol = Some(STATELESS_VERSION.to_string());
        let answer = self.request("server/discover", json!({})).await?;
        let result = result_of(&answer)?;
        let versions: Vec<&str> = result["supportedVersions"]
            .as_array()
            .map(|v| v.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let chosen = if versions.contains(&STATELESS_VERSION) {
            STATELESS_VERSION
        } else {
            versions.last().copied().unwrap_or(STATELESS_VERSION)
        };
        self.protocol = Some(chosen.to_string());
        Ok(Check::pass(
            Step::Mcp,
            format!(
                "server/discover (stateless protocol): versions {}, using {chosen}, no session id",
                versions.join(", ")
            ),
        )
        .with_details(json!({
            "protocol_version": chosen,
            "supported_versions": versions,
            "session_id": false,
        })))
    }

    async fn list_tools(&mut self) -> Result<Check, Failure> {
        let mut names: Vec<String> = Vec::new();
        let mut cursor: Option<String> = None;
        for page in 0..MAX_PAGES {
            let params = match &cursor {
                Some(c) => json!({ "cursor": c }),
                None => json!({}),
            };
            let answer = self.request("tools/list", params).await?;
            let result = result_of(&answer)?;
            let tools = result["tools"].as_array().ok_or_else(|| Failure {
                summary: format!("page {} has no `tools` array", page + 1),
                cause: "the gateway's answer is not an MCP tools/list result".into(),
                fix: "check that the gateway URL is the gateway's MCP endpoint".into(),
                expected: false,
            })?;
            names.extend(
                tools
                    .iter()
                    .filter_map(|t| t["name"].as_str().map(str::to_string)),
            );
            cursor = result["nextCursor"].as_str().map(str::to_string);
            if cursor.is_none() {
                break;
            }
        }
        let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
        let more = if names.len() > shown.len() {
            ", …"
        } else {
            ""
        };
        Ok(Check::pass(
            Step::Mcp,
            format!(
                "tools/list: {} tool{}{}",
                names.len(),
                if names.len() == 1 { "" } else { "s" },
                if shown.is_empty() {
                    String::new()
                } else {
                    format!(" ({}{more})", shown.join(", "))
                }
            ),
        )
        .with_details(json!({ "tool_count": names.len(), "tools": names })))
    }

    /// Ends the session on the gateway (best effort: a diagnosis should leave nothing).
    async fn close(&mut self) {
        if self.session_id.is_none() {
            return;
        }
        let _ = self.send(Method::DELETE, None, Bytes::new()).await;
    }

    /// A JSON-RPC request; the response message with its id.
    async fn request(&mut self, method: &str, mut params: Value) -> Result<Value, Failure> {
        let id = self.next_id;
        self.next_id += 1;
        if self.stateless {
            params["_meta"] = json!({
                "io.modelcontextprotocol/protocolVersion": self.protocol,
                "io.modelcontextprotocol/clientInfo": client_info(),
                "io.modelcontextprotocol/clientCapabilities": {},
            });
        }
        let message = json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let response = self
            .send(Method::POST, Some(method), message.to_string().into())
            .await?;
        let read = read_answer(response, id);
        match tokio::time::timeout(self.timeout(), read).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => Err(Failure {
                summary: e,
                cause: "the gateway's answer could not be read as an MCP response".into(),
                fix: "check that the gateway URL is the gateway's MCP endpoint".into(),
                expected: false,
            }),
            Err(_) => Err(failure(ProxyError::ResponseTimeout {
                after: self.timeout(),
            })),
        }
    }

    async fn notify(&mut self, method: &str) -> Result<(), Failure> {
        let message = json!({"jsonrpc": "2.0", "method": method});
        self.send(Method::POST, Some(method), message.to_string().into())
            .await
            .map(drop)
    }

    fn timeout(&self) -> Duration {
        ANSWER_TIMEOUT.min(self.route.response_timeout)
    }

    /// Sends through the route's client with its credential; a 2xx response or why not.
    async fn send(
        &mut self,
        method: Method,
        rpc_method: Option<&str>,
        payload: Bytes,
    ) -> Result<Response<UpstreamBody>, Failure> {
        let mut builder = Request::builder()
            .method(method)
            .uri(self.route.upstream_uri(None))
            .header(ACCEPT, "application/json, text/event-stream");
        if !payload.is_empty() {
            builder = builder.header(CONTENT_TYPE, "application/json");
        }
        if let Some(id) = &self.session_id {
            builder = builder.header("mcp-session-id", id);
        }
        if let Some(version) = &self.protocol {
            builder = builder.header("mcp-protocol-version", version);
        }
        if let (true, Some(m)) = (self.stateless, rpc_method) {
            builder = builder.header("mcp-method", m);
        }
        let (parts, ()) = builder
            .body(())
            .map_err(|e| internal(e.to_string()))?
            .into_parts();
        let mut timings = crate::exchange::context::Timings::default();
        let response = send(self.route, parts, &payload, self.timeout(), &mut timings)
            .await
            .map_err(failure)?;
        if let Some(id) = response
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
        {
            self.session_id = Some(id.to_string());
        }
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let snippet = snippet(response).await;
        Err(self.refused(status, snippet))
    }

    fn refused(&self, status: StatusCode, snippet: String) -> Failure {
        let path = &self.route.gateway.path;
        let passthrough = self.route.credential.forwards_caller_authorization();
        let summary = format!("HTTP {}{snippet}", status.as_u16());
        let (cause, fix, expected) = match status.as_u16() {
            401 if passthrough => (
                "expected on a passthrough route: the agent brings its own token".to_string(),
                String::new(),
                true,
            ),
            401 => (
                "the gateway refused the credential: it is missing, expired, or not accepted by \
                 the gateway's inbound authorizer (issuer/discovery URL, allowed audiences or \
                 clients)"
                    .to_string(),
                "compare the credential with the gateway's authorizer configuration \
                 (aws bedrock-agentcore-control get-gateway --gateway-identifier …)"
                    .to_string(),
                false,
            ),
            403 => (
                "forbidden: the VPC endpoint policy does not allow this request (OAuth requests \
                 through an AgentCore endpoint need Principal \"*\" in the endpoint policy), or \
                 the authorizer does not allow this client or scope"
                    .to_string(),
                "allow the request in the VPC endpoint's policy; check the allowed clients and \
                 scopes of the gateway's authorizer"
                    .to_string(),
                false,
            ),
            404 => (
                format!("the gateway has no MCP endpoint at {path}"),
                "use the gateway URL exactly as AgentCore shows it (it ends in /mcp)".to_string(),
                false,
            ),
            code => (
                format!("the gateway answered HTTP {code}"),
                "retry; if it persists, check the gateway's status and its targets".to_string(),
                false,
            ),
        };
        Failure {
            summary,
            cause,
            fix,
            expected,
        }
    }
}

fn client_info() -> Value {
    json!({"name": "mcp-vpce-proxy-doctor", "version": env!("CARGO_PKG_VERSION")})
}

fn server_name(info: &Value) -> String {
    match (info["name"].as_str(), info["version"].as_str()) {
        (Some(name), Some(version)) => format!("{name} {version}"),
        (Some(name), None) => name.to_string(),
        _ => "(unnamed)".to_string(),
    }
}

fn rpc_error_code(answer: &Value) -> Option<i64> {
    answer.get("error").and_then(|e| e["code"].as_i64())
}

/// The `result` of a response, or its JSON-RPC error as a failure.
fn result_of(answer: &Value) -> Result<Value, Failure> {
    if let Some(error) = answer.get("error") {
        return Err(Failure {
            summary: format!(
                "JSON-RPC error {}: {}",
                error["code"],
                error["message"].as_str().unwrap_or("")
            ),
            cause: "the gateway refused the MCP request".into(),
            fix: "check the gateway's MCP settings and supported protocol versions".into(),
            expected: false,
        });
    }
    answer.get("result").cloned().ok_or_else(|| Failure {
        summary: format!("answer without result: {answer}"),
        cause: "the gateway's answer is not a JSON-RPC response".into(),
        fix: "check that the gateway URL is the gateway's MCP endpoint".into(),
        expected: false,
    })
}

/// Reads the JSON-RPC response with `id` from a JSON body or an SSE stream.
async fn read_answer(response: Response<UpstreamBody>, id: u64) -> Result<Value, String> {
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    let mut body = response.into_body();
    if content_type.starts_with("text/event-stream") {
        let mut scanner = Scanner::default();
        let mut event = Collect::default();
        let mut total = 0usize;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| format!("the event stream broke: {e}"))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            total += data.len();
            if total > MAX_ANSWER_BYTES {
                return Err(format!("the answer exceeds {MAX_ANSWER_BYTES} bytes"));
            }
            let mut rest: &[u8] = &data;
            while let Some(used) = scanner.feed(rest, &mut event) {
                rest = &rest[used..];
                let done = std::mem::take(&mut event);
                if let Some(answer) = serde_json::from_slice::<Value>(&done.data)
                    .ok()
                    .and_then(|v| response_with_id(v, id))
                {
                    return Ok(answer);
                }
            }
        }
        return Err("the event stream ended without the response".into());
    }
    let bytes = http_body_util::Limited::new(body, MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("the answer could not be read: {e}"))?
        .to_bytes();
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        format!(
            "not JSON ({content_type}): {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(200)])
        )
    })?;
    response_with_id(value, id).ok_or_else(|| "no response with the request's id".to_string())
}

/// The response to `id` in a message or a batch.
fn response_with_id(value: Value, id: u64) -> Option<Value> {
    let is_it = |m: &Value| {
        m["id"].as_u64() == Some(id) && (m.get("result").is_some() || m.get("error").is_some())
    };
    match value {
        Value::Array(items) => items.into_iter().find(is_it),
        single if is_it(&single) => Some(single),
        _ => None,
    }
}

/// The first 200 characters of a refusal body, on one line.
async fn snippet(response: Response<UpstreamBody>) -> String {
    let read = http_body_util::Limited::new(response.into_body(), 4096).collect();
    let Ok(Ok(collected)) = tokio::time::timeout(Duration::from_secs(5), read).await else {
        return String::new();
    };
    let text = String::from_utf8_lossy(&collected.to_bytes()).into_owned();
    let line: String = text
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
        .chars()
        .take(200)
        .collect();
    if line.is_empty() {
        String::new()
    } else {
        format!(": {line}")
    }
}

/// What the operator reads when the proxy's own attempt (`proxy::send`) failed.
fn failure(err: ProxyError) -> Failure {
    let (summary, cause, fix) = match err {
        ProxyError::Credential(e) => (
            format!("no credential: {e}"),
            "the route's credential could not be obtained (see the credential line)",
            "fix the credential first",
        ),
        ProxyError::ResponseTimeout { after } => (
            format!("no answer within {}", humantime::format_duration(after)),
            "the gateway accepted the connection but did not answer",
            "retry; check the gateway's targets if tools/list is slow",
        ),
        ProxyError::Connect(connect) => (
            connect.to_string(),
            "the route's client could not connect (see the dns, tcp and tls lines)",
            "fix the failures above",
        ),
        ProxyError::Upstream(causes) => (
            format!("the connection failed: {causes}"),
            "the gateway closed the connection or spoke something other than HTTP",
            "check that the gateway URL's host and port are the gateway's",
        ),
        other => (
            other.to_string(),
            "the request could not be sent",
            "report this as a bug",
        ),
    };
    Failure {
        summary,
        cause: cause.into(),
        fix: fix.into(),
        expected: false,
    }
}

fn internal(e: String) -> Failure {
    Failure {
        summary: e,
        cause: "the request could not be built".into(),
        fix: "report this as a bug".into(),
        expected: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_response_is_found_by_id_in_a_batch_or_alone() {
        let batch = json!([{"jsonrpc":"2.0","method":"notifications/progress"},
                           {"jsonrpc":"2.0","id":7,"result":{"tools":[]}}]);
        assert_eq!(
            response_with_id(batch, 7).unwrap()["result"],
            json!({"tools": []})
        );
        assert!(response_with_id(json!({"jsonrpc":"2.0","id":8,"result":{}}), 7).is_none());
        assert!(response_with_id(json!({"jsonrpc":"2.0","id":7,"method":"x"}), 7).is_none());
        let error = json!({"jsonrpc":"2.0","id":7,"error":{"code":-32601,"message":"nope"}});
        assert_eq!(
            rpc_error_code(&response_with_id(error, 7).unwrap()),
            Some(METHOD_NOT_FOUND)
        );
    }
}
