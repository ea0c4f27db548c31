//! The per-request context: the record of one exchange with an agent, made when the
//! request arrives and finished exactly once, whatever the exit — refused before
//! routing, answered by the MCP layer, failed upstream, a streamed answer that ends or
//! breaks, or an agent that goes away (the context is then dropped unfinished, and its
//! `Drop` finishes it).
//!
//! Layers do not log, count or audit a request themselves: they set fields here (the
//! route, the JSON-RPC method/id/tool, timings, the refusal), and [`RequestContext::finish`]
//! writes the one access line ([`crate::ops::access_log`]), the request metrics and,
//! for a refusal, the audit record. Per-call audit records of a forwarded batch are
//! written through the context's [`Recorder`], which carries what every record of the
//! request shares.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use http::{HeaderMap, Method, Response, Uri, Version};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::exchange::body::{ProxyBody, ResponseBody};
use crate::exchange::error::{respond, Answer, ProxyError};
use crate::exchange::message::{Body, Invalid};
use crate::exchange::peek::RpcPeek;
use crate::ops::access_log;
use crate::ops::audit::{self, AuditSink, Outcome, Record};
use crate::ops::metrics::{count_tool_call, metrics, rpc_method_label, ReasonLabels, RouteMetrics};
use crate::ops::telemetry::{
    McpCall, RequestSpan, ServerRequest, Step, UpstreamRequest, UpstreamSpan,
};
use crate::upstream::connector::OpeningTimes;

/// Where the time of a request went. Each is set by the step that spent it; a step that
/// did not happen (a reused connection has no DNS, connect or TLS time) stays `None`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Timings {
    /// Getting the route's credential (a cached token: microseconds; a fetch: the fetch).
    pub credential: Option<Duration>,
    /// Resolving the endpoint name, when this request opened a connection.
    pub dns: Option<Duration>,
    /// The TCP connect, when this request opened a connection.
    pub connect: Option<Duration>,
    /// The TLS handshake, when this request opened a connection.
    pub tls: Option<Duration>,
    /// From sending to the gateway until its answer's head arrived.
    pub upstream: Option<Duration>,
    /// The connection this request opened, with the connector's own times (for the
    /// trace's DNS, connect and TLS spans).
    pub opened: Option<OpeningTimes>,
}

/// How the answer to the agent ended, as the response body saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The last byte was handed to the connection.
    Complete,
    /// The gateway's stream broke off (reset, protocol error).
    Broken,
    /// The gateway sent nothing for `idle_timeout`.
    IdleTimeout,
    /// The agent went away before the answer ended (or before there was one).
    Gone,
}

/// The route a request was given to, as far as the context needs it.
struct Routed {
    name: Arc<str>,
    metrics: Arc<RouteMetrics>,
}

/// A refusal or failure the proxy answered with.
struct Refusal {
    kind: &'static str,
    code: i64,
    status: u16,
    message: String,
    /// The tool a refused `tools/call` named (for the audit record and tool metric).
    tool: Option<String>,
}

pub struct RequestContext {
    started: Instant,
    method: Method,
    session: Option<String>,
    audit: AuditSink,
    route: Option<Routed>,
    /// The bounded label of the JSON-RPC method (`rpc_method_label`), `-` before the
    /// body is read or without one.
    rpc_label: &'static str,
    /// The agent's JSON-RPC method (or `batch`), for the audit record only.
    rpc_method: Option<String>,
    rpc_id: Option<Value>,
    pub timings: Timings,
    bytes_in: u64,
    status: u16,
    stream: bool,
    refusal: Option<Refusal>,
    /// The MCP layer answered the request itself.
    answered_locally: bool,
    finished: bool,
    /// The trace spans (empty handles when export is off; see the tracing section below).
    span: RequestSpan,
    upstream_span: UpstreamSpan,
    /// When the request went to the gateway (wall clock), for the credential span.
    upstream_at: Option<SystemTime>,
    trace: Option<TraceIds>,
}

/// The trace id and the server span's id, for the access line and audit records; and
/// how the request's calls went, as the MCP layer's records tell (for the span's status).
#[derive(Clone)]
struct TraceIds {
    trace_id: Arc<str>,
    span_id: Arc<str>,
    /// The first call that failed: set through the [`Recorder`], read in `finish`.
    call_error: Arc<std::sync::OnceLock<CallError>>,
}

