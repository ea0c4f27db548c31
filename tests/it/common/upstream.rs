//! A TLS MCP server that stands in for an AgentCore Gateway.
//!
//! rmcp's streamable HTTP server (stateful sessions, so GET event streams and
//! DELETE work) behind hyper-util's auto HTTP/1.1 + h2 server, over
//! tokio-rustls, on `127.0.0.1:0`. Every HTTP request is recorded together
//! with the TLS SNI of its connection, so tests can check what a proxy sent.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rmcp::handler::server::wrapper::Parameters;
use rmcp::model::{CallToolResult, ContentBlock, ProgressNotificationParam, RequestMetaObject};
use rmcp::model::{ListToolsResult, PaginatedRequestParams};
use rmcp::service::RequestContext;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};
use rmcp::{schemars, tool, tool_handler, tool_router, ErrorData, Peer, RoleServer, ServerHandler};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};

use super::certs::{self, TestPki};
use super::tls_records::RecordCounting;

/// The Gateway's public name: what the proxy must send as SNI and Host.
pub const GATEWAY_HOST: &str = "gw-test-abc123.gateway.bedrock-agentcore.us-east-1.amazonaws.com";
/// The VPC endpoint's name: what the proxy resolves and connects to.
pub const ENDPOINT_HOST: &str =
    "vpce-0a1b2c3d4e5f67890-abcd1234.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com";
/// The path the MCP endpoint is served at; anything else gets a 404.
pub const MCP_PATH: &str = "/mcp";

/// A `[[route]]` table for a test gateway listening on `port`, at `/mcp`: the gateway name
/// with this port, dialing [`ENDPOINT_HOST`] (private DNS off), trusting `ca_file`;
/// `extra` lines are added to the table.
pub fn private_dns_off_route(port: u16, ca_file: &Path, extra: &str) -> String {
    format!(
        "\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{ca}\"\n{extra}\n",
        ca = ca_file.display(),
    )
}

/// One HTTP request as the upstream saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// The SNI the client sent in its TLS ClientHello.
    pub sni: Option<String>,
    /// The `Host` header, or for h2 without one, the `:authority`.
    pub host: Option<String>,
    pub authorization: Option<String>,
    pub method: Method,
    /// Path and query, e.g. `/mcp`.
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The status of the response head the upstream returned.
    pub status: u16,
    /// The request body, when `UpstreamOptions::record_bodies` is on (for checking
    /// signatures made over it); empty otherwise.
    pub body: Bytes,
}

pub struct UpstreamOptions {
    /// DNS names in the server certificate. Default: `[GATEWAY_HOST]`.
    pub cert_names: Vec<String>,
    /// Offer `h2` in ALPN (as well as `http/1.1`). Default: true.
    pub h2: bool,
    /// Read each request body whole and record it in `SeenRequest::body`. Default: false
    /// (bodies stream straight to the MCP server).
    pub record_bodies: bool,
    /// Answer POSTs with `application/json` instead of SSE (rmcp's stateless mode, as
    /// an AgentCore Gateway answers). Default: false.
    pub json_response: bool,
    /// Serve `tools/list` in pages of this many tools, with `nextCursor`. Default: None
    /// (one page).
    pub page_size: Option<usize>,
    /// Answer JSON-RPC batches (arrays) itself, as a gateway that accepts them would
    /// (rmcp refuses them): `tools/list` with every tool, `tools/call` with
    /// "called <name>", anything else with `{}`; notifications get nothing (202 when
    /// nothing is left). Bodies are then recorded too. Default: None (no batches).
    pub batches: Option<BatchAnswers>,
    /// Accept only the requests whose `Authorization` this approves (a gateway that knows
    /// which tokens its issuer gave out); the others get 401. Default: None (any).
    pub authorize: Option<Authorize>,
}

/// Decides whether a request's `Authorization` (if any) is one the gateway accepts.
pub type Authorize = Arc<dyn Fn(Option<&str>) -> bool + Send + Sync>;

/// How the fixture answers a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchAnswers {
    /// One JSON array.
    Json,
    /// An SSE stream with one event per response.
    Sse,
}

