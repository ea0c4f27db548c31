//! The MCP-aware layer of one route: sees each request before it is forwarded and each
//! response on its way back.
//!
//! Before: request validation (415 / -32700 / -32600), the rate and in-flight limits, the
//! method and tool policy (refused calls are answered here, batches element by element).
//! After: tool-call outcomes for the audit trail and metrics, and the tool policy applied
//! to answers that list tools (see `response.rs`). A route with none of this configured
//! (validation off, no policy, no limits, audit off, throttle awareness and the cache off)
//! costs one branch per request.
//!
//! The gateway's quota (`[route.traffic]`, `[route.shaping]`): a request for a tool or
//! method the gateway throttled is answered here until the window it gave ends
//! (`throttle.rs`; or held, in `hold` mode); the answers are watched for the gateway's
//! throttles and for `list_changed` notifications; tool budgets are taken here and the
//! route's budget when a request is about to go upstream (`admit_upstream`).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{request, response, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;
use smallvec::SmallVec;
use tokio::sync::OwnedSemaphorePermit;

use super::config::PolicyConfig;
use super::ids;
use super::limits::{InFlight, RateLimit};
use super::lists::Lists;
use super::mirrored::header_mismatch;
use super::policy::{method_problem, name_problem, MethodPolicy, ToolPolicy};
use super::response::{Kind, McpBody};
use super::shaping::Shaping;
use super::throttle::{retry_after_header, Subject, Throttled, Throttles};
use super::traffic::{ShapingConfig, TrafficConfig};
use super::watch::{Expect, PendingCall, Watch};
use crate::exchange::body::{self, ProxyBody};
use crate::exchange::context::{Recorder, RequestContext};
use crate::exchange::error::{error_object, ProxyError};
use crate::exchange::message::{self, Invalid, Message};
use crate::exchange::peek::RpcPeek;
use crate::ops::audit::AuditSink;

/// Per-route state of the layer, built with the route (and rebuilt on reload).
pub struct RouteLayer {
    route: Arc<str>,
    tools: Arc<ToolPolicy>,
    methods: MethodPolicy,
    validate: bool,
    log_arguments: bool,
    max_filter_bytes: usize,
    max_batch: usize,
    rate: Option<RateLimit>,
    in_flight: Option<InFlight>,
    audit: AuditSink,
    /// The gateway's throttle windows (throttle awareness).
    throttles: Arc<Throttles>,
    /// The route's own quota.
    shaping: Shaping,
    /// Told when a list changes (watched while the route caches list answers).
    lists: Option<Arc<Lists>>,
    /// Nothing configured: every request goes straight through.
    idle: bool,
}

/// What the layer learned from a request, carried to its response.
pub struct Inspection {
    watch: Option<Box<Watch>>,
    /// Calls the request makes (each a token of the route's shaping budget).
    calls: u32,
}

impl Inspection {
    fn none() -> Inspection {
        Inspection {
            watch: None,
            calls: 1,
        }
    }

    /// The answer this request gets is another request's (coalescing, the cache): the
    /// throttles it may carry were learned when it first came.
    pub fn shared(&mut self) {
        if let Some(watch) = &mut self.watch {
            watch.shared();
        }
    }
}

/// What to do with a request: the request hook's answer.
pub enum Verdict {
    /// Forward `payload` (the original body, or what is left of a batch).
    Forward {
        payload: Bytes,
        inspection: Inspection,
    },
    /// Answer the agent without contacting the gateway: every element of a batch (or the
    /// one message) refused, each already recorded.
    Answer(Response<ProxyBody>),
    /// Refuse the whole request with `err`; the request context answers and records it.
    Refuse {
        err: ProxyError,
        /// Whether the answer may echo the request's id(s).
        echo: Echo,
        /// The tool a refused `tools/call` named.
        tool: Option<String>,
    },
}

