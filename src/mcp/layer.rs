//! The MCP-aware layer of one route: sees each request before it is forwarded and each
//! response on its way back.
//!
//! Before: request validation (415 / -32700 / -32600), the rate and in-flight limits, the
//! method and tool policy (refused calls are answered here, batches element by element).
//! After: tool-call outcomes for the audit trail and metrics, and the tool policy applied
//! to answers that list tools (see `response.rs`). A route with none of this configured
//! (validation off, no policy, no limits, audit off) costs one branch per request.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{request, response, HeaderValue, Method, Response, StatusCode};
use serde_json::Value;

use super::config::PolicyConfig;
use super::limits::{InFlight, RateLimit};
use super::message::{self, Invalid, Message};
use super::peek::RpcPeek;
use super::policy::{MethodPolicy, ToolPolicy, SEARCH_TOOL};
use super::response::{Kind, McpBody};
use super::tools_filter::Listing;
use super::watch::{PendingCall, RequestInfo, Watch};
use crate::audit::AuditSink;
use crate::body::{self, ProxyBody};
use crate::error::{error_object, respond, Answer, ProxyError};

/// Per-route state of the layer, built with the route (and rebuilt on reload).
pub struct RouteLayer {
    route: Arc<str>,
    tools: Arc<ToolPolicy>,
    methods: MethodPolicy,
    validate: bool,
    log_arguments: bool,
    max_filter_bytes: usize,
    rate: Option<RateLimit>,
    in_flight: Option<InFlight>,
    audit: AuditSink,
    /// Nothing configured: every request goes straight through.
    idle: bool,
}

/// What the layer learned from a request, carried to its response.
pub struct Inspection {
    watch: Option<Box<Watch>>,
}

impl Inspection {
    fn none() -> Inspection {
        Inspection { watch: None }
    }
}

/// What to do with a request.
pub enum Verdict {
    /// Forward `payload` (the original body, or what is left of a batch).
    Forward {
        payload: Bytes,
        inspection: Inspection,
    },
    /// Answer the agent without contacting the gateway.
    Answer(Response<ProxyBody>),
}

/// Why one element of a batch is not forwarded.
struct Refusal {
    err: ProxyError,
    id: Option<Value>,
}

impl RouteLayer {
    pub fn build(
        route: &str,
        policy: &PolicyConfig,
        audit: &AuditSink,
    ) -> Result<RouteLayer, String> {
        policy.validate()?;
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
            && !audit.enabled();
        Ok(RouteLayer {
            route: Arc::from(route),
            tools,
            methods,
            validate: policy.validate,
            log_arguments: policy.log_arguments,
            max_filter_bytes: usize::try_from(policy.max_filter_bytes).unwrap_or(usize::MAX),
            rate,
            in_flight,
            audit: audit.clone(),
            idle,
        })
    }

    /// For `check`: the tool policy in words.
    pub fn describe_tools(&self) -> String {
        self.tools.describe()
    }

    pub fn inspect(&self, head: &request::Parts, payload: Bytes, rpc: &RpcPeek) -> Verdict {
        let quiet_other = head.method != Method::POST
            && self.rate.is_none()
            && !(self.tools.is_active() && head.headers.contains_key("last-event-id"));
        if self.idle || quiet_other {
            return Verdict::Forward {
                payload,
                inspection: Inspection::none(),
            };
        }
        let info = RequestInfo {
            route: self.route.clone(),
            audit: self.audit.clone(),
            session: session_of(head),
            started: Instant::now(),
            request_bytes: payload.len() as u64,
        };
        if head.method == Method::POST {
            self.inspect_post(head, payload, rpc, info)
        } else {
            self.inspect_other(head, payload, info)
        }
    }

    /// GET and DELETE: the rate limit, and the policy for resumed streams.
    fn inspect_other(&self, head: &request::Parts, payload: Bytes, info: RequestInfo) -> Verdict {
        if let Some(rate) = &self.rate {
            if let Err(retry_after) = rate.try_acquire() {
                let err = ProxyError::RateLimited { retry_after };
                info.refused(&err, None, head.method.as_str(), None, None);
                return Verdict::Answer(respond(&err, Some(&self.route), Answer::Text));
            }
        }
        // A GET with Last-Event-ID resumes a stream that may replay a tools/list answer;
        // its request id is not known here, so every answer listing tools is filtered.
        let resumed = head.method == Method::GET && head.headers.contains_key("last-event-id");
        let watch = (resumed && self.tools.is_active()).then(|| {
            let mut watch = self.watch(info, false);
            watch.filter_any = true;
            Box::new(watch)
        });
        Verdict::Forward {
            payload,
            inspection: Inspection { watch },
        }
    }

