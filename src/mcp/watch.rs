//! What the MCP layer carries from a request to its response: the tools/calls waiting
//! for an outcome (audit records, metrics), the answers the tool policy must filter, the
//! errors for refused batch elements still to be delivered, and the in-flight permit.

use std::sync::Arc;
use std::time::Instant;

use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::OwnedSemaphorePermit;

use super::ids;
use super::policy::ToolPolicy;
use super::probe::Facts;
use super::tools_filter::{filter_result, listed_names, Listing};
use crate::ops::audit::{self, AuditSink, Outcome, Record};
use crate::ops::metrics::{metrics, ReasonLabels, ToolLabels};
use crate::exchange::error::ProxyError;

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
    let m = metrics();
    // The gateway ran it: the name is a real tool's, worth a series of its own.
    if matches!(outcome, Outcome::Ok | Outcome::ToolError) {
        m.tool_names.learn(route, tool);
    }
    m.tool_calls
        .get_or_create(&ToolLabels {
            route: route.clone(),
            tool: m.tool_names.label(route, tool),
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

/// What the answer to one forwarded request may carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// A `tools/list` result.
    List,
    /// A result of the search tool.
    Search,
    /// Anything else.
    Other,
}

pub struct Watch {
    pub info: RequestInfo,
    pub calls: Vec<PendingCall>,
    pub policy: Arc<ToolPolicy>,
    /// Every answer is filtered by what it carries, whatever its id: the request asked for
    /// something that lists tools (or is a stream, whose answers are not known ahead).
    pub filtering: bool,
    /// The request called the search tool: a response that cannot be matched to its
    /// request is filtered as a search result too.
    pub search: bool,
    /// While filtering: the forwarded requests still waiting for an answer, which a
    /// fail-closed answer answers.
    pub expected: Vec<(Value, Expect)>,
    /// Errors for refused elements of a batch, to merge into the gateway's answer.
    pub extras: Vec<Value>,
    pub batch: bool,
    pub max_filter_bytes: usize,
    pub permit: Option<OwnedSemaphorePermit>,
}

impl Watch {
    /// True when the response needs watching at all.
    pub fn is_needed(&self) -> bool {
        !self.calls.is_empty() || self.filtering || !self.extras.is_empty() || self.permit.is_some()
    }

    /// Whether answers are filtered.
    pub fn filtering(&self) -> bool {
        self.filtering
    }

    /// Filters every response in `message` (one message or a batch) by what it carries;
    /// returns how many tools were removed.
    pub fn filter(&mut self, message: &mut Value) -> usize {
        match message {
            Value::Array(items) => items.iter_mut().map(|m| self.filter_one(m)).sum(),
            one => self.filter_one(one),
        }
    }

    /// Any `result.tools` is a tool list; a search result is one of a search call (or,
    /// when the id matches no request, of any request that called the search tool), or
    /// any result with `structuredContent.tools`. The id picks nothing that would let
    /// an answer through: at most it adds the search filter.
    fn filter_one(&mut self, message: &mut Value) -> usize {
        let matched = message
            .get("id")
            .and_then(|id| self.take_expected(id))
            .map(|(_, expect)| expect);
        let Some(result) = message.get_mut("result") else {
            return 0;
        };
        let mut removed = 0;
        if result.get("tools").is_some() {
            for name in listed_names(result) {
                metrics().tool_names.learn(&self.info.route, name);
            }
            removed += filter_result(result, Listing::List, &self.policy);
        }
        let search = match matched {
            Some(expect) => expect == Expect::Search,
            None => self.search,
        } || result
            .get("structuredContent")
            .is_some_and(|s| s.get("tools").is_some());
        if search {
            removed += filter_result(result, Listing::Search, &self.policy);
        }
        removed
    }

    /// Removes and returns the forwarded request `id` answers, if any.
    pub fn take_expected(&mut self, id: &Value) -> Option<(Value, Expect)> {
        let at = self.expected.iter().position(|(e, _)| ids::same(e, id))?;
        Some(self.expected.remove(at))
    }

    /// The errors that answer in place of what could not be filtered: for the request
    /// `id` names when it is one still waiting, otherwise for every request still
    /// waiting (any of them may have been answered by what was withheld).
    pub fn fail_closed(&mut self, err: &ProxyError, id: Option<&Value>) -> Vec<Value> {
        tracing::warn!(route = %self.info.route, reason = err.kind(), "{err}");
        let answered: Vec<(Value, Expect)> = match id.and_then(|id| self.take_expected(id)) {
            Some(one) => vec![one],
            None => std::mem::take(&mut self.expected),
        };
        answered
            .iter()
            .map(|(id, _)| crate::exchange::error::error_object(id, err, Some(&self.info.route)))
            .collect()
    }

    /// Settles the pending call this response answers, if any.
    pub fn settle(&mut self, facts: &Facts, status: u16, response_bytes: u64) {
        if !facts.is_response() {
            return;
        }
        let Some(id) = &facts.id else { return };
        let Some(at) = self.calls.iter().position(|c| ids::same(&c.id, id)) else {
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
