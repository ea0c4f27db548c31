//! The one error type of the request path and the one function that turns it into what
//! the agent sees. Every refusal in the proxy is a variant here.
//!
//! | variant | HTTP | JSON-RPC code (POST) |
//! |---|---|---|
//! | `AbsoluteForm` | 400 | text |
//! | `ConnectMethod`, `MethodNotAllowed` | 405 + `Allow` | text |
//! | `UnknownRoute` | 404 | text |
//! | `BodyTooLarge` | 413 | -31006 |
//! | `BodyIncomplete` | 400 | -31008 |
//! | `Dns` | 503 | -31003 |
//! | `NotPrivate` | 502 | -31002 |
//! | `Unreachable` | 502 | -31000 |
//! | `Tls` | 502 | -31004 |
//! | `Credential` | 503 | -31005 |
//! | `ResponseTimeout` | 504 | -31001 |
//! | `Upstream` | 502 | -31007 |
//! | `ToolRefused` | 200 | -31010 |
//! | `MethodRefused` | 200 | -31011 |
//! | `RateLimited` | 429 + `Retry-After` | -31012 |
//! | `ConcurrencyLimited` | 429 + `Retry-After` | -31013 |
//! | `FilterFailed` | (inside a 200 answer) | -31014 |
//! | `BufferBudgetExceeded` | 503 + `Retry-After` | -31015 |
//! | `UnsupportedMediaType` | 415 | -32600 |
//! | `ParseError` | 400 | -32700 |
//! | `InvalidRequest` | 400 | -32600 |
//! | `InvalidParams` | 200 | -32602 |
//! | `HeaderMismatch` | 400 | -32020 (MCP 2026-07-28) |
//! | `GatewayThrottled` | the gateway's (200 for its JSON-RPC form) + `Retry-After` | -32003 (the gateway's) |
//! | `Shaped` | 200 + `Retry-After` | -32003 (the gateway's) |
//! | `HostInvalid` | 400 | text |
//! | `ClientRefused`, `OriginRefused`, `HostRefused` | 403 | text |
//! | `Unauthenticated` | 401 + `WWW-Authenticate` | text |
//!
//! Codes the proxy makes up itself are `-310NN` (`NN` as in the `-320NN` they replaced),
//! outside JSON-RPC's reserved `-32768..=-32000`, as MCP 2026-07-28 asks of codes an
//! implementation defines for itself. That range is where the gateway's own errors live
//! (`-32003` is AgentCore's "Rate limit exceeded") and where MCP allocates its codes
//! (`-32020..=-32099`), so an agent never mistakes the sidecar's failure for the gateway's.
//! Only codes whose meaning a standard fixes are shared: JSON-RPC's `-32700`, `-32600`,
//! `-32602` and MCP's `-32020`. Every error object made here also says
//! `"data": {"source": "proxy", ...}`; docs/forwarding.md has the table and the reasoning.
//!
//! `GatewayThrottled` and `Shaped` deliberately take the gateway's own throttle shape
//! (`-32003` "Rate limit exceeded", `data.retryAfter` in seconds, `data.limitKey`): the
//! first replays a throttle the gateway gave for the rest of its window, the second is
//! the route's own quota, and an agent's retry policy should treat both like the
//! gateway's. Their `data` says the proxy answered (`"source": "proxy"`, `reason`).
//!
//! Policy refusals are answered with HTTP 200: the request was a well-formed JSON-RPC call
//! that got a JSON-RPC error, which MCP clients hand to the agent as that call's failure
//! rather than as a broken transport.

use std::time::Duration;

use http::header::{ALLOW, CONTENT_TYPE, RETRY_AFTER, WWW_AUTHENTICATE};
use http::{HeaderValue, Method, Response, StatusCode};
use serde_json::{json, Value};

use crate::auth::CredentialError;
use crate::exchange::body::{full, BudgetScope, ProxyBody, ReadError};
use crate::exchange::peek::RpcPeek;
use crate::upstream::connector::ConnectError;

pub const ALLOWED_METHODS: &str = "GET, POST, DELETE";