/// What made one of the request's calls fail, for the span's `error.type`.
#[derive(Debug, Clone, Copy)]
enum CallError {
    /// The proxy refused it (its kind and JSON-RPC code).
    Refused(&'static str, i64),
    /// The gateway answered with a JSON-RPC error.
    Rpc(i64),
    /// The tool ran and reported an error (`result.isError`).
    Tool,
}

impl RequestContext {
    /// A request has arrived. `audit` is where a refusal before routing is recorded.
    pub fn new(method: &Method, headers: &HeaderMap, audit: &AuditSink) -> RequestContext {
        RequestContext {
            started: Instant::now(),
            method: method.clone(),
            session: headers
                .get("mcp-session-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            audit: audit.clone(),
            route: None,
            rpc_label: "-",
            rpc_method: None,
            rpc_id: None,
            timings: Timings::default(),
            bytes_in: 0,
            status: 0,
            stream: false,
            refusal: None,
            answered_locally: false,
            finished: false,
            span: RequestSpan::default(),
            upstream_span: UpstreamSpan::default(),
            upstream_at: None,
            trace: None,
        }
    }

    /// The request was given to a route; its audit sink records from now on.
    pub fn routed(&mut self, name: &Arc<str>, metrics: &Arc<RouteMetrics>, audit: &AuditSink) {
        self.route = Some(Routed {
            name: name.clone(),
            metrics: metrics.clone(),
        });
        self.audit = audit.clone();
        self.span.routed(&self.method, name);
    }

    /// The JSON-RPC view of the body (the one parse's).
    pub fn read(&mut self, rpc: &RpcPeek, bytes_in: u64) {
        self.bytes_in = bytes_in;
        self.rpc_label = rpc_method_label(rpc.method_label());
        let (method, id) = match rpc {
            RpcPeek::Single(m) => (m.method.clone(), m.id.clone()),
            RpcPeek::Batch(_) => (Some("batch".to_string()), None),
            // Read but not JSON-RPC: the audit says `-` for the method.
            RpcPeek::Unreadable => (Some("-".to_string()), None),
        };
        self.rpc_method = method;
        self.rpc_id = id;
    }

    /// What is sent upstream, when the MCP layer forwards less than was read.
    pub fn set_bytes_in(&mut self, bytes: u64) {
        self.bytes_in = bytes;
    }

    pub fn started(&self) -> Instant {
        self.started
    }

    pub fn route_name(&self) -> Option<&Arc<str>> {
        self.route.as_ref().map(|r| &r.name)
    }

    /// What every audit record of this request shares, for the records the MCP layer
    /// writes per call of a forwarded request.
    pub fn recorder(&self) -> Recorder {
        Recorder {
            route: self
                .route
                .as_ref()
                .map_or_else(|| Arc::from("-"), |r| r.name.clone()),
            audit: self.audit.clone(),
            session: self.session.clone(),
            started: self.started,
            request_bytes: self.bytes_in,
            trace: self.trace.clone(),
        }
    }

    /// Answers with the proxy's own error: the answer `respond` makes for `err` (JSON-RPC
    /// errors echoing the ids of `rpc` for a POST, text otherwise). `tool` is the tool a
    /// refused `tools/call` named.
    pub fn refuse(
        mut self,
        err: ProxyError,
        answer: Answer<'_>,
        tool: Option<&str>,
    ) -> Response<ProxyBody> {
        let route = self.route.as_ref().map(|r| r.name.clone());
        self.refusal = Some(Refusal {
            kind: err.kind(),
            code: err.rpc_code(),
            status: err.status().as_u16(),
            message: err.to_string(),
            tool: tool.map(str::to_string),
        });
        let response = respond(&err, route.as_deref(), answer);
        self.respond(response)
    }

    /// Answers with what the MCP layer made itself (element-wise refusals of a batch,
    /// already recorded per element).
    pub fn answered(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        self.answered_locally = true;
        self.respond(response)
    }

    /// Sends an answer made whole here to the agent.
    pub fn respond(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        self.deliver(response, None)
    }

    /// Sends the gateway's answer to the agent; `idle` is how long it may stay silent.
    pub fn forwarded(self, response: Response<ProxyBody>, idle: Duration) -> Response<ProxyBody> {
        self.deliver(response, Some(idle))
    }

    /// The context rides in the response body and is finished when the body ends (or
    /// is dropped).
    fn deliver(
        mut self,
        response: Response<ProxyBody>,
        idle: Option<Duration>,
    ) -> Response<ProxyBody> {
        let (parts, body) = response.into_parts();
        self.status = parts.status.as_u16();
        self.stream = parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        if self.stream {
            if let Some(r) = &self.route {
                r.metrics.active_streams.inc();
            }
        }
        // hyper stops polling a body once the Content-Length is out: the body needs it
        // to tell a complete answer from an agent that went away.
        let length = parts
            .headers
            .get(http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let body = ResponseBody::new(body, idle, length, self);
        Response::from_parts(parts, http_body_util::BodyExt::boxed_unsync(body))
    }

    /// Finishes the request: the access line, the metrics, and the audit record of a
    /// refusal. Runs once; later calls (and the drop) do nothing.
    pub fn finish(&mut self, bytes_out: u64, end: End) {
        if std::mem::replace(&mut self.finished, true) {
            return;
        }
        let total = self.started.elapsed();
        let outcome = self.outcome(end);
        self.end_spans(end);
        let route_name = self.route.as_ref().map_or("-", |r| &*r.name);
        if let Some(r) = &self.route {
            let m = &r.metrics;
            if self.stream {
                m.active_streams.dec();
            }
            m.request(&self.method, self.rpc_label, self.status_or(end));
            m.request_seconds.observe(total.as_secs_f64());
            m.bytes_in.inc_by(self.bytes_in);
            m.bytes_out.inc_by(bytes_out);
        }
        if let Some(refusal) = &self.refusal {
            metrics()
                .refused
                .get_or_create(&ReasonLabels {
                    route: route_name.to_string(),
                    reason: refusal.kind.to_string(),
                })
                .inc();
            if let (Some(r), Some(tool)) = (&self.route, &refusal.tool) {
                count_tool_call(&r.name, tool, Outcome::Refused);
            }
            // Failures of the gateway's side (5xx) are recorded per call by the MCP
            // layer; a refusal is the proxy's decision and always leaves a record.
            if refusal.status < 500 {
                self.audit.record(Record {
                    time: audit::now(),
                    route: self
                        .route
                        .as_ref()
                        .map_or_else(|| Arc::from("-"), |r| r.name.clone()),
                    session: self.session.clone(),
                    id: self.rpc_id.clone(),
                    method: self
                        .rpc_method
                        .clone()
                        .unwrap_or_else(|| self.method.as_str().to_string()),
                    tool: refusal.tool.clone(),
                    outcome: Outcome::Refused,
                    error_code: Some(refusal.code),
                    reason: Some(refusal.kind.to_string()),
                    status: refusal.status,
                    duration_ms: ms(total),
                    request_bytes: self.bytes_in,
                    response_bytes: 0,
                    trace_id: self.trace.as_ref().map(|t| t.trace_id.to_string()),
                    span_id: self.trace.as_ref().map(|t| t.span_id.to_string()),
                    arguments: None,
                });
            }
        }
        access_log::write(&access_log::Line {
            route: route_name,
            method: &self.method,
            rpc_method: self.rpc_label,
            session: self.session.is_some(),
            status: self.status_or(end),
            outcome,
            reason: self.refusal.as_ref().map(|r| r.kind),
            message: self.refusal.as_ref().map(|r| r.message.as_str()),
            credential_ms: self.timings.credential.map(ms),
            dns_ms: self.timings.dns.map(ms),
            connect_ms: self.timings.connect.map(ms),
            tls_ms: self.timings.tls.map(ms),
            upstream_ms: self.timings.upstream.map(ms),
            total_ms: ms(total),
            bytes_in: self.bytes_in,
            bytes_out,
            trace_id: self.trace.as_ref().map(|t| &*t.trace_id),
            span_id: self.trace.as_ref().map(|t| &*t.span_id),
        });
    }

    /// The status the agent saw: none (0) when it went away before the answer's head.
    fn status_or(&self, end: End) -> u16 {
        if self.status == 0 && end == End::Gone {
            // Counted like nginx's 499: the client closed the request.
            499
        } else {
            self.status
        }
    }

    /// The `outcome` of the access line (docs/operations.md lists them).
    fn outcome(&self, end: End) -> &'static str {
        match (&self.refusal, end) {
            (_, End::Gone) if self.status == 0 => "client_gone",
            (Some(r), _) if r.status >= 500 => "failed",
            (Some(_), _) => "refused",
            (None, _) if self.answered_locally => "answered",
            (None, End::Complete) => "ok",
            (None, End::Broken) => "broken",
            (None, End::IdleTimeout) => "idle_timeout",
            (None, End::Gone) => "client_gone",
        }
    }
}

impl Drop for RequestContext {
    /// Dropped unfinished: the handler was cancelled because the agent went away while
    /// the request was still on its way (waiting for the credential or the gateway).
    fn drop(&mut self) {
        self.finish(0, End::Gone);
    }
}

// ---- Tracing (issue 18) -------------------------------------------------------------
//
// The request's server span starts with the context and ends in `finish` (for streams:
// when the stream ends, or the agent goes away); the gateway request's span covers the
// send until the answer's last byte, with the credential and a new connection's DNS,
// connect and TLS steps as its children. With export off every handle is empty and each
// method below returns at once.

/// What the step spans of a gateway request are named after.
pub struct Dialed<'a> {
    /// The credential's source (`oauth2`, `sigv4`, …).
    pub credential: &'static str,
    /// The name resolved to dial (none for static addresses).
    pub name: Option<&'a str>,
    /// The gateway's name, in SNI.
    pub server_name: &'a str,
}

/// A credential that took this long to get was fetched (or waited for a fetch another
/// request started); a cached one takes microseconds.
const CREDENTIAL_FETCH: Duration = Duration::from_millis(1);

impl RequestContext {
    /// Starts the server span: the child of the agent's `traceparent` when it sent one.
    pub fn start_span(&mut self, path: &str, version: Version, headers: &HeaderMap) {
        self.span = RequestSpan::start(&ServerRequest {
            method: &self.method,
            path,
            version,
            headers,
        });
        if let (Some(trace_id), Some(span_id)) = (self.span.trace_id(), self.span.span_id()) {
            self.trace = Some(TraceIds {
                trace_id: trace_id.into(),
                span_id: span_id.into(),
                call_error: Arc::default(),
            });
        }
    }

