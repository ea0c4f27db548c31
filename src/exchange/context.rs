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

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::{HeaderMap, Method, Response};
use serde_json::value::RawValue;
use serde_json::Value;

use crate::exchange::body::{ProxyBody, ResponseBody};
use crate::exchange::error::{respond, Answer, ProxyError};
use crate::exchange::peek::RpcPeek;
use crate::ops::access_log;
use crate::ops::audit::{self, AuditSink, Outcome, Record};
use crate::ops::metrics::{
    count_tool_call, metrics, no_route, rpc_method_label, ReasonLabels, RouteMetrics,
};
use crate::upstream::connector::OpeningTimes;

mod trace;
pub use trace::Dialed;

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
    session: Option<Arc<str>>,
    audit: AuditSink,
    route: Option<Routed>,
    /// The bounded label of the JSON-RPC method (`rpc_method_label`), `-` before the
    /// body is read or without one.
    rpc_label: &'static str,
    /// The agent's JSON-RPC method (or `batch`), for the audit record only; an MCP
    /// method borrows its label's static name (no copy per request).
    rpc_method: Option<Cow<'static, str>>,
    rpc_id: Option<Value>,
    pub timings: Timings,
    bytes_in: u64,
    status: u16,
    stream: bool,
    refusal: Option<Refusal>,
    /// The MCP layer answered the request itself.
    answered_locally: bool,
    finished: bool,
    /// The trace spans (empty handles when export is off): [`trace`].
    trace: trace::Trace,
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
                .map(Arc::from),
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
            trace: trace::Trace::default(),
        }
    }

    /// The request was given to a route; its audit sink records from now on.
    pub fn routed(&mut self, name: &Arc<str>, metrics: &Arc<RouteMetrics>, audit: &AuditSink) {
        self.route = Some(Routed {
            name: name.clone(),
            metrics: metrics.clone(),
        });
        self.audit = audit.clone();
        self.trace.routed(&self.method, name);
    }

    /// The JSON-RPC view of the body (the one parse's).
    pub fn read(&mut self, rpc: &RpcPeek, bytes_in: u64) {
        self.bytes_in = bytes_in;
        self.rpc_label = rpc_method_label(rpc.method_label());
        let label = self.rpc_label;
        let (method, id) = match rpc {
            RpcPeek::Single(m) => (
                m.method.as_deref().map(|name| {
                    if name == label {
                        Cow::Borrowed(label)
                    } else {
                        Cow::Owned(name.to_string())
                    }
                }),
                m.id.clone(),
            ),
            RpcPeek::Batch(_) => (Some(Cow::Borrowed("batch")), None),
            // Read but not JSON-RPC: the audit says `-` for the method.
            RpcPeek::Unreadable => (Some(Cow::Borrowed("-")), None),
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
            trace: self.trace.ids().cloned(),
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
            match &self.route {
                Some(r) => r.metrics.refused(refusal.kind),
                None => {
                    metrics()
                        .refused
                        .get_or_create(&ReasonLabels {
                            route: no_route(),
                            reason: refusal.kind,
                        })
                        .inc();
                }
            }
            if let (Some(r), Some(tool)) = (&self.route, &refusal.tool) {
                count_tool_call(&r.name, tool, Outcome::Refused);
            }
            // Failures of the gateway's side (5xx) are recorded per call by the MCP
            // layer; a refusal is the proxy's decision and always leaves a record.
            if refusal.status < 500 && self.audit.enabled() {
                self.audit.record(Record {
                    time: audit::now(),
                    route: self
                        .route
                        .as_ref()
                        .map_or_else(|| Arc::from("-"), |r| r.name.clone()),
                    session: self.session.as_deref().map(str::to_string),
                    id: self.rpc_id.clone(),
                    method: self
                        .rpc_method
                        .as_deref()
                        .map_or_else(|| self.method.as_str().to_string(), str::to_string),
                    tool: refusal.tool.clone(),
                    outcome: Outcome::Refused,
                    error_code: Some(refusal.code),
                    reason: Some(refusal.kind.to_string()),
                    status: refusal.status,
                    duration_ms: ms(total),
                    request_bytes: self.bytes_in,
                    response_bytes: 0,
                    trace_id: self.trace.ids().map(|t| t.ids.trace_id().to_string()),
                    span_id: self.trace.ids().map(|t| t.ids.span_id().to_string()),
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
            trace_id: self.trace.ids().map(|t| t.ids.trace_id()),
            span_id: self.trace.ids().map(|t| t.ids.span_id()),
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

fn ms(d: Duration) -> f64 {
    d.as_micros() as f64 / 1000.0
}

/// What every audit record of one request shares: the MCP layer writes the records of
/// a forwarded request's calls (and of refused batch elements) through it.
#[derive(Clone)]
pub struct Recorder {
    pub route: Arc<str>,
    audit: AuditSink,
    session: Option<Arc<str>>,
    started: Instant,
    request_bytes: u64,
    trace: Option<trace::TraceIds>,
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
                route: self.route.clone(),
                reason: err.kind(),
            })
            .inc();
        if let Some(tool) = tool {
            count_tool_call(&self.route, tool, Outcome::Refused);
        }
        trace::TraceIds::refused(&self.trace, err);
        if !self.audit.enabled() {
            return;
        }
        self.record(Record {
            time: audit::now(),
            route: self.route.clone(),
            session: self.session.as_deref().map(str::to_string),
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
            trace_id: self.trace.as_ref().map(|t| t.ids.trace_id().to_string()),
            span_id: self.trace.as_ref().map(|t| t.ids.span_id().to_string()),
            arguments,
        });
    }

    /// Records how one forwarded call ended.
    pub fn call_ended(&self, id: Value, tool: &str, ending: CallEnding) {
        count_tool_call(&self.route, tool, ending.outcome);
        trace::TraceIds::call_ended(&self.trace, &ending);
        // The record is built only for an audit trail that takes it.
        if !self.audit.enabled() {
            return;
        }
        self.record(Record {
            time: audit::now(),
            route: self.route.clone(),
            session: self.session.as_deref().map(str::to_string),
            id: Some(id),
            method: "tools/call".into(),
            tool: Some(tool.to_string()),
            outcome: ending.outcome,
            error_code: ending.error_code,
            reason: ending.reason,
            status: ending.status,
            duration_ms: self.elapsed_ms(),
            request_bytes: self.request_bytes,
            response_bytes: ending.response_bytes,
            trace_id: self.trace.as_ref().map(|t| t.ids.trace_id().to_string()),
            span_id: self.trace.as_ref().map(|t| t.ids.span_id().to_string()),
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