/// AgentCore Gateway's JSON-RPC code for a throttled request ("Rate limit exceeded").
pub const GATEWAY_THROTTLE_CODE: i64 = -32003;
/// The message the gateway throttles with.
pub const GATEWAY_THROTTLE_MESSAGE: &str = "Rate limit exceeded";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyError {
    /// `GET http://host/path HTTP/1.1`: a forward-proxy request.
    AbsoluteForm,
    /// `CONNECT host:port`: a tunnel request.
    ConnectMethod,
    MethodNotAllowed {
        method: Method,
    },
    UnknownRoute {
        path: String,
    },
    BodyTooLarge {
        limit: u64,
    },
    BodyIncomplete(String),
    /// Buffering the request body would take its connection (`scope` Connection) or the
    /// process over its budget of buffered request bytes (`limits.max_buffered_bytes*`).
    BufferBudgetExceeded {
        scope: BudgetScope,
        limit: u64,
    },
    Connect(ConnectError),
    Credential(CredentialError),
    ResponseTimeout {
        after: Duration,
    },
    Upstream(String),
    /// The route's tool policy refuses this tool.
    ToolRefused {
        tool: String,
    },
    /// The route's method policy refuses this JSON-RPC method.
    MethodRefused {
        method: String,
    },
    /// More requests per second than the route allows; try again after `retry_after`.
    RateLimited {
        retry_after: Duration,
    },
    /// More POSTs in flight than the route allows.
    ConcurrencyLimited {
        limit: usize,
    },
    /// A gateway answer that the tool policy must filter could not be filtered (too large,
    /// or unreadable): it is replaced by this error rather than shown unfiltered.
    FilterFailed(String),
    /// A POST whose `Content-Type` is not JSON.
    UnsupportedMediaType {
        content_type: String,
    },
    /// A POST body that is not JSON.
    ParseError(String),
    /// JSON that is not a JSON-RPC message or batch.
    InvalidRequest(String),
    /// `tools/call` parameters the tool policy cannot read.
    InvalidParams(String),
    /// `Mcp-Method`/`Mcp-Name` headers that disagree with the body (MCP 2026-07-28): a
    /// gateway may route on the header while the policy judged the body.
    HeaderMismatch(String),
    /// The agent's address is not in `inbound.allowed_clients`.
    ClientRefused {
        peer: std::net::IpAddr,
    },
    /// An `Origin` not on `inbound.allowed_origins` (a browser page, maybe DNS rebinding).
    OriginRefused {
        origin: String,
    },
    /// A `Host` that is not one of the listener's own names (DNS rebinding).
    HostRefused {
        host: String,
    },
    /// A `Host` (or h2 `:authority`) that is not a plain `host[:port]`, a second Host
    /// header, an h2 `host` header naming another authority than `:authority`, or an
    /// HTTP/1.1 request without Host; what is wrong.
    HostInvalid(String),
    /// The inbound client token is missing or wrong.
    Unauthenticated,
    /// The gateway throttled this tool or method and the window it gave is still open:
    /// answered here, in the gateway's shape, with the time left.
    GatewayThrottled {
        retry_after: Duration,
        limit_key: Option<String>,
        /// The HTTP status the gateway throttled with.
        status: u16,
    },
    /// Over the route's own quota (`[route.shaping]`); `budget` names the entry.
    Shaped {
        retry_after: Duration,
        budget: String,
    },
}

impl From<ReadError> for ProxyError {
    fn from(e: ReadError) -> Self {
        match e {
            ReadError::TooLarge { limit } => ProxyError::BodyTooLarge { limit },
            ReadError::TimedOut { after } => ProxyError::BodyIncomplete(format!(
                "request body not received within {}",
                humantime::format_duration(after)
            )),
            ReadError::Broken(cause) => {
                ProxyError::BodyIncomplete(format!("request body could not be read: {cause}"))
            }
            ReadError::OverBudget { scope, limit } => {
                ProxyError::BufferBudgetExceeded { scope, limit }
            }
        }
    }
}

