//! The rmcp client side, as a local agent would use it: plain HTTP to the
//! proxy (`http://127.0.0.1:<port>/mcp`) with rmcp's reqwest transport.
//!
//! What the rmcp client does on the wire (rmcp 3.11, legacy `initialize`
//! lifecycle, which `ServiceExt::serve` uses):
//! - `initialize` POST (answered as SSE, carrying `Mcp-Session-Id`), then the
//!   `notifications/initialized` POST (202);
//! - right after, a standalone `GET` event stream for the session;
//! - each request is a POST answered as an SSE stream; every request carries
//!   a progress token in `_meta` (rmcp adds one automatically);
//! - `client.cancel().await` (or `close().await`) sends `DELETE` for the
//!   session before returning. Dropping the client cancels it too, but
//!   without waiting for the DELETE.

use std::collections::HashMap;
use std::sync::Mutex;

use http::{HeaderName, HeaderValue};
use rmcp::model::{
    CallToolRequestParams, CallToolResult, ClientRequest, ProgressNotificationParam, ProgressToken,
    Request, ServerResult,
};
use rmcp::service::{NotificationContext, PeerRequestOptions, RequestHandle, RunningService};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::{ClientHandler, RoleClient, ServiceError, ServiceExt};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};

pub type Client = RunningService<RoleClient, ProgressRecorder>;

/// A client handler that forwards every progress notification it receives
/// to a channel the test can take with [`ProgressRecorder::take_progress`].
pub struct ProgressRecorder {
    tx: UnboundedSender<ProgressNotificationParam>,
    rx: Mutex<Option<UnboundedReceiver<ProgressNotificationParam>>>,
}

impl Default for ProgressRecorder {
    fn default() -> Self {
        let (tx, rx) = unbounded_channel();
        Self {
            tx,
            rx: Mutex::new(Some(rx)),
        }
    }
}

impl ProgressRecorder {
    /// The receiving end of the progress channel. Panics if taken twice.
    pub fn take_progress(&self) -> UnboundedReceiver<ProgressNotificationParam> {
        self.rx
            .lock()
            .unwrap()
            .take()
            .expect("the progress channel was already taken")
    }
}

impl ClientHandler for ProgressRecorder {
    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        // The receiver may have been dropped by a test not interested in it.
        let _ = self.tx.send(params);
    }
}

/// Connects to an MCP endpoint and runs the `initialize` handshake.
pub async fn connect(url: &str) -> Client {
    connect_with(StreamableHttpClientTransportConfig::with_uri(url)).await
}

/// Like [`connect`], with extra headers on every request. An `authorization`
/// entry here is sent verbatim; rmcp's own `auth_header` option is exposed by
/// [`connect_with_bearer`].
pub async fn connect_with_headers(url: &str, headers: &[(&str, &str)]) -> Client {
    let headers: HashMap<HeaderName, HeaderValue> = headers
        .iter()
        .map(|(name, value)| {
            (
                HeaderName::from_bytes(name.as_bytes()).expect("header name"),
                HeaderValue::from_str(value).expect("header value"),
            )
        })
        .collect();
    connect_with(StreamableHttpClientTransportConfig::with_uri(url).custom_headers(headers)).await
}

/// Like [`connect`], sending `Authorization: Bearer <token>` on every
/// request (rmcp's `auth_header` option; it adds the `Bearer ` prefix).
pub async fn connect_with_bearer(url: &str, token: &str) -> Client {
    connect_with(StreamableHttpClientTransportConfig::with_uri(url).auth_header(token)).await
}

/// Connects with a fully specified transport configuration.
pub async fn connect_with(config: StreamableHttpClientTransportConfig) -> Client {
    try_connect_with(config)
        .await
        .unwrap_or_else(|error| panic!("MCP client failed to initialize: {error}"))
}

/// Like [`connect_with`], returning the handshake error instead of panicking.
pub async fn try_connect_with(
    config: StreamableHttpClientTransportConfig,
) -> Result<Client, rmcp::service::ClientInitializeError> {
    let transport = StreamableHttpClientTransport::from_config(config);
    ProgressRecorder::default().serve(transport).await
}

fn params(name: &str, args: serde_json::Value) -> CallToolRequestParams {
    let arguments = match args {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        other => panic!("tool arguments must be a JSON object, got {other}"),
    };
    CallToolRequestParams::new(name.to_owned()).with_arguments(arguments)
}

/// Calls a tool and returns its result; panics on a protocol error.
pub async fn call_tool(client: &Client, name: &str, args: serde_json::Value) -> CallToolResult {
    try_call_tool(client, name, args)
        .await
        .unwrap_or_else(|error| panic!("tools/call {name} failed: {error}"))
}

/// Calls a tool, returning protocol/transport errors to the caller.
pub async fn try_call_tool(
    client: &Client,
    name: &str,
    args: serde_json::Value,
) -> Result<CallToolResult, ServiceError> {
    client.call_tool(params(name, args)).await
}

/// A tool call that has been sent but not yet answered.
pub struct PendingCall {
    /// The progress token rmcp put in the request's `_meta`; progress
    /// notifications for this call carry it.
    pub progress_token: ProgressToken,
    handle: RequestHandle<RoleClient>,
}

impl PendingCall {
    /// Waits for the tool's result.
    pub async fn result(self) -> Result<CallToolResult, ServiceError> {
        match self.handle.await_response().await? {
            ServerResult::CallToolResult(result) => Ok(result),
            _ => Err(ServiceError::UnexpectedResponse),
        }
    }
}

/// Sends a tool call with a progress token and returns without waiting for
/// the result, so the test can watch progress arrive first:
///
/// ```ignore
/// let client = connect(&url).await;
/// let mut progress = client.service().take_progress();
/// let call = start_tool_call(&client, "DemoTarget___slow_progress", json!({})).await;
/// let first = progress.recv().await.unwrap();      // progress 1 of 2
/// assert_eq!(first.progress_token, call.progress_token);
/// upstream.release_progress();
/// let result = call.result().await.unwrap();       // "done"
/// ```
pub async fn start_tool_call(client: &Client, name: &str, args: serde_json::Value) -> PendingCall {
    let request = ClientRequest::CallToolRequest(Request::new(params(name, args)));
    // rmcp always sets a fresh progress token in `_meta` (overwriting any
    // given in the options), so no explicit token is needed.
    let handle = client
        .send_request_with_option(request, PeerRequestOptions::no_options())
        .await
        .unwrap_or_else(|error| panic!("sending tools/call {name} failed: {error}"));
    PendingCall {
        progress_token: handle.progress_token.clone(),
        handle,
    }
}

/// The text of the first text content block of a tool result.
pub fn first_text(result: &CallToolResult) -> Option<&str> {
    result
        .content
        .iter()
        .find_map(|block| block.as_text())
        .map(|text| text.text.as_str())
}
