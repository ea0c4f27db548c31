//! The spans of one request, as the request context uses them:
//!
//! ```text
//! RequestSpan::start(headers, &server)      SERVER  "tools/call get_weather" (or "POST /mcp")
//!   ├─ .step(Step::Credential{..})          INTERNAL "credential fetch"
//!   ├─ .record_step(Step::Dns{..}, t0, t1)  CLIENT   "DNS lookup <name>"
//!   ├─ .record_step(Step::Connect{..}, ..)  INTERNAL "socket connect <addr>"
//!   ├─ .record_step(Step::Tls{..}, ..)      INTERNAL "TLS client handshake <name>"
//!   └─ .upstream(&request)                  CLIENT   "POST" → .inject(&mut headers)
//! ```
//!
//! Every handle is a no-op when export is off: `start` then looks at one `OnceLock` and
//! returns a handle holding `None`, so no span, id or attribute is ever made. A span
//! ends when `end` is called or, failing that, when its handle is dropped (an agent that
//! went away), so none is left open.
//!
//! Attributes follow the OpenTelemetry semantic conventions (HTTP server and client
//! spans; MCP: `mcp.method.name`, `gen_ai.tool.name`, `mcp.session.id`,
//! `jsonrpc.request.id`) and come from an allow-list only: the request's method, route
//! and path, three header values (`User-Agent`, `Mcp-Session-Id`,
//! `MCP-Protocol-Version`), the JSON-RPC method, id and tool name. No credential, no
//! body and no other header value is ever an attribute.

use std::borrow::Cow;
use std::net::SocketAddr;
use std::time::SystemTime;

use http::header::HeaderName;
use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanKind, Status, TraceContextExt, TraceFlags, Tracer as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::HeaderExtractor;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracer, Span};
use serde_json::Value;

use crate::ops::metrics::{http_method_label, rpc_method_label};

/// Longest attribute value taken from the agent's request (a tool name, a path, a
/// session id, a User-Agent); longer ones are cut.
const MAX_VALUE: usize = 256;

const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");

/// The request as it arrived, for the server span.
pub struct ServerRequest<'a> {
    pub method: &'a Method,
    pub path: &'a str,
    pub version: Version,
    pub headers: &'a HeaderMap,
}

/// The JSON-RPC message of a POST, once parsed.
pub struct McpCall<'a> {
    /// The method as sent; a name outside the MCP specification is recorded as `_OTHER`.
    pub method: &'a str,
    pub id: Option<&'a Value>,
    /// The tool of a `tools/call`.
    pub tool: Option<&'a str>,
}

/// The request to the gateway, for the client span.
pub struct UpstreamRequest<'a> {
    pub method: &'a Method,
    /// The gateway URL; its query is never recorded.
    pub uri: &'a Uri,
}

/// A part of the work inside a request, for a child span.
#[derive(Debug, Clone, Copy)]
pub enum Step<'a> {
    /// Fetching or refreshing the route's credential (`source`: its type, e.g. `oauth2`).
    Credential { source: &'a str },
    /// Resolving the name the route dials.
    Dns { name: &'a str },
    /// The TCP connect to one address.
    Connect { peer: SocketAddr },
    /// The TLS handshake with the gateway.
    Tls { server_name: &'a str },
}

impl Step<'_> {
    fn name(&self) -> Cow<'static, str> {
        match self {
            Step::Credential { .. } => "credential fetch".into(),
            Step::Dns { name } => format!("DNS lookup {}", cut(name)).into(),
            Step::Connect { peer } => format!("socket connect {peer}").into(),
            Step::Tls { server_name } => {
                format!("TLS client handshake {}", cut(server_name)).into()
            }
        }
    }

    fn kind(&self) -> SpanKind {
        match self {
            Step::Dns { .. } => SpanKind::Client,
            _ => SpanKind::Internal,
        }
    }

    fn attributes(&self) -> Vec<KeyValue> {
        match *self {
            Step::Credential { source } => {
                vec![KeyValue::new(
                    "mcp_vpce_proxy.credential.source",
                    source.to_string(),
                )]
            }
            Step::Dns { name } => vec![KeyValue::new("dns.question.name", cut(name))],
            Step::Connect { peer } => vec![
                KeyValue::new("network.peer.address", peer.ip().to_string()),
                KeyValue::new("network.peer.port", i64::from(peer.port())),
                KeyValue::new("network.transport", "tcp"),
            ],
            Step::Tls { server_name } => vec![KeyValue::new("server.address", cut(server_name))],
        }
    }
}

/// The live part of a handle: present only while export is on.
struct Active {
    tracer: SdkTracer,
    span: Span,
    /// This span as the parent of its children.
    parent: Context,
    /// The server span's request path, which becomes `http.route` once routed (routes
    /// are matched by their exact path).
    path: String,
}