impl Default for UpstreamOptions {
    fn default() -> Self {
        Self {
            cert_names: vec![GATEWAY_HOST.to_string()],
            h2: true,
            record_bodies: false,
            json_response: false,
            page_size: None,
            batches: None,
            authorize: None,
        }
    }
}

/// State shared between the `Upstream` handle and its server tasks.
#[derive(Default)]
struct Shared {
    connections: AtomicUsize,
    /// TLS records received from clients, over all connections (handshakes included).
    client_records: Arc<AtomicUsize>,
    requests: Mutex<Vec<SeenRequest>>,
    record_bodies: bool,
    batches: Option<BatchAnswers>,
    /// The next this-many requests are answered 401, as a gateway refusing a credential.
    refuse: AtomicUsize,
    authorize: Option<Authorize>,
}

/// A running upstream; stops when dropped.
pub struct Upstream {
    pub addr: SocketAddr,
    pub pki: TestPki,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    accept_task: JoinHandle<()>,
    /// Cancels rmcp's session workers (the token's type lives in tokio-util,
    /// which is not a dependency of this crate, hence the closure).
    cancel_sessions: Option<Box<dyn FnOnce() + Send>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        Self::start_with(UpstreamOptions::default()).await
    }

    pub async fn start_with(opts: UpstreamOptions) -> Upstream {
        let names: Vec<&str> = opts.cert_names.iter().map(String::as_str).collect();
        let pki = certs::issue(&names);
        let mut tls_config = (*pki.server_config).clone();
        if !opts.h2 {
            tls_config.alpn_protocols = vec![b"http/1.1".to_vec()];
        }
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config));

        let gate = Arc::new(Semaphore::new(0));
        // The proxy forwards the Gateway's name as Host, which rmcp's
        // DNS-rebinding guard (loopback names only by default) would refuse.
        let mut config = StreamableHttpServerConfig::default().disable_allowed_hosts();
        if opts.json_response {
            config = config
                .with_legacy_session_mode(false)
                .with_json_response(true);
        }
        let page_size = opts.page_size;
        let session_token = config.cancellation_token.clone();
        let mcp = {
            let gate = gate.clone();
            StreamableHttpService::new(
                move || Ok(DemoGateway::new(gate.clone(), page_size)),
                Arc::new(LocalSessionManager::default()),
                config,
            )
        };

        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind upstream");
        let addr = listener.local_addr().expect("upstream address");
        let shared = Arc::new(Shared {
            record_bodies: opts.record_bodies,
            batches: opts.batches,
            authorize: opts.authorize,
            ..Shared::default()
        });
        let accept_task = tokio::spawn(accept_loop(listener, acceptor, mcp, shared.clone()));

        Upstream {
            addr,
            pki,
            shared,
            gate,
            accept_task,
            cancel_sessions: Some(Box::new(move || session_token.cancel())),
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    /// TCP connections accepted so far (counted before the TLS handshake).
    pub fn connections(&self) -> usize {
        self.shared.connections.load(Ordering::SeqCst)
    }

    /// TLS records clients have sent so far, over all connections, handshakes included
    /// (compare before and after the requests of interest).
    pub fn client_records(&self) -> usize {
        self.shared.client_records.load(Ordering::SeqCst)
    }

    /// Every request recorded so far, in the order their response heads
    /// were produced.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Answers the next `n` requests with 401 and `WWW-Authenticate`, as a gateway that
    /// refuses the credential it was sent.
    pub fn refuse_next_with_401(&self, n: usize) {
        self.shared.refuse.store(n, Ordering::SeqCst);
    }

    /// Lets one `DemoTarget___slow_progress` call finish: each release is a
    /// permit, consumed by the call that is waiting or by the next one. A
    /// release made before the call starts is therefore not lost.
    pub fn release_progress(&self) {
        self.gate.add_permits(1);
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every
        // connection task (and so every open response stream).
        self.accept_task.abort();
        if let Some(cancel) = self.cancel_sessions.take() {
            cancel();
        }
    }
}