/// What a whole-request refusal's answer carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Echo {
    /// JSON-RPC errors with the request's id(s).
    Ids,
    /// One JSON-RPC error with a null id (the id cannot be told).
    NullId,
    /// A text answer (GET and DELETE).
    Text,
}

/// What the gateway did with a forwarded request: the response hook's input.
pub enum Upstream<'a> {
    /// It answered: the head (which the hook may change) and the body.
    Answered(&'a mut response::Parts, ProxyBody),
    /// No answer came.
    Failed(&'a ProxyError),
}

/// What the answer to one forwarded message needs.
struct Needs {
    /// It may list tools: the whole answer is filtered.
    may_list_tools: bool,
    expect: Expect,
    /// What a throttle in its answer would throttle (throttle awareness on).
    subject: Option<Throttled>,
}

impl Needs {
    fn quiet() -> Needs {
        Needs {
            may_list_tools: false,
            expect: Expect::Other,
            subject: None,
        }
    }

    fn listing(expect: Expect) -> Needs {
        Needs {
            may_list_tools: true,
            expect,
            subject: None,
        }
    }
}

/// Why one element of a batch is not forwarded.
struct ElementRefusal {
    err: ProxyError,
    id: Option<Value>,
}

impl RouteLayer {
    pub fn build(
        route: &str,
        policy: &PolicyConfig,
        traffic: &TrafficConfig,
        shaping: &ShapingConfig,
        audit: &AuditSink,
    ) -> Result<RouteLayer, String> {
        policy.validate()?;
        traffic.validate()?;
        let throttles = Arc::new(Throttles::new(
            route,
            traffic.throttle,
            traffic.throttle_hold_max,
            traffic.throttle_max_windows,
        ));
        let shaping = Shaping::new(route, shaping)?;
        let lists = traffic.cache.then(|| Arc::new(Lists::default()));
        let tools = Arc::new(ToolPolicy::new(policy)?);
        let methods = MethodPolicy::new(policy)?;
        let rate = (policy.requests_per_second > 0.0).then(|| {
            let burst = policy
                .burst
                .unwrap_or_else(|| policy.requests_per_second.ceil().max(1.0) as u32);
            RateLimit::new(policy.requests_per_second, burst)
        });
        let in_flight = (policy.max_in_flight > 0).then(|| InFlight::new(policy.max_in_flight));
        let idle = !policy.validate
            && !tools.is_active()
            && !methods.is_active()
            && rate.is_none()
            && in_flight.is_none()
            && !audit.enabled()
            && !throttles.is_on()
            && !shaping.is_active()
            && lists.is_none();
        Ok(RouteLayer {
            route: Arc::from(route),
            tools,
            methods,
            validate: policy.validate,
            log_arguments: policy.log_arguments,
            max_filter_bytes: usize::try_from(policy.max_filter_bytes).unwrap_or(usize::MAX),
            max_batch: policy.max_batch,
            rate,
            in_flight,
            audit: audit.clone(),
            throttles,
            shaping,
            lists,
            idle,
        })
    }

    /// The generation of the route's lists (see `lists.rs`); None when not watched.
    pub fn lists_generation(&self) -> Option<u64> {
        self.lists.as_ref().map(|l| l.generation())
    }

    /// In `throttle = "hold"` mode: how long the request waits before it is judged (the
    /// rest of a throttle window the gateway gave for what it asks, when short enough).
    pub fn hold_for(&self, post: Option<&Result<message::Body<'_>, Invalid>>) -> Option<Duration> {
        // Most of the time nothing is throttled: no parse of the call's params for it.
        if !self.throttles.may_hold() {
            return None;
        }
        let body = post?.as_ref().ok()?;
        if body.batch {
            return None;
        }
        let m = body.messages.first()?;
        m.id.as_ref()?;
        let method = m.method.as_deref()?;
        let tool = (method == "tools/call")
            .then(|| m.call_params().ok())
            .flatten();
        let subject = match &tool {
            Some(params) => Subject::Tool(&params.name),
            None => Subject::Method(method),
        };
        self.throttles.hold_for(subject)
    }

    /// A request is about to be sent upstream: the route's shaping budget pays for its
    /// calls (answers from coalescing or the cache never get here).
    pub fn admit_upstream(&self, inspection: Option<&Inspection>) -> Result<(), ProxyError> {
        self.shaping.admit_route(inspection.map_or(1, |i| i.calls))
    }

    /// Where this route's audit records go.
    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    /// For `check`: the tool policy in words.
    pub fn describe_tools(&self) -> String {
        self.tools.describe()
    }

    /// Whether the layer reads the gateway's answers (so they must come unencoded).
    pub fn reads_answers(&self) -> bool {
        !self.idle
    }

    /// The request hook: forward, forward part of a batch, answer, or refuse.
    /// `post` is the one parse of a POST's body (`message::read`), `None` for GET and
    /// DELETE; `rpc` the view of it; `context` the request's.
    pub fn on_request(
        &self,
        context: &RequestContext,
        head: &request::Parts,
        payload: Bytes,
        post: Option<Result<message::Body<'_>, Invalid>>,
        rpc: &RpcPeek,
    ) -> Verdict {
        let watches_streams = self.tools.is_active() || self.lists.is_some();
        let quiet_other = head.method != Method::POST
            && self.rate.is_none()
            && !(watches_streams && head.method == Method::GET);
        if self.idle || quiet_other {
            return Verdict::Forward {
                payload,
                inspection: Inspection::none(),
            };
        }
        let recorder = context.recorder();
        match post {
            Some(parsed) => self.inspect_post(head, payload, parsed, rpc, recorder),
            None => self.inspect_other(head, payload, recorder),
        }
    }

    /// GET and DELETE: the rate limit, and the policy for resumed streams.
    fn inspect_other(&self, head: &request::Parts, payload: Bytes, recorder: Recorder) -> Verdict {
        // A stream held open is not a call in flight: only the rate counts it.
        if let Err(err) = self.admit(1, false) {
            return Verdict::Refuse {
                err,
                echo: Echo::Text,
                tool: None,
            };
        }
        // A GET stream carries what the gateway chooses to send (and, resumed with
        // Last-Event-ID, replays answers to earlier requests): every answer listing tools
        // on it is filtered, and its list_changed notifications seen.
        let get = head.method == Method::GET;
        let watch = (get && (self.tools.is_active() || self.lists.is_some())).then(|| {
            let mut watch = self.watch(recorder, false);
            watch.filtering = self.tools.is_active();
            Box::new(watch)
        });
        Verdict::Forward {
            payload,
            inspection: Inspection { watch, calls: 1 },
        }
    }

    fn inspect_post(
        &self,
        head: &request::Parts,
        payload: Bytes,
        parsed: Result<message::Body<'_>, Invalid>,
        rpc: &RpcPeek,
        recorder: Recorder,
    ) -> Verdict {
        let policy_on = self.tools.is_active() || self.methods.is_active();
        if self.validate {
            if let Some(err) = unsupported_media_type(head) {
                return refuse_whole(err, Echo::Ids, None);
            }
        }
        let body = match parsed {
            Ok(body) => body,
            // Without validation and policy the gateway judges what it gets. A policy
            // cannot be applied to what cannot be read, so it refuses it (fail closed).
            Err(_) if !self.validate && !policy_on => {
                return self.forward_unread(payload, recorder);
            }
            Err(Invalid::NotJson(why)) => {
                return refuse_whole(ProxyError::ParseError(why), Echo::NullId, None)
            }
            Err(Invalid::NotJsonRpc(why)) => {
                // Echo the id only when it is one (JSON-RPC: null when it cannot be told).
                let id_ok = matches!(rpc, RpcPeek::Single(m)
                    if m.id.as_ref().is_some_and(|id| id.is_string() || id.is_number()));
                let echo = if id_ok { Echo::Ids } else { Echo::NullId };
                return refuse_whole(ProxyError::InvalidRequest(why), echo, None);
            }
        };
        // The tool a single call names, for the record of a whole-request refusal: read
        // only when there is one (a second parse of the call's params).
        let single_tool = || {
            let m = body.messages.first().filter(|_| !body.batch)?;
            (m.method.as_deref() == Some("tools/call"))
                .then(|| m.call_params().ok().map(|p| p.name.into_owned()))
                .flatten()
        };
        let refuse = |err| refuse_whole(err, Echo::Ids, single_tool());
        if let Some(err) = self.shape_problem(&body) {
            return refuse(err);
        }
        if policy_on {
            if let Some(err) = header_mismatch(head, &body) {
                return refuse(err);
            }
        }
        let calls = body.messages.iter().filter(|m| m.method.is_some()).count();
        let permit = match self.admit(u32::try_from(calls).unwrap_or(u32::MAX), true) {
            Ok(permit) => permit,
            Err(err) => return refuse(err),
        };

        let mut watch = self.watch(recorder, body.batch);
        watch.permit = permit;
        // Which messages were refused (none, usually: then nothing is allocated).
        let mut refused_at: Vec<usize> = Vec::new();
        let mut refusals: Vec<Box<ElementRefusal>> = Vec::new();
        for (at, m) in body.messages.iter().enumerate() {
            match self.judge(m, &mut watch) {
                Ok(needs) => {
                    if let (Some(id), Some(subject)) = (&m.id, needs.subject) {
                        watch.subjects.push((id.clone(), subject));
                    }
                    if self.tools.is_active() {
                        watch.filtering |= needs.may_list_tools;
                        watch.search |= needs.expect == Expect::Search;
                        if let Some(id) = &m.id {
                            watch.expected.push((id.clone(), needs.expect));
                        }
                    }
                }
                Err(refusal) => {
                    refused_at.push(at);
                    refusals.push(refusal);
                }
            }
        }
        let kept = || {
            body.messages
                .iter()
                .enumerate()
                // Pushed in order, so sorted: a batch of any size is judged in
                // O(n log n).
                .filter(|(at, _)| refused_at.binary_search(at).is_err())
                .map(|(_, m)| m)
        };
        if !watch.filtering {
            // Only answers that are filtered need to know what they answer.
            watch.expected.clear();
        }
        let calls =
            u32::try_from(kept().filter(|m| m.method.is_some()).count()).unwrap_or(u32::MAX);
        if refusals.is_empty() {
            return Verdict::Forward {
                payload,
                inspection: self.inspection(watch, calls),
            };
        }
        let errors: Vec<Value> = refusals
            .iter()
            .filter_map(|r| {
                r.id.as_ref()
                    .map(|id| error_object(id, &r.err, Some(&self.route)))
            })
            .collect();
        if kept().next().is_none() {
            // One request answered with a throttle: its status and Retry-After too.
            let retry = match refusals.as_slice() {
                [one] if !body.batch => match &one.err {
                    err @ (ProxyError::GatewayThrottled { retry_after, .. }
                    | ProxyError::Shaped { retry_after, .. }) => Some((err.status(), *retry_after)),
                    _ => None,
                },
                _ => None,
            };
            return Verdict::Answer(answer_errors(errors, body.batch, retry));
        }
        // Part of a batch goes on; the gateway's answer gets the errors merged in.
        watch.extras = errors;
        Verdict::Forward {
            payload: Bytes::from(message::rebatch(&kept().collect::<Vec<_>>())),
            inspection: self.inspection(watch, calls),
        }
    }

    /// Applies the method and tool policy to one message; notes what its answer needs.
    fn judge(&self, m: &Message<'_>, watch: &mut Watch) -> Result<Needs, Box<ElementRefusal>> {
        let Some(method) = m.method.as_deref() else {
            // The agent answering a gateway request: nothing comes back for it.
            return Ok(Needs::quiet());
        };
        let refuse = |err: ProxyError, tool: Option<&str>, arguments| {
            watch
                .recorder
                .refused(&err, m.id.as_ref(), method, tool, arguments);
            Err(Box::new(ElementRefusal {
                err,
                id: m.id.clone(),
            }))
        };
        let policy_on = self.tools.is_active() || self.methods.is_active();
        // A method that imitates an MCP method by spelling: a lenient gateway would run it
        // as the method it resembles, outside the policy's view.
        if !self.methods.allows(method) || (policy_on && method_problem(method).is_some()) {
            return refuse(
                ProxyError::MethodRefused {
                    method: method.to_string(),
                },
                None,
                None,
            );
        }
        match method {
            "tools/call" => {
                let params = match m.call_params() {
                    Ok(p) => p,
                    Err(why) if self.tools.is_active() => {
                        return refuse(ProxyError::InvalidParams(why), None, None)
                    }
                    Err(_) => return Ok(Needs::quiet()),
                };
                let arguments = params
                    .arguments
                    .filter(|_| self.log_arguments)
                    .map(crate::ops::audit::compact);
                if self.tools.is_active() {
                    if let Some(problem) = name_problem(&params.name) {
                        return refuse(
                            ProxyError::InvalidParams(format!(
                                "{problem}: {:?} is not a tool name this route accepts",
                                params.name
                            )),
                            Some(&params.name),
                            arguments,
                        );
                    }
                }
                if !self.tools.allows(&params.name) {
                    return refuse(
                        ProxyError::ToolRefused {
                            tool: params.name.to_string(),
                        },
                        Some(&params.name),
                        arguments,
                    );
                }
                if m.id.is_some() {
                    // The gateway throttled this tool and the window is open, or the
                    // route's own budget for it is spent: answered like the gateway.
                    if let Some(err) = self.throttled(Subject::Tool(&params.name)) {
                        return refuse(err, Some(&params.name), arguments);
                    }
                    if let Err(err) = self.shaping.admit_tool(&params.name) {
                        return refuse(err, Some(&params.name), arguments);
                    }
                }
                let search = ToolPolicy::is_search(&params.name);
                let tool: Arc<str> = Arc::from(&*params.name);
                let subject = self
                    .throttles
                    .is_on()
                    .then(|| Throttled::Tool(tool.clone()));
                if let Some(id) = &m.id {
                    watch.calls.push(PendingCall {
                        id: id.clone(),
                        tool,
                        arguments,
                    });
                }
                let mut needs = if search {
                    Needs::listing(Expect::Search)
                } else {
                    Needs::quiet()
                };
                needs.subject = subject;
                Ok(needs)
            }
            _ if m.id.is_none() => Ok(Needs::quiet()), // a notification
            _ => {
                if let Some(err) = self.throttled(Subject::Method(method)) {
                    return refuse(err, None, None);
                }
                self.judged(method, self.needs(m, method))
            }
        }
    }

    /// What the answer to a request for `method` (not `tools/call`) needs.
    fn needs(&self, m: &Message<'_>, method: &str) -> Result<Needs, Box<ElementRefusal>> {
        match method {
            "tools/list" => Ok(Needs::listing(Expect::List)),
            // Answers that never describe tools.
            "ping"
            | "initialize"
            | "resources/read"
            | "resources/subscribe"
            | "resources/unsubscribe"
            | "prompts/get"
            | "completion/complete"
            | "logging/setLevel" => Ok(Needs::quiet()),
            _ if m.id.is_none() => Ok(Needs::quiet()), // a notification
            // Anything else (other lists, methods of later MCP versions, vendor methods):
            // its answer is not known to be free of tools, so it is filtered.
            _ => Ok(Needs::listing(Expect::Other)),
        }
    }

    /// Notes what a forwarded request (not `tools/call`) was for, when the route watches
    /// for throttles.
    fn judged(
        &self,
        method: &str,
        needs: Result<Needs, Box<ElementRefusal>>,
    ) -> Result<Needs, Box<ElementRefusal>> {
        needs.map(|mut n| {
            if self.throttles.is_on() {
                n.subject = Some(Throttled::Method(method.into()));
            }
            n
        })
    }

    /// The gateway's throttle for `subject`, while the window it gave is open.
    fn throttled(&self, subject: Subject<'_>) -> Option<ProxyError> {
        let open = self.throttles.open(subject)?;
        self.throttles.answered_locally();
        Some(ProxyError::GatewayThrottled {
            retry_after: open.left,
            limit_key: open.limit_key,
            status: open.status,
        })
    }

    /// A body whose shape would let answers be mistaken for one another, or that costs
    /// more than one request should: refused whole.
    fn shape_problem(&self, body: &message::Body<'_>) -> Option<ProxyError> {
        if body.messages.len() > self.max_batch {
            return Some(ProxyError::InvalidRequest(format!(
                "a batch of {} messages; this route accepts at most {} (policy.max_batch)",
                body.messages.len(),
                self.max_batch
            )));
        }
        let ids = || body.messages.iter().filter_map(|m| m.id.as_ref());
        if let Some(long) = ids().find(|id| ids::text_len(id) > ids::MAX_ID_BYTES) {
            return Some(ProxyError::InvalidRequest(format!(
                "a request id of {} bytes; ids may be at most {} bytes",
                ids::text_len(long),
                ids::MAX_ID_BYTES
            )));
        }
        // Responses the agent sends carry the gateway's ids, not its own: only requests
        // count.
        let requests = body
            .messages
            .iter()
            .filter(|m| m.method.is_some())
            .filter_map(|m| m.id.as_ref());
        if let Some(twice) = ids::first_duplicate(requests) {
            return Some(ProxyError::InvalidRequest(format!(
                "the id {twice} is used twice in one batch; each request needs an id of its own"
            )));
        }
        None
    }

    fn watch(&self, recorder: Recorder, batch: bool) -> Watch {
        Watch {
            recorder,
            calls: SmallVec::new(),
            policy: self.tools.clone(),
            filtering: false,
            search: false,
            expected: Vec::new(),
            extras: Vec::new(),
            batch,
            max_filter_bytes: self.max_filter_bytes,
            permit: None,
            throttles: self.throttles.is_on().then(|| self.throttles.clone()),
            subjects: SmallVec::new(),
            lists: self.lists.clone(),
        }
    }

    fn inspection(&self, watch: Watch, calls: u32) -> Inspection {
        Inspection {
            watch: watch.is_needed().then(|| Box::new(watch)),
            calls,
        }
    }

    /// The rate and in-flight limits, checked in one place for every request the layer
    /// sees: `calls` rate tokens (one per call: a batch of 500 calls is 500 calls) and,
    /// when `in_flight` counts the request, a permit held until its answer ends. The
    /// permit (if the route has the limit), or the refusal.
    fn admit(
        &self,
        calls: u32,
        in_flight: bool,
    ) -> Result<Option<OwnedSemaphorePermit>, ProxyError> {
        if let Some(rate) = &self.rate {
            if calls > rate.burst() {
                return Err(ProxyError::InvalidRequest(format!(
                    "a batch of {calls} calls is more than this route's rate limit allows at once (policy.burst = {})",
                    rate.burst()
                )));
            }
            rate.try_acquire_n(calls)
                .map_err(|retry_after| ProxyError::RateLimited { retry_after })?;
        }
        match &self.in_flight {
            Some(limit) if in_flight => {
                limit
                    .try_acquire()
                    .map(Some)
                    .ok_or(ProxyError::ConcurrencyLimited {
                        limit: limit.limit(),
                    })
            }
            _ => Ok(None),
        }
    }

    /// Validation and policy off, body unreadable: forwarded with only the limits applied.
    fn forward_unread(&self, payload: Bytes, recorder: Recorder) -> Verdict {
        let mut watch = self.watch(recorder, false);
        match self.admit(1, true) {
            Ok(permit) => watch.permit = permit,
            Err(err) => return refuse_whole(err, Echo::NullId, None),
        }
        Verdict::Forward {
            payload,
            inspection: self.inspection(watch, 1),
        }
    }

    /// The response hook: the body to stream back (possibly filtered) when the gateway
    /// answered; when it did not, the calls still waiting are recorded as failed.
    pub fn on_response(&self, inspection: Inspection, upstream: Upstream<'_>) -> Option<ProxyBody> {
        let (parts, body) = match upstream {
            Upstream::Answered(parts, body) => (parts, body),
            Upstream::Failed(err) => {
                if let Some(mut watch) = inspection.watch {
                    watch.failed(err);
                }
                return None;
            }
        };
        let Some(mut watch) = inspection.watch else {
            return Some(body);
        };
        // The gateway's throttle in HTTP form: 429 (or 503) with Retry-After.
        if matches!(parts.status.as_u16(), 429 | 503) {
            if let Some(wait) = parts.headers.get(RETRY_AFTER).and_then(retry_after_header) {
                watch.throttled_by_status(wait);
            }
        }
        let is_sse = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let encoded = parts
            .headers
            .get(CONTENT_ENCODING)
            .is_some_and(|v| !v.as_bytes().eq_ignore_ascii_case(b"identity"));
        let kind = if !parts.status.is_success() {
            Kind::Error
        } else if encoded {
            Kind::Encoded
        } else if is_sse {
            Kind::Sse
        } else {
            Kind::Json
        };
        let withheld = matches!(kind, Kind::Encoded) && watch.filtering();
        if withheld {
            // Replaced whole by JSON-RPC errors (see McpBody::new).
            parts.headers.remove(CONTENT_ENCODING);
            parts.headers.remove(CONTENT_LENGTH);
            parts
                .headers
                .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let rewrites = matches!(kind, Kind::Json | Kind::Sse)
            && (watch.filtering() || !watch.extras.is_empty());
        if rewrites {
            parts.headers.remove(CONTENT_LENGTH);
            if matches!(kind, Kind::Json) && parts.status == StatusCode::ACCEPTED {
                // Only notifications went on; the refused elements still need answers.
                parts.status = StatusCode::OK;
                parts
                    .headers
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
        }
        let status = parts.status.as_u16();
        Some(http_body_util::BodyExt::boxed_unsync(McpBody::new(
            body, watch, status, kind,
        )))
    }
}

/// A whole-request refusal, which the request context answers and records.
fn refuse_whole(err: ProxyError, echo: Echo, tool: Option<String>) -> Verdict {
    Verdict::Refuse { err, echo, tool }
}

/// The answer when every element of the request was refused; `retry` the status and
/// `Retry-After` of a single request answered with a throttle.
fn answer_errors(
    mut errors: Vec<Value>,
    batch: bool,
    retry: Option<(StatusCode, Duration)>,
) -> Response<ProxyBody> {
    let (status, body) = match errors.len() {
        // Only notifications, all refused: nothing to answer them with.
        0 => (StatusCode::ACCEPTED, body::empty()),
        1 if !batch => (
            StatusCode::OK,
            body::full(errors.pop().unwrap_or(Value::Null).to_string()),
        ),
        _ => (StatusCode::OK, body::full(Value::Array(errors).to_string())),
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    if status == StatusCode::OK {
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    }
    if let Some((throttle_status, wait)) = retry.filter(|_| status == StatusCode::OK) {
        *response.status_mut() = throttle_status;
        let secs = (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1);
        response
            .headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

/// POSTs must carry JSON (`application/json`, parameters allowed).
fn unsupported_media_type(head: &request::Parts) -> Option<ProxyError> {
    let value = head.headers.get(CONTENT_TYPE);
    let text = value.and_then(|v| v.to_str().ok()).unwrap_or("");
    let essence = text.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/json") {
        return None;
    }
    Some(ProxyError::UnsupportedMediaType {
        content_type: if value.is_none() {
            "(none)".into()
        } else {
            text.to_string()
        },
    })
}