impl Active {
    fn new(tracer: &SdkTracer, span: Span) -> Box<Active> {
        let sc = span.span_context();
        let local = SpanContext::new(
            sc.trace_id(),
            sc.span_id(),
            sc.trace_flags(),
            false,
            sc.trace_state().clone(),
        );
        Box::new(Active {
            tracer: tracer.clone(),
            parent: Context::new().with_remote_span_context(local),
            span,
            path: String::new(),
        })
    }

    fn child(
        &self,
        name: Cow<'static, str>,
        kind: SpanKind,
        attributes: Vec<KeyValue>,
        start: Option<SystemTime>,
    ) -> Span {
        let mut builder = self
            .tracer
            .span_builder(name)
            .with_kind(kind)
            .with_attributes(attributes);
        if let Some(start) = start {
            builder = builder.with_start_time(start);
        }
        self.tracer.build_with_context(builder, &self.parent)
    }

    /// The span is kept by the sampler: only then are attributes worth making.
    fn recording(&self) -> bool {
        self.span.is_recording()
    }

    fn error(&mut self, error_type: &str) {
        self.span
            .set_attribute(KeyValue::new("error.type", cut(error_type)));
        self.span.set_status(Status::error(cut(error_type)));
    }
}

/// The server span of one agent request.
#[derive(Default)]
pub struct RequestSpan {
    active: Option<Box<Active>>,
}

impl RequestSpan {
    /// Starts the server span: the child of the agent's `traceparent`/`tracestate` when
    /// they are valid, the root of a new trace otherwise. A no-op when export is off.
    pub fn start(request: &ServerRequest<'_>) -> RequestSpan {
        match super::active() {
            None => RequestSpan { active: None },
            Some(telemetry) => RequestSpan::start_with(&telemetry.tracer, request),
        }
    }

    pub(crate) fn start_with(tracer: &SdkTracer, request: &ServerRequest<'_>) -> RequestSpan {
        let parent = TraceContextPropagator::new().extract(&HeaderExtractor(request.headers));
        let method = method_attribute(request.method);
        let path = cut(request.path);
        // Named by the method alone until routed: an unknown path never names a span. The
        // attributes are made only for a span the sampler keeps; the list has room for
        // what routing and the JSON-RPC message add.
        let builder = tracer
            .span_builder(method)
            .with_kind(SpanKind::Server)
            .with_attributes(Vec::with_capacity(16));
        let mut span = tracer.build_with_context(builder, &parent);
        if span.is_recording() {
            for attribute in [
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.path", path.clone()),
                KeyValue::new("url.scheme", "http"),
                KeyValue::new("network.protocol.version", version(request.version)),
            ] {
                span.set_attribute(attribute);
            }
            for (header, attribute) in [
                ("user-agent", "user_agent.original"),
                ("mcp-session-id", "mcp.session.id"),
                ("mcp-protocol-version", "mcp.protocol.version"),
            ] {
                if let Some(value) = request.headers.get(header).and_then(|v| v.to_str().ok()) {
                    span.set_attribute(KeyValue::new(attribute, cut(value)));
                }
            }
        }
        let mut active = Active::new(tracer, span);
        active.path = path;
        RequestSpan {
            active: Some(active),
        }
    }

    /// True when export is on (the handle makes spans).
    pub fn is_active(&self) -> bool {
        self.active.is_some()
    }

    /// The span, when the sampler keeps it.
    fn recorded(&mut self) -> Option<&mut Active> {
        self.active.as_deref_mut().filter(|a| a.recording())
    }

    /// The router gave the request to route `name`: its path becomes `http.route` and
    /// the span is named `{METHOD} {path}` (until an MCP method names it).
    pub fn routed(&mut self, method: &Method, name: &str) {
        if let Some(a) = self.recorded() {
            a.span
                .set_attribute(KeyValue::new("mcp_vpce_proxy.route", name.to_string()));
            a.span
                .set_attribute(KeyValue::new("http.route", a.path.clone()));
            a.span
                .update_name(format!("{} {}", method_attribute(method), a.path));
        }
    }

    /// Marks the proxy's own refusal: `mcp_vpce_proxy.reason` is its kind
    /// (`tool_refused`, `rate_limited`, …).
    pub fn set_reason(&mut self, reason: &str) {
        if let Some(a) = self.recorded() {
            a.span
                .set_attribute(KeyValue::new("mcp_vpce_proxy.reason", cut(reason)));
        }
    }