impl ProxyError {
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::AbsoluteForm | ProxyError::HostInvalid(_) => StatusCode::BAD_REQUEST,
            ProxyError::ConnectMethod | ProxyError::MethodNotAllowed { .. } => {
                StatusCode::METHOD_NOT_ALLOWED
            }
            ProxyError::UnknownRoute { .. } => StatusCode::NOT_FOUND,
            ProxyError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::BodyIncomplete(_) => StatusCode::BAD_REQUEST,
            ProxyError::BufferBudgetExceeded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(ConnectError::Dns(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Connect(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Credential(_) => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::ResponseTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::ToolRefused { .. }
            | ProxyError::MethodRefused { .. }
            | ProxyError::InvalidParams(_) => StatusCode::OK,
            ProxyError::RateLimited { .. } | ProxyError::ConcurrencyLimited { .. } => {
                StatusCode::TOO_MANY_REQUESTS
            }
            // Inside the 200 answer that replaced the gateway's.
            ProxyError::FilterFailed(_) => StatusCode::OK,
            ProxyError::UnsupportedMediaType { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ProxyError::ParseError(_)
            | ProxyError::InvalidRequest(_)
            | ProxyError::HeaderMismatch(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientRefused { .. }
            | ProxyError::OriginRefused { .. }
            | ProxyError::HostRefused { .. } => StatusCode::FORBIDDEN,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::GatewayThrottled { status, .. } => {
                StatusCode::from_u16(*status).unwrap_or(StatusCode::OK)
            }
            ProxyError::Shaped { .. } => StatusCode::OK,
        }
    }

    /// The JSON-RPC error code: the proxy's own `-310NN` block (outside JSON-RPC's reserved
    /// range, so never one the gateway or MCP uses), or the standard code where a standard
    /// defines the meaning.
    pub fn rpc_code(&self) -> i64 {
        match self {
            ProxyError::Connect(ConnectError::Unreachable { .. }) => -31000,
            ProxyError::ResponseTimeout { .. } => -31001,
            ProxyError::Connect(ConnectError::NotPrivate { .. }) => -31002,
            ProxyError::Connect(ConnectError::Dns(_)) => -31003,
            ProxyError::Connect(ConnectError::Tls { .. }) => -31004,
            ProxyError::Credential(_) => -31005,
            ProxyError::BodyTooLarge { .. } => -31006,
            ProxyError::Upstream(_) => -31007,
            ProxyError::BodyIncomplete(_) => -31008,
            ProxyError::ToolRefused { .. } => -31010,
            ProxyError::MethodRefused { .. } => -31011,
            ProxyError::RateLimited { .. } => -31012,
            ProxyError::ConcurrencyLimited { .. } => -31013,
            ProxyError::FilterFailed(_) => -31014,
            ProxyError::BufferBudgetExceeded { .. } => -31015,
            // Standard codes, meaning what their standard says.
            ProxyError::ParseError(_) => -32700,
            ProxyError::InvalidParams(_) => -32602,
            ProxyError::HeaderMismatch(_) => -32020,
            // Deliberately the gateway's: see the module's documentation.
            ProxyError::GatewayThrottled { .. } | ProxyError::Shaped { .. } => {
                GATEWAY_THROTTLE_CODE
            }
            // UnsupportedMediaType and InvalidRequest: -32600, the default below.
            // Refusals made before a route is known are answered as text.
            _ => -32600,
        }
    }

    /// A short stable name for logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ProxyError::AbsoluteForm => "absolute_form",
            ProxyError::ConnectMethod => "connect_method",
            ProxyError::MethodNotAllowed { .. } => "method_not_allowed",
            ProxyError::UnknownRoute { .. } => "unknown_route",
            ProxyError::BodyTooLarge { .. } => "body_too_large",
            ProxyError::BodyIncomplete(_) => "body_incomplete",
            ProxyError::BufferBudgetExceeded { .. } => "buffer_budget_exceeded",
            ProxyError::Connect(ConnectError::Dns(_)) => "dns",
            ProxyError::Connect(ConnectError::NotPrivate { .. }) => "not_private",
            ProxyError::Connect(ConnectError::Unreachable { .. }) => "unreachable",
            ProxyError::Connect(ConnectError::Tls { .. }) => "tls",
            ProxyError::Credential(_) => "credential",
            ProxyError::ResponseTimeout { .. } => "response_timeout",
            ProxyError::Upstream(_) => "upstream",
            ProxyError::ToolRefused { .. } => "tool_refused",
            ProxyError::MethodRefused { .. } => "method_refused",
            ProxyError::RateLimited { .. } => "rate_limited",
            ProxyError::ConcurrencyLimited { .. } => "concurrency_limited",
            ProxyError::FilterFailed(_) => "filter_failed",
            ProxyError::UnsupportedMediaType { .. } => "unsupported_media_type",
            ProxyError::ParseError(_) => "parse_error",
            ProxyError::InvalidRequest(_) => "invalid_request",
            ProxyError::InvalidParams(_) => "invalid_params",
            ProxyError::HeaderMismatch(_) => "header_mismatch",
            ProxyError::ClientRefused { .. } => "client_refused",
            ProxyError::OriginRefused { .. } => "origin_refused",
            ProxyError::HostRefused { .. } => "host_refused",
            ProxyError::HostInvalid(_) => "host_invalid",
            ProxyError::Unauthenticated => "unauthenticated",
            ProxyError::GatewayThrottled { .. } => "gateway_throttled",
            ProxyError::Shaped { .. } => "shaped",
        }
    }
}

impl std::fmt::Display for ProxyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProxyError::AbsoluteForm => f.write_str(
                "absolute-form request targets are refused: this is not an open proxy; \
                 send requests to a configured local path such as /mcp",
            ),
            ProxyError::ConnectMethod => {
                f.write_str("CONNECT is refused: this is not an open proxy")
            }
            ProxyError::MethodNotAllowed { method } => {
                write!(f, "method {method} is not allowed; use {ALLOWED_METHODS}")
            }
            ProxyError::UnknownRoute { path } => write!(f, "no route for path {path}"),
            ProxyError::BodyTooLarge { limit } => {
                write!(f, "request body exceeds the limit of {limit} bytes")
            }
            ProxyError::BodyIncomplete(cause) => f.write_str(cause),
            ProxyError::BufferBudgetExceeded { scope, limit } => match scope {
                BudgetScope::Connection => write!(
                    f,
                    "request bodies buffered on this connection would exceed {limit} bytes \
                     (limits.max_buffered_bytes_per_connection); retry when one has been sent"
                ),
                BudgetScope::Process => write!(
                    f,
                    "request bodies buffered by the proxy would exceed {limit} bytes \
                     (limits.max_buffered_bytes); retry shortly"
                ),
            },
            ProxyError::Connect(e) => e.fmt(f),
            ProxyError::Credential(e) => write!(f, "no gateway credential: {e}"),
            ProxyError::ResponseTimeout { after } => write!(
                f,
                "gateway did not answer within {}",
                humantime::format_duration(*after)
            ),
            ProxyError::Upstream(cause) => write!(f, "gateway connection failed: {cause}"),
            ProxyError::ToolRefused { tool } => {
                write!(f, "tool {tool:?} is not allowed by this route's tool policy")
            }
            ProxyError::MethodRefused { method } => {
                write!(f, "method {method:?} is not allowed by this route's policy")
            }
            ProxyError::RateLimited { retry_after } => write!(
                f,
                "rate limit exceeded; retry after {}",
                humantime::format_duration(*retry_after)
            ),
            ProxyError::ConcurrencyLimited { limit } => write!(
                f,
                "too many requests in flight (the limit is {limit}); retry when one has finished"
            ),
            ProxyError::FilterFailed(cause) => f.write_str(cause),
            ProxyError::UnsupportedMediaType { content_type } => write!(
                f,
                "Content-Type {content_type:?} is not supported; POST a JSON-RPC message as application/json"
            ),
            ProxyError::ParseError(cause) => write!(f, "parse error: the body is not JSON: {cause}"),
            ProxyError::InvalidRequest(cause) => write!(
                f,
                "invalid request: the body is not a JSON-RPC 2.0 message or batch: {cause}"
            ),
            ProxyError::InvalidParams(cause) => write!(f, "invalid params: {cause}"),
            ProxyError::HeaderMismatch(cause) => write!(f, "header mismatch: {cause}"),
            ProxyError::ClientRefused { peer } => {
                write!(f, "client address {peer} is not in inbound.allowed_clients")
            }
            ProxyError::OriginRefused { origin } => {
                write!(f, "Origin {origin:?} is not allowed (inbound.allowed_origins)")
            }
            ProxyError::HostRefused { host } => write!(
                f,
                "Host {host:?} is not a name of this listener (inbound.allowed_hosts)"
            ),
            ProxyError::HostInvalid(cause) => f.write_str(cause),
            ProxyError::Unauthenticated => f.write_str(
                "missing or wrong client token: send Authorization: Bearer <inbound token>",
            ),
            ProxyError::GatewayThrottled { retry_after, .. } => write!(
                f,
                "the gateway throttled this; answered by the proxy for the {} left of the gateway's window",
                humantime::format_duration(*retry_after)
            ),
            ProxyError::Shaped {
                retry_after,
                budget,
            } => write!(
                f,
                "over this route's shaping budget ({}); retry after {}",
                shaping_key(budget),
                humantime::format_duration(*retry_after)
            ),
        }
    }
}

