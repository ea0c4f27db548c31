//! What the MCP layer carries from a request to its response: the tools/calls waiting
//! for an outcome (audit records, metrics), the answers the tool policy must filter, the
//! errors for refused batch elements still to be delivered, and the in-flight permit.

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::policy::ToolPolicy;
use super::probe::Facts;
use super::tools_filter::{filter_response, Listing};
use crate::audit::{self, AuditSink, Outcome, Record};
use crate::error::ProxyError;
use crate::metrics::{metrics, ReasonLabels, ToolLabels};

/// A forwarded tools/call waiting for its outcome.
pub struct PendingCall {
    pub id: Value,
    pub tool: String,
    pub arguments: Option<Box<RawValue>>,
}

/// The request context every record of it shares.
#[derive(Clone)]
pub struct RequestInfo {
    pub route: Arc<str>,
    pub audit: AuditSink,
    pub session: Option<String>,
    pub started: Instant,
    pub request_bytes: u64,
}

impl RequestInfo {
    /// Records a refusal (audit line + `refused` metric, + `tool_calls` for a tool call).
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
            count_tool(&self.route, tool, Outcome::Refused);
        }
        self.audit_refusal(err, id, method, tool, arguments);
    }

    /// The audit line of a refusal only, for refusals the proxy counts itself.
    pub fn audit_refusal(
        &self,
        err: &ProxyError,
        id: Option<&Value>,
        method: &str,
        tool: Option<&str>,
        arguments: Option<Box<RawValue>>,
    ) {
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
            arguments,
        });
    }

    fn record(&self, record: Record) {
        self.audit.record(record);
    }

    fn elapsed_ms(&self) -> f64 {
        self.started.elapsed().as_micros() as f64 / 1000.0
    }
}

fn count_tool(route: &Arc<str>, tool: &str, outcome: Outcome) {
    // Tool names come from the agent; cap the label so a runaway agent cannot make
    // arbitrarily long series names.
    let tool: String = tool.chars().take(128).collect();
    metrics()
        .tool_calls
        .get_or_create(&ToolLabels {
            route: route.clone(),
            tool,
            outcome: outcome.metric(),
        })
        .inc();
}

/// How a call ended, as far as the proxy saw.
pub struct Ending {
    pub outcome: Outcome,
    pub error_code: Option<i64>,
    pub reason: Option<String>,
    pub status: u16,
    pub response_bytes: u64,
}

pub struct Watch {
    pub info: RequestInfo,
    pub calls: Vec<PendingCall>,
    pub policy: Arc<ToolPolicy>,
    /// Responses to filter, by request id.
    pub targets: Vec<(Value, Listing)>,
    /// Filter every response that lists tools (a resumed GET stream: ids unknown).
    pub filter_any: bool,
    /// Errors for refused elements of a batch, to merge into the gateway's answer.
    pub extras: Vec<Value>,
    pub batch: bool,
    pub max_filter_bytes: usize,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Watch {
    /// True when the response needs watching at all.
    pub fn is_needed(&self) -> bool {
        !self.calls.is_empty()
            || !self.targets.is_empty()
            || self.filter_any
            || !self.extras.is_empty()
            || self.permit.is_some()
    }

    /// Whether answers must still be filtered.
    pub fn filtering(&self) -> bool {
        !self.targets.is_empty() || self.filter_any
    }

    pub fn is_target(&self, facts: &Facts) -> bool {
        facts.is_response()
            && (self.filter_any || facts.id.as_ref().is_some_and(|id| self.wants(id)))
    }

    /// Whether a response with this id must be filtered.
    pub fn wants(&self, id: &Value) -> bool {
        self.filter_any || self.targets.iter().any(|(t, _)| t == id)
    }

    /// Filters the target responses in `message` (one response or a batch of them) and
    /// marks them answered; returns how many tools were removed.
    pub fn filter(&mut self, message: &mut Value) -> usize {
        match message {
            Value::Array(items) => items.iter_mut().map(|m| self.filter_one(m)).sum(),
            one => self.filter_one(one),
        }
    }

    fn filter_one(&mut self, message: &mut Value) -> usize {
        let kind = if self.filter_any {
            let result = message.get("result");
            if result.and_then(|r| r.get("tools")).is_some() {
                Some(Listing::List)
            } else if result
                .and_then(|r| r.get("structuredContent"))
                .and_then(|s| s.get("tools"))
                .is_some()
            {
                Some(Listing::Search)
            } else {
                None
            }
        } else {
            let id = message.get("id");
            let at = self
                .targets
                .iter()
                .position(|(t, _)| Some(t) == id && message.get("method").is_none());
            at.map(|i| self.targets.swap_remove(i).1)
        };
        kind.map_or(0, |kind| filter_response(message, kind, &self.policy))
    }

    /// The answer that replaces target responses that could not be filtered: one error per
    /// target (all of them are answered by it).
    pub fn fail_closed(&mut self, err: &ProxyError) -> Vec<Value> {
        tracing::warn!(route = %self.info.route, reason = err.kind(), "{err}");
        self.targets
            .drain(..)
            .map(|(id, _)| crate::error::error_object(&id, err, Some(&self.info.route)))
            .collect()
    }

    /// Settles the pending call this response answers, if any.
    pub fn settle(&mut self, facts: &Facts, status: u16, response_bytes: u64) {
        if !facts.is_response() {
            return;
        }
        let Some(id) = &facts.id else { return };
        let Some(at) = self.calls.iter().position(|c| &c.id == id) else {
            return;
        };
        let call = self.calls.swap_remove(at);
        let (outcome, error_code) = if facts.error {
            (Outcome::RpcError, facts.error_code)
        } else if facts.tool_error {
            (Outcome::ToolError, None)
        } else {
            (Outcome::Ok, None)
        };
        self.end_call(
            call,
            Ending {
                outcome,
                error_code,
                reason: None,
                status,
                response_bytes,
            },
        );
    }

    /// Ends every call still pending the same way.
    pub fn end_all(&mut self, ending: impl Fn() -> Ending) {
        for call in std::mem::take(&mut self.calls) {
            self.end_call(call, ending());
        }
    }

    /// The request failed before an answer came.
    pub fn failed(&mut self, err: &ProxyError) {
        self.end_all(|| Ending {
            outcome: Outcome::UpstreamFailure,
            error_code: Some(err.rpc_code()),
            reason: Some(err.kind().to_string()),
            status: err.status().as_u16(),
            response_bytes: 0,
        });
    }

    fn end_call(&self, call: PendingCall, ending: Ending) {
        count_tool(&self.info.route, &call.tool, ending.outcome);
        let info = &self.info;
        info.record(Record {
            time: audit::now(),
            route: info.route.clone(),
            session: info.session.clone(),
            id: Some(call.id),
            method: "tools/call".into(),
            tool: Some(call.tool),
            outcome: ending.outcome,
            error_code: ending.error_code,
            reason: ending.reason,
            status: ending.status,
            duration_ms: info.elapsed_ms(),
            request_bytes: info.request_bytes,
            response_bytes: ending.response_bytes,
            arguments: call.arguments,
        });
    }
}