    /// Names the span after the JSON-RPC message (`tools/call <tool>`), once read.
    pub fn trace_call(&mut self, body: &Result<Body<'_>, Invalid>) {
        if !self.span.is_active() {
            return;
        }
        let single = body
            .as_ref()
            .ok()
            .filter(|b| !b.batch && b.messages.len() == 1);
        let tool = single
            .map(|b| &b.messages[0])
            .filter(|m| m.method.as_deref() == Some("tools/call"))
            .and_then(|m| m.call_params().ok());
        self.span.set_mcp(&McpCall {
            method: self.rpc_method.as_deref().unwrap_or("-"),
            id: self.rpc_id.as_ref(),
            tool: tool.as_ref().map(|p| &*p.name),
        });
    }

    /// The request is about to go to the gateway: starts its span and writes the
    /// `traceparent` naming it into `headers`.
    pub fn start_upstream(&mut self, method: &Method, uri: &Uri, headers: &mut HeaderMap) {
        if !self.span.is_active() {
            return;
        }
        self.upstream_at = Some(SystemTime::now());
        self.upstream_span = self.span.upstream(&UpstreamRequest {
            method,
            uri,
            route: self.route.as_ref().map_or("-", |r| &*r.name),
        });
        self.upstream_span.inject(headers);
    }