    fn inspect_post(
        &self,
        head: &request::Parts,
        payload: Bytes,
        rpc: &RpcPeek,
        info: RequestInfo,
    ) -> Verdict {
        let policy_on = self.tools.is_active() || self.methods.is_active();
        if self.validate {
            if let Some(err) = unsupported_media_type(head) {
                return self.refuse_whole(&info, rpc, None, err);
            }
        }
        let parsed = message::parse(&payload);
        let body = match parsed {
            Ok(body) => body,
            // Without validation and policy the gateway judges what it gets. A policy
            // cannot be applied to what cannot be read, so it refuses it (fail closed).
            Err(_) if !self.validate && !policy_on => {
                return self.forward_unread(payload, info);
            }
            Err(Invalid::NotJson(why)) => {
                return self.refuse_whole(
                    &info,
                    &RpcPeek::Unreadable,
                    None,
                    ProxyError::ParseError(why),
                )
            }
            Err(Invalid::NotJsonRpc(why)) => {
                // Echo the id only when it is one (JSON-RPC: null when it cannot be told).
                let id_ok = matches!(rpc, RpcPeek::Single(m)
                    if m.id.as_ref().is_some_and(|id| id.is_string() || id.is_number()));
                let rpc = if id_ok { rpc } else { &RpcPeek::Unreadable };
                return self.refuse_whole(&info, rpc, None, ProxyError::InvalidRequest(why));
            }
        };
        let first = body.messages.first();
        let call_name = |m: &Message<'_>| {
            (m.method.as_deref() == Some("tools/call"))
                .then(|| m.call_params().ok().map(|p| p.name.into_owned()))
                .flatten()
        };
        let single_tool = (!body.batch).then(|| first.and_then(call_name)).flatten();
        let single_method = if body.batch {
            "batch".to_string()
        } else {
            first
                .and_then(|m| m.method.as_deref())
                .unwrap_or("response")
                .to_string()
        };
        let single_id = (!body.batch)
            .then(|| first.and_then(|m| m.id.clone()))
            .flatten();
        if let Some(rate) = &self.rate {
            if let Err(retry_after) = rate.try_acquire() {
                let err = ProxyError::RateLimited { retry_after };
                return self.refuse_whole_as(
                    &info,
                    rpc,
                    &single_method,
                    single_id.as_ref(),
                    single_tool.as_deref(),
                    err,
                );
            }
        }
        let permit = match &self.in_flight {
            None => None,
            Some(limit) => match limit.try_acquire() {
                Some(permit) => Some(permit),
                None => {
                    let err = ProxyError::ConcurrencyLimited {
                        limit: limit.limit(),
                    };
                    return self.refuse_whole_as(
                        &info,
                        rpc,
                        &single_method,
                        single_id.as_ref(),
                        single_tool.as_deref(),
                        err,
                    );
                }
            },
        };