/// Whether the agent gets a JSON-RPC error object (MCP POSTs) or a line of text.
pub enum Answer<'a> {
    JsonRpc(&'a RpcPeek),
    Text,
}

/// The response the agent sees for `err` on `route` (None before a route was found).
pub fn respond(err: &ProxyError, route: Option<&str>, answer: Answer<'_>) -> Response<ProxyBody> {
    let message = message(err, route);
    let mut builder = Response::builder().status(err.status());
    if matches!(
        err,
        ProxyError::ConnectMethod | ProxyError::MethodNotAllowed { .. }
    ) {
        builder = builder.header(ALLOW, HeaderValue::from_static(ALLOWED_METHODS));
    }
    match err {
        ProxyError::RateLimited { retry_after }
        | ProxyError::GatewayThrottled { retry_after, .. }
        | ProxyError::Shaped { retry_after, .. } => {
            builder = builder.header(RETRY_AFTER, retry_after_seconds(*retry_after));
        }
        ProxyError::ConcurrencyLimited { .. } | ProxyError::BufferBudgetExceeded { .. } => {
            builder = builder.header(RETRY_AFTER, HeaderValue::from_static("1"));
        }
        ProxyError::Unauthenticated => {
            builder = builder.header(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"mcp-vpce-proxy\""),
            );
        }
        _ => {}
    }
    let response = match answer {
        Answer::JsonRpc(peek) => {
            let body = rpc_errors(peek, err, &message, route);
            builder
                .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
                .body(full(body.to_string()))
        }
        Answer::Text => builder
            .header(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )
            .body(full(format!("{message}\n"))),
    };
    response.unwrap_or_else(|_| Response::new(full("mcp-vpce-proxy: internal error\n")))
}