    /// The gateway answered (`Some(status, version)`) or the attempt failed (`None`):
    /// records the credential and connection steps the send timed.
    pub fn upstream_answered(&mut self, answer: Option<(u16, Version)>, dialed: &Dialed<'_>) {
        if !self.span.is_active() {
            return;
        }
        if let (Some(at), Some(took)) = (self.upstream_at, self.timings.credential) {
            if took >= CREDENTIAL_FETCH {
                let step = Step::Credential {
                    source: dialed.credential,
                };
                self.upstream_span.record_step(step, at, at + took, None);
            }
        }
        if let Some(opened) = self.timings.opened {
            let at = opened.at;
            if let Some(name) = dialed.name {
                self.upstream_span
                    .record_step(Step::Dns { name }, at, at + opened.dns, None);
            }
            let connect_at = at + opened.connect_from;
            let tls_at = connect_at + opened.connect;
            self.upstream_span.record_step(
                Step::Connect { peer: opened.peer },
                connect_at,
                tls_at,
                None,
            );
            self.upstream_span.record_step(
                Step::Tls {
                    server_name: dialed.server_name,
                },
                tls_at,
                tls_at + opened.tls,
                None,
            );
        }
        if let Some((status, version)) = answer {
            self.upstream_span.set_status_code(status);
            self.upstream_span.set_protocol(version);
        }
    }