type McpService = StreamableHttpService<DemoGateway, LocalSessionManager>;
type ResponseBody = BoxBody<Bytes, std::convert::Infallible>;

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    mcp: McpService,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(_) => continue,
            },
            // Reap finished connection tasks so the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        shared.connections.fetch_add(1, Ordering::SeqCst);
        let acceptor = acceptor.clone();
        let mcp = mcp.clone();
        let shared = shared.clone();
        connections.spawn(async move {
            let tcp = RecordCounting::new(tcp, shared.client_records.clone());
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let sni = tls.get_ref().1.server_name().map(str::to_owned);
            let service = hyper::service::service_fn(move |request| {
                serve(request, mcp.clone(), shared.clone(), sni.clone())
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn serve(
    request: Request<Incoming>,
    mcp: McpService,
    shared: Arc<Shared>,
    sni: Option<String>,
) -> Result<Response<ResponseBody>, std::convert::Infallible> {
    let header = |name: http::HeaderName| {
        request
            .headers()
            .get(name)
            .map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
    };
    let host = header(http::header::HOST).or_else(|| {
        request
            .uri()
            .authority()
            .map(|authority| authority.to_string())
    });
    let mut seen = SeenRequest {
        sni,
        host,
        authorization: header(http::header::AUTHORIZATION),
        method: request.method().clone(),
        path: request
            .uri()
            .path_and_query()
            .map_or_else(|| request.uri().path().to_owned(), |pq| pq.to_string()),
        version: request.version(),
        headers: request.headers().clone(),
        status: 0,
        body: Bytes::new(),
    };

    let refused = shared
        .refuse
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .is_ok()
        || shared
            .authorize
            .as_ref()
            .is_some_and(|authorize| !authorize(seen.authorization.as_deref()));
    let response = if refused {
        Response::builder()
            .status(StatusCode::UNAUTHORIZED)
            .header("www-authenticate", "Bearer error=\"invalid_token\"")
            .body(Full::new(Bytes::from_static(b"invalid token")).boxed())
            .expect("valid response")
    } else if request.uri().path() == MCP_PATH && shared.batches.is_some() {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        seen.body = body.clone();
        match shared.batches {
            Some(how) if body.trim_ascii_start().starts_with(b"[") => answer_batch(&body, how),
            _ => {
                mcp.handle(Request::from_parts(parts, Full::new(body)))
                    .await
            }
        }
    } else if request.uri().path() == MCP_PATH && shared.record_bodies {
        let (parts, body) = request.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        seen.body = body.clone();
        mcp.handle(Request::from_parts(parts, Full::new(body)))
            .await
    } else if request.uri().path() == MCP_PATH {
        mcp.handle(request).await
    } else {
        Response::builder()
            .status(StatusCode::NOT_FOUND)
            .body(Full::new(Bytes::from_static(b"not found")).boxed())
            .expect("valid response")
    };
    seen.status = response.status().as_u16();
    shared.requests.lock().unwrap().push(seen);
    Ok(response)
}

/// The fixture's answer to a JSON-RPC batch (see `UpstreamOptions::batches`).
fn answer_batch(body: &[u8], how: BatchAnswers) -> Response<ResponseBody> {
    use serde_json::{json, Value};
    let items: Vec<Value> = serde_json::from_slice(body).expect("a JSON array");
    let tools = serde_json::to_value(DemoGateway::tool_router().list_all()).expect("tools");
    let answers: Vec<Value> = items
        .iter()
        .filter_map(|m| {
            let id = m.get("id")?.clone();
            let result = match m["method"].as_str() {
                Some("tools/list") => json!({ "tools": tools }),
                Some("tools/call") => json!({
                    "content": [{"type": "text", "text": format!("called {}", m["params"]["name"].as_str().unwrap_or(""))}],
                    "isError": false
                }),
                _ => json!({}),
            };
            Some(json!({"jsonrpc": "2.0", "id": id, "result": result}))
        })
        .collect();
    let response = Response::builder();
    let (response, text) = if answers.is_empty() {
        (response.status(StatusCode::ACCEPTED), String::new())
    } else if how == BatchAnswers::Json {
        (
            response.header("content-type", "application/json"),
            Value::Array(answers).to_string(),
        )
    } else {
        let events: String = answers.iter().map(|a| format!("data: {a}\n\n")).collect();
        (response.header("content-type", "text/event-stream"), events)
    };
    response
        .body(Full::new(Bytes::from(text)).boxed())
        .expect("valid response")
}

// ---- The MCP server -------------------------------------------------------

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct WeatherArgs {
    pub city: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct SearchArgs {
    // In the tool's input schema; the search answers the same whatever the query.
    #[allow(dead_code)]
    pub query: String,
}

#[derive(Debug, serde::Deserialize, schemars::JsonSchema)]
#[schemars(crate = "rmcp::schemars")]
pub struct EchoArgs {
    pub text: String,
}

/// The tools a Gateway with one target named `DemoTarget` would offer. One
/// instance is made per MCP session.
#[derive(Clone)]
pub struct DemoGateway {
    gate: Arc<Semaphore>,
    page_size: Option<usize>,
}

impl DemoGateway {
    fn new(gate: Arc<Semaphore>, page_size: Option<usize>) -> Self {
        Self { gate, page_size }
    }
}

/// `tools/list` in pages of `page_size` when set; the cursor is the offset.
#[tool_handler]
impl ServerHandler for DemoGateway {
    async fn list_tools(
        &self,
        request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let all = Self::tool_router().list_all();
        let Some(size) = self.page_size else {
            return Ok(ListToolsResult::with_all_items(all));
        };
        let offset: usize = request
            .and_then(|r| r.cursor)
            .map(|c| c.parse().expect("cursor is an offset"))
            .unwrap_or(0);
        let end = (offset + size).min(all.len());
        let mut page = ListToolsResult::with_all_items(all[offset..end].to_vec());
        if end < all.len() {
            page.next_cursor = Some(end.to_string());
        }
        Ok(page)
    }
}

#[tool_router]
impl DemoGateway {
    #[tool(
        name = "OtherTarget___delete_everything",
        description = "A tool of another target that a least-privilege policy keeps away"
    )]
    fn delete_everything(&self) -> String {
        "everything deleted".to_string()
    }

    #[tool(
        name = "DemoTarget___fail",
        description = "Always reports a tool error (isError)"
    )]
    fn fail(&self) -> CallToolResult {
        CallToolResult::error(vec![ContentBlock::text("the tool failed")])
    }

    #[tool(
        name = "x_amz_bedrock_agentcore_search",
        description = "The gateway's semantic search: returns every tool, as AgentCore does \
                       (structuredContent.tools and the same JSON as text)"
    )]
    fn search(
        &self,
        Parameters(SearchArgs { query: _ }): Parameters<SearchArgs>,
    ) -> CallToolResult {
        let tools = serde_json::to_value(Self::tool_router().list_all()).expect("tools are JSON");
        CallToolResult::structured(serde_json::json!({ "tools": tools }))
    }

    #[tool(
        name = "DemoTarget___get_weather",
        description = "Current weather in a city"
    )]
    fn get_weather(&self, Parameters(WeatherArgs { city }): Parameters<WeatherArgs>) -> String {
        format!("Weather in {city}: 22°C, sunny")
    }

    #[tool(name = "DemoTarget___echo", description = "Returns its input")]
    fn echo(&self, Parameters(EchoArgs { text }): Parameters<EchoArgs>) -> String {
        text
    }

    #[tool(
        name = "DemoTarget___slow_progress",
        description = "Reports progress 1/2, waits for the test to release it, reports 2/2"
    )]
    async fn slow_progress(
        &self,
        meta: RequestMetaObject,
        client: Peer<RoleServer>,
    ) -> Result<CallToolResult, ErrorData> {
        let token = meta.get_progress_token().ok_or_else(|| {
            ErrorData::invalid_params("DemoTarget___slow_progress needs a progress token", None)
        })?;
        let progress = |step: f64, message: &str| {
            ProgressNotificationParam::new(token.clone(), step)
                .with_total(2.0)
                .with_message(message)
        };
        client
            .notify_progress(progress(1.0, "first"))
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        self.gate
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
        client
            .notify_progress(progress(2.0, "second"))
            .await
            .map_err(|error| ErrorData::internal_error(error.to_string(), None))?;
        Ok(CallToolResult::success(vec![ContentBlock::text("done")]))
    }
}