    /// The JSON-RPC message: MCP attributes, and the span named `{method} {tool}` as
    /// the MCP conventions name it.
    pub fn set_mcp(&mut self, call: &McpCall<'_>) {
        let Some(a) = self.recorded() else {
            return;
        };
        let method = match rpc_method_label(call.method) {
            "-" => return,
            "batch" => {
                a.span.update_name("batch");
                return;
            }
            "other" => "_OTHER",
            known => known,
        };
        a.span
            .set_attribute(KeyValue::new("mcp.method.name", method));
        let mut name = method.to_string();
        if let (Some(tool), "tools/call") = (call.tool, method) {
            let tool = cut(tool);
            name = format!("{method} {tool}");
            a.span
                .set_attribute(KeyValue::new("gen_ai.tool.name", tool));
            a.span
                .set_attribute(KeyValue::new("gen_ai.operation.name", "execute_tool"));
        }
        match call.id {
            Some(Value::String(id)) => a
                .span
                .set_attribute(KeyValue::new("jsonrpc.request.id", cut(id))),
            Some(Value::Number(id)) => a
                .span
                .set_attribute(KeyValue::new("jsonrpc.request.id", id.to_string())),
            _ => {}
        }
        a.span.update_name(name);
    }

    /// The answer's status; a 5xx marks the span failed (`error.type` = the status).
    pub fn set_status_code(&mut self, status: u16) {
        if let Some(a) = self.recorded() {
            a.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 500 {
                a.error(&status.to_string());
            }
        }
    }

    /// A JSON-RPC error answered (the gateway's or the proxy's): `rpc.response.status_code`
    /// and `error.type` are its code.
    pub fn set_rpc_error(&mut self, code: i64) {
        if let Some(a) = self.recorded() {
            let code = code.to_string();
            a.span
                .set_attribute(KeyValue::new("rpc.response.status_code", code.clone()));
            a.error(&code);
        }
    }

    /// Marks the request failed; `error_type` is a short, low-cardinality name
    /// (`tool_refused`, `upstream_timeout`, `tool_error`, …).
    pub fn set_error(&mut self, error_type: &str) {
        if let Some(a) = self.recorded() {
            a.error(error_type);
        }
    }

    /// A child span starting now; it ends with `end` or when dropped.
    pub fn step(&self, step: Step<'_>) -> StepSpan {
        StepSpan {
            span: self
                .active
                .as_ref()
                .filter(|a| a.recording())
                .map(|a| a.child(step.name(), step.kind(), step.attributes(), None)),
        }
    }

    /// A child span for work already done, with its own times (the connector's).
    pub fn record_step(
        &self,
        step: Step<'_>,
        start: SystemTime,
        end: SystemTime,
        error_type: Option<&str>,
    ) {
        if let Some(a) = self.active.as_ref().filter(|a| a.recording()) {
            let mut span = a.child(step.name(), step.kind(), step.attributes(), Some(start));
            if let Some(error_type) = error_type {
                span.set_attribute(KeyValue::new("error.type", cut(error_type)));
                span.set_status(Status::error(cut(error_type)));
            }
            span.end_with_timestamp(end);
        }
    }

    /// The client span of the request to the gateway, starting now.
    pub fn upstream(&self, request: &UpstreamRequest<'_>) -> UpstreamSpan {
        let Some(a) = &self.active else {
            return UpstreamSpan { active: None };
        };
        let method = method_attribute(request.method);
        let mut attributes = Vec::with_capacity(8);
        // A span the sampler drops still names the gateway's parent; it needs nothing else.
        if a.recording() {
            attributes.extend([
                KeyValue::new("http.request.method", method),
                KeyValue::new("url.full", url_without_query(request.uri)),
            ]);
            if let Some(host) = request.uri.host() {
                attributes.push(KeyValue::new("server.address", host.to_string()));
            }
            attributes.push(KeyValue::new(
                "server.port",
                i64::from(request.uri.port_u16().unwrap_or(443)),
            ));
        }
        let span = a.child(method.into(), SpanKind::Client, attributes, None);
        UpstreamSpan {
            active: Some(Active::new(&a.tracer, span)),
        }
    }

    /// The trace id and the server span's id as text, for the access line and the audit
    /// record (no allocation: the digits live in the value).
    pub fn ids(&self) -> Option<Ids> {
        self.active.as_ref().map(|a| {
            let sc = a.span.span_context();
            let mut ids = Ids {
                trace: [b'0'; 32],
                span: [b'0'; 16],
            };
            hex_into(&sc.trace_id().to_bytes(), &mut ids.trace);
            hex_into(&sc.span_id().to_bytes(), &mut ids.span);
            ids
        })
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> Option<String> {
        self.active
            .as_ref()
            .map(|a| a.span.span_context().trace_id().to_string())
    }

    /// The server span's id, 16 hex digits.
    pub fn span_id(&self) -> Option<String> {
        self.active
            .as_ref()
            .map(|a| a.span.span_context().span_id().to_string())
    }

    /// Ends the server span now (dropping the handle does the same).
    pub fn end(self) {
        drop(self);
    }
}

/// A child span: ends with `end` or when dropped.
#[derive(Default)]
pub struct StepSpan {
    span: Option<Span>,
}

impl StepSpan {
    pub fn set_error(&mut self, error_type: &str) {
        if let Some(span) = &mut self.span {
            span.set_attribute(KeyValue::new("error.type", cut(error_type)));
            span.set_status(Status::error(cut(error_type)));
        }
    }