    /// Ends the spans with what the request came to.
    fn end_spans(&mut self, end: End) {
        if !self.span.is_active() {
            return;
        }
        let status = self.status_or(end);
        self.span.set_status_code(status);
        if let Some(refusal) = &self.refusal {
            self.span.set_reason(refusal.kind);
            if self.rpc_label != "-" {
                self.span.set_rpc_error(refusal.code);
            } else if refusal.status < 500 {
                self.span.set_error(refusal.kind);
            }
            self.upstream_span.set_error(refusal.kind);
        } else if let Some(error) = self.trace.as_ref().and_then(|t| t.call_error.get()) {
            // A call refused by the MCP layer, or answered with an error.
            match *error {
                CallError::Refused(kind, code) => {
                    self.span.set_reason(kind);
                    self.span.set_rpc_error(code);
                }
                CallError::Rpc(code) => self.span.set_rpc_error(code),
                CallError::Tool => self.span.set_error("tool_error"),
            }
        }
        let ended = match end {
            End::Complete => None,
            End::Broken => Some("stream_broken"),
            End::IdleTimeout => Some("idle_timeout"),
            End::Gone => Some("client_gone"),
        };
        if let Some(error) = ended {
            self.span.set_error(error);
            self.upstream_span.set_error(error);
        }
        std::mem::take(&mut self.upstream_span).end();
        std::mem::take(&mut self.span).end();
    }
}

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// What every audit record of one request shares: the MCP layer writes the records of
/// a forwarded request's calls (and of refused batch elements) through it.
#[derive(Clone)]
pub struct Recorder {
    pub route: Arc<str>,
    audit: AuditSink,
    session: Option<String>,
    started: Instant,
    request_bytes: u64,
    trace: Option<TraceIds>,
}

impl Recorder {
    /// A recorder for a request of `route` that has no context (the MCP layer's tests).
    pub fn new(route: &str, audit: &AuditSink) -> Recorder {
        Recorder {
            route: Arc::from(route),
            audit: audit.clone(),
            session: None,
            started: Instant::now(),
            request_bytes: 0,
            trace: None,
        }
    }

    /// Records the refusal of one element of a batch (audit line, `refused` metric, and
    /// `tool_calls` for a tool call).
    pub fn refused(
        &self,
        err: &ProxyError,
        id: Option<&Value>,
        method: &str,
        tool: Option<&str>,
        arguments: Option<Box<RawValue>>,
    ) {
        metrics()
            .refused
            .get_or_create(&ReasonLabels {
                route: self.route.to_string(),
                reason: err.kind().to_string(),
            })
            .inc();
        if let Some(tool) = tool {
            count_tool_call(&self.route, tool, Outcome::Refused);
        }
        if let Some(trace) = &self.trace {
            let _ = trace
                .call_error
                .set(CallError::Refused(err.kind(), err.rpc_code()));
        }
        self.record(Record {
            time: audit::now(),
            route: self.route.clone(),
            session: self.session.clone(),
            id: id.cloned(),
            method: method.to_string(),
            tool: tool.map(str::to_string),
            outcome: Outcome::Refused,
            error_code: Some(err.rpc_code()),
            reason: Some(err.kind().to_string()),
            status: err.status().as_u16(),
            duration_ms: self.elapsed_ms(),
            request_bytes: self.request_bytes,
            response_bytes: 0,
            trace_id: self.trace.as_ref().map(|t| t.trace_id.to_string()),
            span_id: self.trace.as_ref().map(|t| t.span_id.to_string()),
            arguments,
        });
    }

    /// Records how one forwarded call ended.
    pub fn call_ended(&self, id: Value, tool: String, ending: CallEnding) {
        count_tool_call(&self.route, &tool, ending.outcome);
        if let Some(trace) = &self.trace {
            let error = match (ending.outcome, ending.error_code) {
                (Outcome::RpcError, Some(code)) => Some(CallError::Rpc(code)),
                (Outcome::ToolError, _) => Some(CallError::Tool),
                _ => None,
            };
            if let Some(error) = error {
                let _ = trace.call_error.set(error);
            }
        }
        self.record(Record {
            time: audit::now(),
            route: self.route.clone(),
            session: self.session.clone(),
            id: Some(id),
            method: "tools/call".into(),
            tool: Some(tool),
            outcome: ending.outcome,
            error_code: ending.error_code,
            reason: ending.reason,
            status: ending.status,
            duration_ms: self.elapsed_ms(),
            request_bytes: self.request_bytes,
            response_bytes: ending.response_bytes,
            trace_id: self.trace.as_ref().map(|t| t.trace_id.to_string()),
            span_id: self.trace.as_ref().map(|t| t.span_id.to_string()),
            arguments: ending.arguments,
        });
    }

    fn record(&self, record: Record) {
        self.audit.record(record);
    }

    fn elapsed_ms(&self) -> f64 {
        ms(self.started.elapsed())
    }
}

/// How a forwarded call ended, as far as the proxy saw.
pub struct CallEnding {
    pub outcome: Outcome,
    pub error_code: Option<i64>,
    pub reason: Option<String>,
    pub status: u16,
    pub response_bytes: u64,
    pub arguments: Option<Box<RawValue>>,
}
