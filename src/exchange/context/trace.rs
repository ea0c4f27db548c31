//! The request context's part in tracing (issue 18): the request's server span starts
//! with the context and ends in `finish` (for streams: when the stream ends, or the agent
//! goes away); the gateway request's span covers the send until the answer's last byte,
//! with the credential and a new connection's DNS, connect and TLS steps as its children.
//! With export off every handle is empty and each method here returns at once.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, Method, Uri, Version};

use super::{CallEnding, End, RequestContext};
use crate::exchange::error::ProxyError;
use crate::exchange::message::{Body, Invalid};
use crate::ops::audit::Outcome;
use crate::ops::telemetry::{
    Ids, McpCall, RequestSpan, ServerRequest, Step, UpstreamRequest, UpstreamSpan,
};

/// A credential that took this long to get was fetched (or waited for a fetch another
/// request started); a cached one takes microseconds.
const CREDENTIAL_FETCH: Duration = Duration::from_millis(1);

/// What the step spans of a gateway request are named after.
pub struct Dialed<'a> {
    /// The credential's source (`oauth2`, `sigv4`, …).
    pub credential: &'static str,
    /// The name resolved to dial (none for static addresses).
    pub name: Option<&'a str>,
    /// The gateway's name, in SNI.
    pub server_name: &'a str,
}

/// The spans of one request.
#[derive(Default)]
pub(super) struct Trace {
    span: RequestSpan,
    upstream_span: UpstreamSpan,
    /// When the request went to the gateway (wall clock), for the credential step.
    upstream_at: Option<SystemTime>,
    ids: Option<TraceIds>,
}

/// The trace id and the server span's id, for the access line and audit records; and
/// how the request's calls went, as the MCP layer's records tell (for the span's status).
#[derive(Clone)]
pub(super) struct TraceIds {
    pub(super) ids: Ids,
    /// The first call that failed: set through the `Recorder`, read in `finish`.
    call_error: Arc<OnceLock<CallError>>,
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

impl Trace {
    /// The ids, for the access line, audit records and the `Recorder`.
    pub(super) fn ids(&self) -> Option<&TraceIds> {
        self.ids.as_ref()
    }

    pub(super) fn routed(&mut self, method: &Method, route: &str) {
        self.span.routed(method, route);
    }
}

impl TraceIds {
    /// The MCP layer refused one of the request's calls.
    pub(super) fn refused(ids: &Option<TraceIds>, err: &ProxyError) {
        if let Some(ids) = ids {
            let _ = ids
                .call_error
                .set(CallError::Refused(err.kind(), err.rpc_code()));
        }
    }

    /// One of the request's forwarded calls ended.
    pub(super) fn call_ended(ids: &Option<TraceIds>, ending: &CallEnding) {
        let Some(ids) = ids else {
            return;
        };
        let error = match (ending.outcome, ending.error_code) {
            (Outcome::RpcError, Some(code)) => CallError::Rpc(code),
            (Outcome::ToolError, _) => CallError::Tool,
            _ => return,
        };
        let _ = ids.call_error.set(error);
    }
}

impl RequestContext {
    /// Starts the server span: the child of the agent's `traceparent` when it sent one.
    pub fn start_span(&mut self, path: &str, version: Version, headers: &HeaderMap) {
        let t = &mut self.trace;
        t.span = RequestSpan::start(&ServerRequest {
            method: &self.method,
            path,
            version,
            headers,
        });
        t.ids = t.span.ids().map(|ids| TraceIds {
            ids,
            call_error: Arc::default(),
        });
    }

    /// Names the span after the JSON-RPC message (`tools/call <tool>`), once read.
    pub fn trace_call(&mut self, body: &Result<Body<'_>, Invalid>) {
        if !self.trace.span.is_active() {
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
        self.trace.span.set_mcp(&McpCall {
            method: self.rpc_method.as_deref().unwrap_or("-"),
            id: self.rpc_id.as_ref(),
            tool: tool.as_ref().map(|p| &*p.name),
        });
    }

    /// The request is about to go to the gateway: starts its span and writes the
    /// `traceparent` naming it into `headers`.
    pub fn start_upstream(&mut self, method: &Method, uri: &Uri, headers: &mut HeaderMap) {
        let t = &mut self.trace;
        if !t.span.is_active() {
            return;
        }
        t.upstream_at = Some(SystemTime::now());
        t.upstream_span = t.span.upstream(&UpstreamRequest { method, uri });
        t.upstream_span.inject(headers);
    }

    /// The gateway answered (`Some(status, version)`) or the attempt failed (`None`):
    /// records the credential and connection steps the send timed.
    pub fn upstream_answered(&mut self, answer: Option<(u16, Version)>, dialed: &Dialed<'_>) {
        let t = &mut self.trace;
        if !t.span.is_active() {
            return;
        }
        let upstream = &mut t.upstream_span;
        if let (Some(at), Some(took)) = (t.upstream_at, self.timings.credential) {
            if took >= CREDENTIAL_FETCH {
                let step = Step::Credential {
                    source: dialed.credential,
                };
                upstream.record_step(step, at, at + took, None);
            }
        }
        if let Some(opened) = self.timings.opened {
            let at = opened.at;
            if let Some(name) = dialed.name {
                upstream.record_step(Step::Dns { name }, at, at + opened.dns, None);
            }
            let connect_at = at + opened.connect_from;
            let tls_at = connect_at + opened.connect;
            let connect = Step::Connect { peer: opened.peer };
            upstream.record_step(connect, connect_at, tls_at, None);
            let tls = Step::Tls {
                server_name: dialed.server_name,
            };
            upstream.record_step(tls, tls_at, tls_at + opened.tls, None);
        }
        if let Some((status, version)) = answer {
            upstream.set_status_code(status);
            upstream.set_protocol(version);
        }
    }

    /// Ends the spans with what the request came to.
    pub(super) fn end_spans(&mut self, end: End) {
        if !self.trace.span.is_active() {
            return;
        }
        let status = self.status_or(end);
        let t = &mut self.trace;
        t.span.set_status_code(status);
        if let Some(refusal) = &self.refusal {
            t.span.set_reason(refusal.kind);
            if self.rpc_label != "-" {
                t.span.set_rpc_error(refusal.code);
            } else if refusal.status < 500 {
                t.span.set_error(refusal.kind);
            }
            t.upstream_span.set_error(refusal.kind);
        } else if let Some(error) = t.ids.as_ref().and_then(|i| i.call_error.get()) {
            // A call refused by the MCP layer, or answered with an error.
            match *error {
                CallError::Refused(kind, code) => {
                    t.span.set_reason(kind);
                    t.span.set_rpc_error(code);
                }
                CallError::Rpc(code) => t.span.set_rpc_error(code),
                CallError::Tool => t.span.set_error("tool_error"),
            }
        }
        let ended = match end {
            End::Complete => None,
            End::Broken => Some("stream_broken"),
            End::IdleTimeout => Some("idle_timeout"),
            End::Gone => Some("client_gone"),
        };
        if let Some(error) = ended {
            t.span.set_error(error);
            t.upstream_span.set_error(error);
        }
        std::mem::take(&mut t.upstream_span).end();
        std::mem::take(&mut t.span).end();
    }
}