    pub fn end(self) {
        drop(self);
    }
}

/// The client span of the request to the gateway: ends with `end` (when the answer's
/// last byte has passed) or when dropped.
#[derive(Default)]
pub struct UpstreamSpan {
    active: Option<Box<Active>>,
}

impl UpstreamSpan {
    /// The span, when the sampler keeps it.
    fn recorded(&mut self) -> Option<&mut Active> {
        self.active.as_deref_mut().filter(|a| a.recording())
    }

    /// Writes `traceparent` for the gateway, naming this span as the parent.
    /// `tracestate` and `baggage` are left exactly as the agent sent them (re-encoding
    /// `tracestate` could drop entries this SDK does not parse). Does nothing when
    /// export is off: the agent's own headers then pass through unchanged.
    pub fn inject(&self, headers: &mut HeaderMap) {
        if let Some(a) = &self.active {
            let sc = a.span.span_context();
            let value = format!(
                "00-{}-{}-{:02x}",
                sc.trace_id(),
                sc.span_id(),
                sc.trace_flags().to_u8() & TraceFlags::SAMPLED.to_u8()
            );
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(TRACEPARENT, value);
            }
        }
    }

    /// The gateway's status; 4xx and 5xx mark the span failed.
    pub fn set_status_code(&mut self, status: u16) {
        if let Some(a) = self.recorded() {
            a.span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
            if status >= 400 {
                a.error(&status.to_string());
            }
        }
    }

    pub fn set_protocol(&mut self, version: Version) {
        if let Some(a) = self.recorded() {
            a.span.set_attribute(KeyValue::new(
                "network.protocol.version",
                self::version(version),
            ));
        }
    }

    /// No usable answer (`timeout`, `connect_failed`, `stream_cut`, …).
    pub fn set_error(&mut self, error_type: &str) {
        if let Some(a) = self.recorded() {
            a.error(error_type);
        }
    }

    /// A child span for work done during this request (a new connection's steps).
    pub fn record_step(
        &self,
        step: Step<'_>,
        start: SystemTime,
        end: SystemTime,
        error_type: Option<&str>,
    ) {
        if let Some(a) = self.active.as_ref().filter(|a| a.recording()) {
            let mut span = a.child(step.name(), step.kind(), step.attributes(), Some(start));
            if let Some(error_type) = error_type {
                span.set_attribute(KeyValue::new("error.type", cut(error_type)));
                span.set_status(Status::error(cut(error_type)));
            }
            span.end_with_timestamp(end);
        }
    }

    pub fn span_id(&self) -> Option<String> {
        self.active
            .as_ref()
            .map(|a| a.span.span_context().span_id().to_string())
    }

    pub fn end(self) {
        drop(self);
    }
}

/// A request's trace id (32 hex digits) and its server span's id (16).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ids {
    trace: [u8; 32],
    span: [u8; 16],
}

impl Ids {
    pub fn trace_id(&self) -> &str {
        std::str::from_utf8(&self.trace).unwrap_or_default()
    }

    pub fn span_id(&self) -> &str {
        std::str::from_utf8(&self.span).unwrap_or_default()
    }
}

fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (i, b) in bytes.iter().enumerate() {
        out[2 * i] = DIGITS[usize::from(b >> 4)];
        out[2 * i + 1] = DIGITS[usize::from(b & 0xf)];
    }
}

/// `http.request.method`: the known methods by name, `_OTHER` for the rest.
fn method_attribute(method: &Method) -> &'static str {
    match http_method_label(method) {
        "other" => "_OTHER",
        known => known,
    }
}

fn version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// The URL without its query (which may carry anything the agent put there).
fn url_without_query(uri: &Uri) -> String {
    format!(
        "{}://{}{}",
        uri.scheme_str().unwrap_or("https"),
        uri.authority().map(|a| a.as_str()).unwrap_or(""),
        cut(uri.path())
    )
}

/// At most `MAX_VALUE` bytes, cut at a character boundary.
fn cut(text: &str) -> String {
    if text.len() <= MAX_VALUE {
        return text.to_string();
    }
    let mut end = MAX_VALUE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}