/// The message the agent reads for `err` on `route`.
pub fn message(err: &ProxyError, route: Option<&str>) -> String {
    if matches!(
        err,
        ProxyError::GatewayThrottled { .. } | ProxyError::Shaped { .. }
    ) {
        // The gateway's words: `data` says who answered.
        return GATEWAY_THROTTLE_MESSAGE.to_string();
    }
    match route {
        Some(route) => format!("mcp-vpce-proxy: route {route}: {err}"),
        None => format!("mcp-vpce-proxy: {err}"),
    }
}

/// The JSON-RPC error response for the request `id`, as `respond` words it; for answers
/// the MCP layer assembles itself (batch elements, SSE events).
pub fn error_object(id: &Value, err: &ProxyError, route: Option<&str>) -> Value {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": {
            "code": err.rpc_code(),
            "message": message(err, route),
            "data": error_data(err, route),
        }
    })
}

/// The `data` of every error object the proxy makes: `source` tells it apart from an error
/// the gateway sent (which the proxy passes on untouched), `reason` is `kind()`. A
/// throttle answered in the gateway's shape also carries the gateway's fields
/// (`retryAfter` in whole seconds, `limitKey`).
fn error_data(err: &ProxyError, route: Option<&str>) -> Value {
    let mut data = json!({ "source": "proxy", "reason": err.kind(), "route": route });
    match err {
        ProxyError::GatewayThrottled {
            retry_after,
            limit_key,
            ..
        } => {
            data["retryAfter"] = json!(whole_seconds(*retry_after));
            if let Some(key) = limit_key {
                data["limitKey"] = json!(key);
            }
        }
        ProxyError::Shaped {
            retry_after,
            budget,
        } => {
            data["retryAfter"] = json!(whole_seconds(*retry_after));
            data["limitKey"] = json!(shaping_key(budget));
        }
        _ => {}
    }
    data
}

/// The configuration key of a shaping budget: `route` or a tool glob.
fn shaping_key(budget: &str) -> String {
    if budget == "route" {
        "shaping.requests_per_second".to_string()
    } else {
        format!("shaping.tools.{budget}")
    }
}

