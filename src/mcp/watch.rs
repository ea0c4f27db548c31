//! What the MCP layer carries from a request to its response: the tools/calls waiting
//! for an outcome (audit records, metrics), the answers the tool policy must filter, the
//! errors for refused batch elements still to be delivered, and the in-flight permit.

use std::sync::Arc;

use serde_json::value::RawValue;
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::OwnedSemaphorePermit;

use super::ids;
use super::lists::Lists;
use super::policy::ToolPolicy;
use super::probe::Facts;
use super::throttle::{retry_after_seconds, Throttled, Throttles};
use super::tools_filter::{filter_result, listed_names, Listing};
use crate::exchange::context::{CallEnding, Recorder};
use crate::exchange::error::{ProxyError, GATEWAY_THROTTLE_CODE};
use crate::ops::audit::Outcome;
use crate::ops::metrics::metrics;

/// A forwarded tools/call waiting for its outcome.
pub struct PendingCall {
    pub id: Value,
    pub tool: Arc<str>,
    pub arguments: Option<Box<RawValue>>,
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
    /// Writes this request's audit records (see `exchange::context`).
    pub recorder: Recorder,
    /// One call inline: a single `tools/call` (the usual request) allocates no list.
    pub calls: SmallVec<[PendingCall; 1]>,
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
    /// Where the gateway's throttles are remembered (throttle awareness on).
    pub throttles: Option<Arc<Throttles>>,
    /// The forwarded requests by id and what each was for, to tell what a throttle
    /// answer throttled.
    pub subjects: SmallVec<[(Value, Throttled); 1]>,
    /// The route's lists, told when a `list_changed` notification passes.
    pub lists: Option<Arc<Lists>>,
}

impl Watch {
    /// True when the response needs watching at all.
    pub fn is_needed(&self) -> bool {
        !self.calls.is_empty()
            || self.filtering
            || !self.extras.is_empty()
            || self.permit.is_some()
            || !self.subjects.is_empty()
            || self.lists.is_some()
    }

    /// What the layer learns from any message of an answer: a throttle of a forwarded
    /// request (JSON-RPC `-32003` with `data.retryAfter`), or a list that changed.
    fn observe(&mut self, facts: &Facts, status: u16) {
        if facts.list_changed {
            if let Some(lists) = &self.lists {
                lists.changed();
            }
        }
        let throttle = facts.is_response()
            && facts.error_code == Some(GATEWAY_THROTTLE_CODE)
            && facts.retry_after.is_some();
        let Some(throttles) = self.throttles.as_ref().filter(|_| throttle) else {
            return;
        };
        let Some(retry_after) = facts.retry_after.and_then(retry_after_seconds) else {
            return;
        };
        // The request the answer names; a lone request also when the id was written
        // back in another spelling.
        let at = facts
            .id
            .as_ref()
            .and_then(|id| self.subjects.iter().position(|(s, _)| ids::same(s, id)))
            .or_else(|| (self.subjects.len() == 1).then_some(0));
        if let Some(at) = at {
            let (_, subject) = self.subjects.swap_remove(at);
            // The JSON-RPC form comes in a 2xx answer: the proxy answers with 200 too.
            let status = if (200..300).contains(&status) {
                200
            } else {
                429
            };
            throttles.record(subject, retry_after, facts.limit_key.clone(), status);
        }
    }

    /// The gateway answered HTTP 429 (or 503) with `Retry-After`: everything this
    /// request was for is throttled for that long.
    pub fn throttled_by_status(&mut self, retry_after: std::time::Duration) {
        let Some(throttles) = &self.throttles else {
            return;
        };
        for (_, subject) in std::mem::take(&mut self.subjects) {
            throttles.record(subject, retry_after, None, 429);
        }
    }

    /// This answer is another request's (coalescing, the cache): what it says was
    /// already learned when it first came.
    pub fn shared(&mut self) {
        self.subjects.clear();
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
                metrics().tool_names.learn(&self.recorder.route, name);
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
        tracing::warn!(route = %self.recorder.route, reason = err.kind(), "{err}");
        let answered: Vec<(Value, Expect)> = match id.and_then(|id| self.take_expected(id)) {
            Some(one) => vec![one],
            None => std::mem::take(&mut self.expected),
        };
        answered
            .iter()
            .map(|(id, _)| {
                crate::exchange::error::error_object(id, err, Some(&self.recorder.route))
            })
            .collect()
    }

    /// Settles the pending call this response answers, if any.
    pub fn settle(&mut self, facts: &Facts, status: u16, response_bytes: u64) {
        self.observe(facts, status);
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
                // The gateway's throttle, told apart in the audit trail.
                reason: (facts.error_code == Some(GATEWAY_THROTTLE_CODE)
                    && facts.retry_after.is_some())
                .then(|| "gateway_throttled".to_string()),
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
        self.recorder.call_ended(
            call.id,
            &call.tool,
            CallEnding {
                outcome: ending.outcome,
                error_code: ending.error_code,
                reason: ending.reason,
                status: ending.status,
                response_bytes: ending.response_bytes,
                arguments: call.arguments,
            },
        );
    }
}