        let mut watch = self.watch(info, body.batch);
        watch.permit = permit;
        let mut kept: Vec<&Message<'_>> = Vec::with_capacity(body.messages.len());
        let mut refusals: Vec<Box<Refusal>> = Vec::new();
        for m in &body.messages {
            match self.judge(m, &mut watch) {
                Ok(()) => kept.push(m),
                Err(refusal) => refusals.push(refusal),
            }
        }
        if refusals.is_empty() {
            return Verdict::Forward {
                payload,
                inspection: self.inspection(watch),
            };
        }
        let errors: Vec<Value> = refusals
            .iter()
            .filter_map(|r| {
                r.id.as_ref()
                    .map(|id| error_object(id, &r.err, Some(&self.route)))
            })
            .collect();
        if kept.is_empty() {
            return Verdict::Answer(answer_errors(errors, body.batch));
        }
        // Part of a batch goes on; the gateway's answer gets the errors merged in.
        watch.extras = errors;
        Verdict::Forward {
            payload: Bytes::from(message::rebatch(&kept)),
            inspection: self.inspection(watch),
        }
    }

    /// Applies the method and tool policy to one message; notes what its answer needs.
    fn judge(&self, m: &Message<'_>, watch: &mut Watch) -> Result<(), Box<Refusal>> {
        let Some(method) = m.method.as_deref() else {
            return Ok(()); // the agent answering a gateway request
        };
        let refuse = |err: ProxyError, tool: Option<&str>, arguments| {
            watch
                .info
                .refused(&err, m.id.as_ref(), method, tool, arguments);
            Err(Box::new(Refusal {
                err,
                id: m.id.clone(),
            }))
        };
        if !self.methods.allows(method) {
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
                    Err(_) => return Ok(()),
                };
                let arguments = params
                    .arguments
                    .filter(|_| self.log_arguments)
                    .map(|raw| raw.to_owned());
                if !self.tools.allows(&params.name) {
                    return refuse(
                        ProxyError::ToolRefused {
                            tool: params.name.to_string(),
                        },
                        Some(&params.name),
                        arguments,
                    );
                }
                if let Some(id) = &m.id {
                    if self.tools.is_active() && params.name == SEARCH_TOOL {
                        watch.targets.push((id.clone(), Listing::Search));
                    }
                    watch.calls.push(PendingCall {
                        id: id.clone(),
                        tool: params.name.into_owned(),
                        arguments,
                    });
                }
            }
            "tools/list" if self.tools.is_active() => {
                if let Some(id) = &m.id {
                    watch.targets.push((id.clone(), Listing::List));
                }
            }
            _ => {}
        }
        Ok(())
    }

    fn watch(&self, info: RequestInfo, batch: bool) -> Watch {
        Watch {
            info,
            calls: Vec::new(),
            policy: self.tools.clone(),
            targets: Vec::new(),
            filter_any: false,
            extras: Vec::new(),
            batch,
            max_filter_bytes: self.max_filter_bytes,
            permit: None,
        }
    }

    fn inspection(&self, watch: Watch) -> Inspection {
        Inspection {
            watch: watch.is_needed().then(|| Box::new(watch)),
        }
    }

    /// Validation and policy off, body unreadable: forwarded with only the limits applied.
    fn forward_unread(&self, payload: Bytes, info: RequestInfo) -> Verdict {
        let mut watch = self.watch(info, false);
        if let Some(rate) = &self.rate {
            if let Err(retry_after) = rate.try_acquire() {
                let err = ProxyError::RateLimited { retry_after };
                return self.refuse_whole_as(
                    &watch.info,
                    &RpcPeek::Unreadable,
                    "-",
                    None,
                    None,
                    err,
                );
            }
        }
        if let Some(limit) = &self.in_flight {
            match limit.try_acquire() {
                Some(permit) => watch.permit = Some(permit),
                None => {
                    let err = ProxyError::ConcurrencyLimited {
                        limit: limit.limit(),
                    };
                    return self.refuse_whole_as(
                        &watch.info,
                        &RpcPeek::Unreadable,
                        "-",
                        None,
                        None,
                        err,
                    );
                }
            }
        }
        Verdict::Forward {
            payload,
            inspection: self.inspection(watch),
        }
    }

    fn refuse_whole(
        &self,
        info: &RequestInfo,
        rpc: &RpcPeek,
        tool: Option<&str>,
        err: ProxyError,
    ) -> Verdict {
        let (method, id) = match rpc {
            RpcPeek::Single(m) => (m.method.as_deref().unwrap_or("-"), m.id.as_ref()),
            RpcPeek::Batch(_) => ("batch", None),
            RpcPeek::Unreadable => ("-", None),
        };
        self.refuse_whole_as(info, rpc, method, id, tool, err)
    }

    /// Refuses the whole request: one audit record, the answer `respond` makes.
    fn refuse_whole_as(
        &self,
        info: &RequestInfo,
        rpc: &RpcPeek,
        method: &str,
        id: Option<&Value>,
        tool: Option<&str>,
        err: ProxyError,
    ) -> Verdict {
        info.refused(&err, id, method, tool, None);
        Verdict::Answer(respond(&err, Some(&self.route), Answer::JsonRpc(rpc)))
    }

    /// The upstream answered: returns the body to stream back (possibly filtered).
    pub fn respond(
        &self,
        inspection: Inspection,
        parts: &mut response::Parts,
        body: ProxyBody,
    ) -> ProxyBody {
        let Some(watch) = inspection.watch else {
            return body;
        };
        let watch = *watch;
        let is_sse = parts
            .headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let kind = if !parts.status.is_success() {
            Kind::Error
        } else if is_sse {
            Kind::Sse
        } else {
            Kind::Json
        };
        let rewrites =
            !matches!(kind, Kind::Error) && (watch.filtering() || !watch.extras.is_empty());
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
        http_body_util::BodyExt::boxed_unsync(McpBody::new(body, watch, status, kind))
    }

    /// For refusals made before `inspect` (body over the limit, body not received): the
    /// audit record and `refused` metric the layer keeps for its own refusals.
    pub fn refused_before(&self, head: &request::Parts, rpc: &RpcPeek, err: &ProxyError) {
        if self.idle {
            return;
        }
        let info = RequestInfo {
            route: self.route.clone(),
            audit: self.audit.clone(),
            session: session_of(head),
            started: Instant::now(),
            request_bytes: 0,
        };
        let (method, id) = match rpc {
            RpcPeek::Single(m) => (m.method.as_deref().unwrap_or("-"), m.id.as_ref()),
            RpcPeek::Batch(_) => ("batch", None),
            RpcPeek::Unreadable => (head.method.as_str(), None),
        };
        // The proxy counts these refusals in its metrics; the layer adds the audit line.
        info.audit_refusal(err, id, method, None, None);
    }

    /// The request failed before the upstream answered.
    pub fn failed(&self, inspection: Inspection, err: &ProxyError) {
        if let Some(mut watch) = inspection.watch {
            watch.failed(err);
        }
    }
}

fn session_of(head: &request::Parts) -> Option<String> {
    head.headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The answer when every element of the request was refused.
fn answer_errors(mut errors: Vec<Value>, batch: bool) -> Response<ProxyBody> {
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