/// Seconds rounded up, at least 1: what `Retry-After` and `retryAfter` can say.
fn whole_seconds(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// `Retry-After` in whole seconds, rounded up, at least 1.
fn retry_after_seconds(wait: Duration) -> HeaderValue {
    HeaderValue::from(whole_seconds(wait))
}

/// One error object per request: a batch gets an array with one per element that had an
/// id; a single message (or an unreadable body) gets one object with its id or null.
fn rpc_errors(peek: &RpcPeek, err: &ProxyError, message: &str, route: Option<&str>) -> Value {
    let data = error_data(err, route);
    let error = |id: &Value| {
        json!({
            "jsonrpc": "2.0",
            "id": id,
            "error": {
                "code": err.rpc_code(),
                "message": message,
                "data": data,
            }
        })
    };
    match peek {
        RpcPeek::Batch(items) => {
            let errors: Vec<Value> = items
                .iter()
                .filter_map(|m| m.id.as_ref().map(&error))
                .collect();
            if errors.is_empty() {
                error(&Value::Null)
            } else {
                Value::Array(errors)
            }
        }
        RpcPeek::Single(m) => error(m.id.as_ref().unwrap_or(&Value::Null)),
        RpcPeek::Unreadable => error(&Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::peek::peek;
    use http_body_util::BodyExt;

    async fn body_json(r: Response<ProxyBody>) -> Value {
        let bytes = r.into_body().collect().await.unwrap().to_bytes();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn post_errors_carry_the_request_id() {
        let p = peek(br#"{"jsonrpc":"2.0","id":"abc","method":"tools/call"}"#);
        let r = respond(
            &ProxyError::ResponseTimeout {
                after: Duration::from_secs(900),
            },
            Some("mcp"),
            Answer::JsonRpc(&p),
        );
        assert_eq!(r.status(), 504);
        let v = body_json(r).await;
        assert_eq!(v["id"], "abc");
        assert_eq!(v["error"]["code"], -31001);
        assert_eq!(v["error"]["data"]["source"], "proxy");
        assert_eq!(
            v["error"]["message"],
            "mcp-vpce-proxy: route mcp: gateway did not answer within 15m"
        );
    }

    #[tokio::test]
    async fn batches_get_one_error_per_request() {
        let p = peek(br#"[{"jsonrpc":"2.0","id":1,"method":"a"},{"jsonrpc":"2.0","method":"n"},{"jsonrpc":"2.0","id":2,"method":"b"}]"#);
        let r = respond(
            &ProxyError::Upstream("reset".into()),
            Some("mcp"),
            Answer::JsonRpc(&p),
        );
        let v = body_json(r).await;
        let ids: Vec<&Value> = v.as_array().unwrap().iter().map(|e| &e["id"]).collect();
        assert_eq!(ids, [&json!(1), &json!(2)]);
    }

    /// One of each variant an MCP POST can be answered with.
    fn every_rpc_error() -> Vec<ProxyError> {
        use crate::upstream::dns::DnsError;
        let name = || "gw.example".to_string();
        vec![
            ProxyError::BodyTooLarge { limit: 1 },
            ProxyError::BodyIncomplete("x".into()),
            ProxyError::BufferBudgetExceeded {
                scope: BudgetScope::Process,
                limit: 1,
            },
            ProxyError::Connect(ConnectError::Dns(DnsError::NotFound { name: name() })),
            ProxyError::Connect(ConnectError::NotPrivate {
                name: name(),
                addrs: vec![],
                ranges: String::new(),
            }),
            ProxyError::Connect(ConnectError::Unreachable {
                name: name(),
                attempts: vec![],
            }),
            ProxyError::Connect(ConnectError::Tls {
                name: name(),
                addr: "127.0.0.1:443".parse().unwrap(),
                server_name: name(),
                cause: String::new(),
            }),
            ProxyError::Credential(CredentialError("x".into())),
            ProxyError::ResponseTimeout {
                after: Duration::from_secs(1),
            },
            ProxyError::Upstream("x".into()),
            ProxyError::ToolRefused { tool: "t".into() },
            ProxyError::MethodRefused { method: "m".into() },
            ProxyError::RateLimited {
                retry_after: Duration::from_secs(1),
            },
            ProxyError::ConcurrencyLimited { limit: 1 },
            ProxyError::FilterFailed("x".into()),
            ProxyError::UnsupportedMediaType {
                content_type: "text/plain".into(),
            },
            ProxyError::ParseError("x".into()),
            ProxyError::InvalidRequest("x".into()),
            ProxyError::InvalidParams("x".into()),
            ProxyError::HeaderMismatch("x".into()),
        ]
    }

    #[test]
    fn the_proxys_own_codes_are_outside_the_range_the_gateway_and_mcp_use() {
        // Standard codes keep their standard meaning; everything else is the proxy's
        // own -310NN block, outside JSON-RPC's reserved -32768..=-32000.
        let standard = [-32700, -32600, -32602, -32020];
        let mut own = Vec::new();
        for err in every_rpc_error() {
            let code = err.rpc_code();
            if standard.contains(&code) {
                continue;
            }
            assert!((-31099..=-31000).contains(&code), "{err:?}: {code}");
            own.push(code);
        }
        // -32003 is AgentCore Gateway's "Rate limit exceeded": never the proxy's.
        assert!(every_rpc_error().iter().all(|e| e.rpc_code() != -32003));
        let mut distinct = own.clone();
        distinct.sort_unstable();
        distinct.dedup();
        assert_eq!(distinct.len(), own.len(), "one code per failure: {own:?}");
    }

    #[tokio::test]
    async fn every_error_object_says_the_proxy_made_it() {
        let p = peek(br#"{"jsonrpc":"2.0","id":5,"method":"tools/call"}"#);
        for err in every_rpc_error() {
            let v = body_json(respond(&err, Some("mcp"), Answer::JsonRpc(&p))).await;
            assert_eq!(
                v["error"]["data"],
                json!({"source": "proxy", "reason": err.kind(), "route": "mcp"}),
                "{err:?}"
            );
            let made = error_object(&json!(5), &err, None);
            assert_eq!(made["error"]["data"]["source"], "proxy", "{err:?}");
            assert_eq!(made["error"]["code"], err.rpc_code());
        }
    }

    #[tokio::test]
    async fn throttles_answered_here_take_the_gateways_shape_and_say_who_answered() {
        let p = peek(br#"{"jsonrpc":"2.0","id":"a-1","method":"tools/call"}"#);
        let err = ProxyError::GatewayThrottled {
            retry_after: Duration::from_millis(1500),
            limit_key: Some("toolName=search".into()),
            status: 200,
        };
        let r = respond(&err, Some("mcp"), Answer::JsonRpc(&p));
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()[RETRY_AFTER], "2", "whole seconds, rounded up");
        let v = body_json(r).await;
        assert_eq!(
            v,
            json!({"jsonrpc":"2.0","id":"a-1","error":{
                "code": -32003,
                "message": "Rate limit exceeded",
                "data": {"retryAfter": 2, "limitKey": "toolName=search",
                         "source": "proxy", "reason": "gateway_throttled", "route": "mcp"}}})
        );
        let shaped = ProxyError::Shaped {
            retry_after: Duration::from_secs(30),
            budget: "x_amz_bedrock_agentcore_search".into(),
        };
        let made = error_object(&json!(4), &shaped, Some("mcp"));
        assert_eq!(made["error"]["code"], GATEWAY_THROTTLE_CODE);
        assert_eq!(
            made["error"]["data"]["limitKey"],
            "shaping.tools.x_amz_bedrock_agentcore_search"
        );
        assert_eq!(made["error"]["data"]["source"], "proxy");
        let status_429 = ProxyError::GatewayThrottled {
            retry_after: Duration::from_secs(3),
            limit_key: None,
            status: 429,
        };
        assert_eq!(status_429.status(), 429);
        assert!(error_object(&json!(1), &status_429, None)["error"]["data"]
            .get("limitKey")
            .is_none());
    }

    #[test]
    fn method_refusals_list_the_allowed_methods() {
        let r = respond(
            &ProxyError::MethodNotAllowed {
                method: Method::PUT,
            },
            Some("mcp"),
            Answer::Text,
        );
        assert_eq!(r.status(), 405);
        assert_eq!(r.headers()[ALLOW], ALLOWED_METHODS);
    }
}
