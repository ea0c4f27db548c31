//! One request: route it, rewrite it for the gateway, attach the credential, forward it
//! through the route's pooled client and stream the answer back. A list request may be
//! answered from the cache or by an identical request's upstream answer (`share.rs`); a
//! read whose connection failed before any answer is sent once more.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;

use crate::exchange::body::{self, ProxyBody};
use crate::exchange::context::{Dialed, RequestContext, Timings};
use crate::exchange::error::{Answer, ProxyError};
use crate::exchange::message;
use crate::exchange::peek::RpcPeek;
use crate::mcp::layer::{Echo, Inspection, Upstream, Verdict};
use crate::proxy::coalesce::{Flight, Joined, Leader};
use crate::proxy::discovery;
use crate::proxy::route::{Route, RouteTable};
use crate::proxy::send::attempt;
use crate::proxy::share::{Landing, Shareable, LIST_METHODS};
use crate::upstream::connector::DialTarget;
use crate::upstream::gateway_conns::UpstreamBody;
use crate::upstream::header_names;

/// Requests that change nothing on the gateway: sent once more when their connection
/// failed before any byte of the answer (`tools/call` and everything else, never).
const READ_ONLY: [&str; 2] = ["resources/read", "ping"];

/// What an agent's request loses on its way to the gateway: first the headers that belong
/// to one hop and never cross the proxy (RFC 9110 7.6.1) plus the proxy-only ones, which an
/// answer loses too (the first [`HOP_BY_HOP`]); then Host, Content-Length and Upgrade;
/// last the agent's Authorization (kept by a passthrough route). See
/// [`rewrite_request_headers`].
static REQUEST_DROPPED: [HeaderName; 11] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::HOST,
    header::UPGRADE,
    header::AUTHORIZATION,
];

/// How many of [`REQUEST_DROPPED`] are the hop-by-hop headers.
const HOP_BY_HOP: usize = 8;

/// Handles one request from the agent. Never fails: every problem is an answer. The
/// request's context is made here and finished exactly once, by the answer's body when
/// it ends or by its own drop when the agent goes away first.
/// `budget`: what the agent's connection and the process may still buffer, for a POST.
#[allow(clippy::manual_async_fn)] // not an `async fn` on purpose: see the note in the body
pub fn handle(
    table: Arc<RouteTable>,
    peer: Option<std::net::SocketAddr>,
    budget: Option<body::BufferBudget>,
    req: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> {
    // An async block rather than an `async fn`: rustc keeps an `async fn`'s arguments
    // twice in its state, and this future is part of every request's.
    async move {
        let mut context = RequestContext::new(req.method(), req.headers(), table.audit());
        context.start_span(req.uri().path(), req.version(), req.headers());
        let selected = table
            .inbound
            .check(peer, &req)
            .and_then(|()| select_route(&table, &req));
        match selected {
            Ok((route, target)) => {
                let route = route.clone();
                context.routed(&route.name, &route.metrics, route.layer.audit());
                let owns_bare_discovery = table
                    .bare_discovery_route()
                    .is_some_and(|r| Arc::ptr_eq(r, &route));
                let body_deadline = table.body_read_timeout;
                let read = BodyRead {
                    deadline: body_deadline,
                    budget,
                };
                forward(context, route, target, owns_bare_discovery, read, req).await
            }
            Err(err) => context.refuse(err, Answer::Text, None),
        }
    }
}

/// The refusals that need no route: not an open proxy, only configured paths.
/// Where a request goes on its route's gateway.
enum Target {
    /// The route's MCP endpoint.
    Mcp,
    /// An OAuth discovery document, on passthrough routes only.
    Discovery { gateway_path: String },
}

fn select_route<'t>(
    table: &'t RouteTable,
    req: &Request<Incoming>,
) -> Result<(&'t Arc<Route>, Target), ProxyError> {
    if req.method() == Method::CONNECT {
        return Err(ProxyError::ConnectMethod);
    }
    // HTTP/2 always carries an authority; in HTTP/1 a full URL in the request line is a
    // forward-proxy request.
    if req.version() < Version::HTTP_2 && req.uri().authority().is_some() {
        return Err(ProxyError::AbsoluteForm);
    }
    let path = req.uri().path();
    let unknown = || ProxyError::UnknownRoute {
        path: path.to_string(),
    };
    if let Some(well_known) = discovery::parse(path) {
        // Only passthrough routes have OAuth discovery: elsewhere the sidecar holds the
        // credential and the agent needs none.
        let route = if well_known.resource.is_empty() {
            table.bare_discovery_route()
        } else {
            table.get(well_known.resource)
        };
        let route = route.filter(|r| r.url_map.is_some()).ok_or_else(unknown)?;
        if req.method() != Method::GET {
            return Err(ProxyError::MethodNotAllowed {
                method: req.method().clone(),
            });
        }
        let gateway_path = match (well_known.resource, route.gateway.path.as_str()) {
            ("", _) | (_, "/") => well_known.prefix.to_string(),
            (_, path) => format!("{}{path}", well_known.prefix),
        };
        return Ok((route, Target::Discovery { gateway_path }));
    }
    let route = table.get(path).ok_or_else(unknown)?;
    match *req.method() {
        Method::POST | Method::GET | Method::DELETE => Ok((route, Target::Mcp)),
        _ => Err(ProxyError::MethodNotAllowed {
            method: req.method().clone(),
        }),
    }
}

/// How a POST body is read: within `deadline`, from `budget`.
struct BodyRead {
    deadline: Duration,
    budget: Option<body::BufferBudget>,
}

#[allow(clippy::manual_async_fn)] // not an `async fn` on purpose: see the note in the body
fn forward(
    mut context: RequestContext,
    route: Arc<Route>,
    target: Target,
    owns_bare_discovery: bool,
    read: BodyRead,
    req: Request<Incoming>,
) -> impl Future<Output = Response<ProxyBody>> {
    // An async block rather than an `async fn`: rustc keeps an `async fn`'s arguments
    // twice in its state, and this future is part of every request's.
    async move {
        let (mut head, incoming) = req.into_parts();
        let is_post = head.method == Method::POST;

        // POST bodies are JSON-RPC messages the gateway only processes whole: read them
        // (bounded) so that a 413 comes before any connection, errors can echo the id, and
        // credentials that sign the body can see it. GET and DELETE carry no body in MCP.
        let payload = if is_post {
            let budget = read.budget.as_ref();
            match body::read_limited(
                incoming,
                route.max_body_bytes,
                context.started(),
                read.deadline,
                budget,
            )
            .await
            {
                Ok(bytes) => bytes,
                Err(e) => {
                    let answer = Answer::JsonRpc(&RpcPeek::Unreadable);
                    return context.refuse(e.into(), answer, None);
                }
            }
        } else {
            drop(incoming);
            Bytes::new()
        };
        // The one parse of the body: the MCP layer judges it, errors and logs use its view.
        let (post, rpc) = if is_post {
            let message::Post { body, rpc } = message::read(&payload);
            context.read(&rpc, payload.len() as u64);
            context.trace_call(&body);
            (Some(body), rpc)
        } else {
            (None, RpcPeek::Unreadable)
        };
        let answer_for = |echo: Echo| match echo {
            Echo::Ids if is_post => Answer::JsonRpc(&rpc),
            Echo::Ids | Echo::NullId if is_post => Answer::JsonRpc(&RpcPeek::Unreadable),
            _ => Answer::Text,
        };
        let mcp = matches!(target, Target::Mcp);
        // A list request may share its answer with identical ones (coalescing, the cache).
        let shareable = match (&post, mcp) {
            (Some(Ok(body)), true) => route.sharing.shareable(body, &head),
            _ => None,
        };
        // `throttle = "hold"`: a request for what the gateway throttled a moment ago waits
        // for the window to end (when it ends soon enough), then is judged as usual.
        if mcp {
            if let Some(wait) = route.layer.hold_for(post.as_ref()) {
                Box::pin(tokio::time::sleep(wait)).await;
            }
        }

        // The request hook of the MCP layer; it looks at MCP traffic only, not at OAuth
        // discovery documents.
        let verdict = match target {
            Target::Mcp => {
                Some(
                    route
                        .layer
                        .on_request(&context, &head, payload.clone(), post, &rpc),
                )
            }
            Target::Discovery { .. } => {
                drop(post);
                None
            }
        };
        // What goes on is the verdict's payload: the body read is not held (and its buffer
        // budget is given back) when only part of a batch is forwarded.
        drop(payload);
        let (payload, mut inspection) = match verdict {
            None => (Bytes::new(), None),
            Some(Verdict::Forward {
                payload,
                inspection,
            }) => (payload, Some(inspection)),
            Some(Verdict::Answer(response)) => return context.answered(response),
            Some(Verdict::Refuse { err, echo, tool }) => {
                return context.refuse(err, answer_for(echo), tool.as_deref())
            }
        };
        context.set_bytes_in(payload.len() as u64);

        // A kept answer, or the answer of an identical request already on its way.
        let mut leader: Option<Leader> = None;
        if let Some(request) = &shareable {
            if let Some(hit) = route
                .sharing
                .cached(request, route.layer.lists_generation())
            {
                route.metrics.cache_hits.inc();
                let response = hit.answer.respond(&request.id, Some(hit.ttl_left_ms));
                return serve_shared(context, &route, inspection, response);
            }
            match route.sharing.join(request) {
                Some(Joined::Follow(follower)) => {
                    let waiting = Waiting::new(&route);
                    let outcome = Box::pin(follower.outcome()).await;
                    drop(waiting);
                    match outcome {
                        Flight::Shared(answer) => {
                            route.metrics.coalesced.inc();
                            let response = answer.respond(&request.id, None);
                            return serve_shared(context, &route, inspection, response);
                        }
                        Flight::Failed(err) => {
                            if let Some(inspection) = inspection {
                                route.layer.on_response(inspection, Upstream::Failed(&err));
                            }
                            return context.refuse(err, answer_for(Echo::Ids), None);
                        }
                        // The leader's answer cannot be shared: on its own.
                        Flight::Alone | Flight::Pending => {}
                    }
                }
                Some(Joined::Lead(lead)) => leader = Some(lead),
                Some(Joined::Alone) | None => {}
            }
        }
        // The route's own quota pays for what goes upstream.
        if mcp {
            if let Err(err) = route.layer.admit_upstream(inspection.as_ref()) {
                if let Some(leader) = leader.take() {
                    leader.land(Flight::Failed(err.clone()));
                }
                drop(inspection.take());
                let tool = single_tool(&rpc, &payload);
                return context.refuse(err, answer_for(Echo::Ids), tool.as_deref());
            }
        }
        let generation = route.layer.lists_generation();

        // The sidecar's own origin as the agent addressed it, for passthrough rewrites.
        let local_origin = route.url_map.as_ref().map(|_| local_origin(&head));
        rewrite_request_headers(
            &mut head.headers,
            route.credential.forwards_caller_authorization(),
        );
        if matches!(target, Target::Mcp) && route.layer.reads_answers() {
            // The MCP layer reads (and may filter) the answer: it must come as plain bytes,
            // whatever encodings the agent would accept.
            head.headers.insert(
                header::ACCEPT_ENCODING,
                http::HeaderValue::from_static("identity"),
            );
        }
        let mut outgoing = Outgoing {
            method: head.method,
            uri: match &target {
                Target::Mcp => route.upstream_uri(head.uri.query()),
                Target::Discovery { gateway_path } => {
                    route.upstream_uri_at(gateway_path, head.uri.query())
                }
            },
            headers: head.headers,
        };
        // The gateway's span, and the `traceparent` naming it as the gateway's parent.
        context.start_upstream(&outgoing.method, &outgoing.uri, &mut outgoing.headers);
        let sent = Instant::now();
        let read_only = mcp && is_read_only(&rpc);
        let result = exchange(
            &route,
            outgoing,
            &payload,
            sent,
            &mut context.timings,
            read_only,
        )
        .await;
        let answer = result
            .as_ref()
            .ok()
            .map(|r| (r.status().as_u16(), r.version()));
        context.upstream_answered(answer, &dialed(&route));
        let response = match result {
            Ok(r) => r,
            Err(err) => {
                if let Some(leader) = leader.take() {
                    leader.land(Flight::Failed(err.clone()));
                }
                if let Some(inspection) = inspection {
                    route.layer.on_response(inspection, Upstream::Failed(&err));
                }
                return context.refuse(err, answer_for(Echo::Ids), None);
            }
        };

        let (mut parts, upstream_body) = response.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        let upstream_time = sent.elapsed();
        context.timings.upstream = Some(upstream_time);
        route
            .metrics
            .upstream_seconds
            .observe(upstream_time.as_secs_f64());
        let mut body = upstream_body.map_err(Into::into).boxed_unsync();
        if let (Some(leader), Some(request)) = (leader.take(), &shareable) {
            body = lead(&route, leader, request, &parts, body, generation);
        }
        if let Some(inspection) = inspection {
            let answered = Upstream::Answered(&mut parts, body);
            body = route
                .layer
                .on_response(inspection, answered)
                .unwrap_or_else(body::empty);
        }
        if let (Some(map), Some(origin)) = (&route.url_map, &local_origin) {
            let rewriter = map.at(origin, owns_bare_discovery);
            if parts.status == StatusCode::UNAUTHORIZED || parts.status == StatusCode::FORBIDDEN {
                rewriter.rewrite_challenges(&mut parts.headers);
            }
            if matches!(target, Target::Discovery { .. }) {
                body = Box::pin(discovery::rewrite_body(
                    &route.name,
                    &mut parts.headers,
                    body,
                    &rewriter,
                ))
                .await;
            }
        }
        context.forwarded(Response::from_parts(parts, body), route.idle_timeout)
    }
}

/// Sends the request to the gateway. A credential that can be refreshed gets one more
/// try when the gateway answers 401 (a token revoked or rotated early); a read-only
/// request whose connection failed (or whose stream the gateway refused) before any byte
/// of the answer is sent once more (a failed connection is never lent again). Either
/// replays the buffered body.
#[allow(clippy::manual_async_fn)] // not an `async fn` on purpose: see the note in the body
fn exchange<'a>(
    route: &'a Route,
    outgoing: Outgoing,
    payload: &'a Bytes,
    sent: Instant,
    timings: &'a mut Timings,
    read_only: bool,
) -> impl Future<Output = Result<Response<UpstreamBody>, ProxyError>> + 'a {
    // An async block rather than an `async fn`: rustc keeps an `async fn`'s arguments
    // twice in its state, and this future is part of every request's.
    async move {
        let retry_read = read_only && route.config.traffic.retry_reads;
        let refreshable = route.credential.refreshable();
        let (first, spare) = if refreshable || retry_read {
            (outgoing.to_parts(), Some(outgoing))
        } else {
            (outgoing.into_parts(), None)
        };
        let timeout = route.response_timeout;
        let mut result = attempt(route, first, payload, timeout, sent, timings).await;
        if let (Err(failure), Some(spare), true) = (&result, &spare, retry_read) {
            if failure.retryable {
                tracing::info!(route = %route.name, cause = %failure.err, "a read failed before any answer (connection failed or stream refused); sending it once more");
                route.metrics.upstream_retries.inc();
                // The rare second attempts are boxed: inline, their state (~1.6 KB) would be
                // part of every request's future, copied and allocated with it.
                let (parts, now) = (spare.to_parts(), Instant::now());
                result = Box::pin(attempt(route, parts, payload, timeout, now, timings)).await;
            }
        }
        let mut result = result.map_err(|f| f.err);
        if let (Some(spare), true) = (spare, refreshable) {
            if matches!(&result, Ok(r) if r.status() == StatusCode::UNAUTHORIZED) {
                tracing::info!(route = %route.name, "gateway answered 401; refreshing the credential and retrying once");
                route.credential.invalidate();
                result = Box::pin(attempt(
                    route,
                    spare.into_parts(),
                    payload,
                    timeout,
                    Instant::now(),
                    timings,
                ))
                .await
                .map_err(|f| f.err);
            }
        }
        result
    }
}

/// Whether a request is a single read-only call (see [`READ_ONLY`] and the list methods).
fn is_read_only(rpc: &RpcPeek) -> bool {
    match rpc {
        RpcPeek::Single(m) if m.id.is_some() => m
            .method
            .as_deref()
            .is_some_and(|method| LIST_METHODS.contains(&method) || READ_ONLY.contains(&method)),
        _ => false,
    }
}

/// The tool a single `tools/call` names, for the record of a whole-request refusal.
fn single_tool(rpc: &RpcPeek, payload: &Bytes) -> Option<String> {
    match rpc {
        RpcPeek::Single(m) if m.method.as_deref() == Some("tools/call") => {
            let body = message::parse(payload).ok()?;
            let params = body.messages.first()?.call_params().ok()?;
            Some(params.name.into_owned())
        }
        _ => None,
    }
}

/// Answers with another request's answer (coalescing) or a kept one (the cache): it
/// still goes through the MCP layer's response hook (the tool policy filters it, the
/// in-flight slot is held until it ends).
fn serve_shared(
    context: RequestContext,
    route: &Route,
    inspection: Option<Inspection>,
    response: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let (mut parts, mut body) = response.into_parts();
    if let Some(mut inspection) = inspection {
        inspection.shared();
        body = route
            .layer
            .on_response(inspection, Upstream::Answered(&mut parts, body))
            .unwrap_or_else(body::empty);
    }
    context.forwarded(Response::from_parts(parts, body), route.idle_timeout)
}

/// The leader of identical requests has its answer: it streams to the leader's agent as
/// it comes, and lands for the requests waiting (and in the cache, when its hints allow)
/// once it has passed whole.
fn lead(
    route: &Route,
    leader: Leader,
    request: &Shareable,
    parts: &http::response::Parts,
    body: ProxyBody,
    generation: Option<u64>,
) -> ProxyBody {
    let landing = Landing {
        leader,
        status: parts.status,
        headers: parts.headers.clone(),
        keep: route.sharing.keep(request, generation),
    };
    route.sharing.tee(body, landing).boxed_unsync()
}

/// Counts a request waiting for another's answer for as long as it waits (also when its
/// agent goes away meanwhile).
struct Waiting<'a>(&'a Route);

impl<'a> Waiting<'a> {
    fn new(route: &'a Route) -> Waiting<'a> {
        route.metrics.coalesce_waiting.inc();
        Waiting(route)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.metrics.coalesce_waiting.dec();
    }
}

/// What the trace's credential, DNS and TLS steps are named after.
fn dialed(route: &Route) -> Dialed<'_> {
    Dialed {
        credential: route.config.credential.source(),
        name: match route.dial_target() {
            DialTarget::Name { name, .. } => Some(name),
            DialTarget::Static(_) => None,
        },
        server_name: &route.gateway.host,
    }
}

/// `http://<host>[:<port>]` as the agent addressed the proxy (Host, or the h2
/// `:authority`), parsed strictly and re-serialised by the inbound guard's parser: only
/// a host and a port ever reach the discovery documents and challenges built from it,
/// never the raw header.
fn local_origin(head: &http::request::Parts) -> String {
    match crate::proxy::inbound::request_authority(head.version, &head.uri, &head.headers) {
        Ok(Some(authority)) => format!("http://{authority}"),
        // HTTP/1.0 without Host (the guard refused a malformed one before routing).
        _ => "http://127.0.0.1".to_string(),
    }
}

/// The upstream request before the credential is attached; kept so that a 401 can be
/// answered by one replay.
struct Outgoing {
    method: Method,
    uri: http::Uri,
    headers: HeaderMap,
}

impl Outgoing {
    fn into_parts(self) -> http::request::Parts {
        let (mut parts, ()) = Request::new(()).into_parts();
        parts.method = self.method;
        parts.uri = self.uri;
        // hyper-util picks HTTP/2 itself when ALPN negotiated it.
        parts.version = Version::HTTP_11;
        parts.headers = self.headers;
        parts
    }

    fn to_parts(&self) -> http::request::Parts {
        Outgoing {
            method: self.method.clone(),
            uri: self.uri.clone(),
            headers: self.headers.clone(),
        }
        .into_parts()
    }
}

/// Makes the agent's headers fit for the gateway: no hop-by-hop headers, no Host (the
/// client sets it from the gateway URI), and no caller Authorization unless the route
/// passes it through. Content-Length stays: the gateway connection makes it the length
/// of the body sent (`upstream::content_length`), keeping the agent's when it is right.
pub fn rewrite_request_headers(headers: &mut HeaderMap, keep_authorization: bool) {
    let dropped = if keep_authorization {
        &REQUEST_DROPPED[..REQUEST_DROPPED.len() - 1]
    } else {
        &REQUEST_DROPPED[..]
    };
    remove_hop_by_hop_and(headers, dropped);
}

/// Removes the hop-by-hop headers and any header the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    remove_hop_by_hop_and(headers, &REQUEST_DROPPED[..HOP_BY_HOP]);
}

/// Removes the headers the `Connection` header names, then `names` (the start of
/// [`REQUEST_DROPPED`], hop-by-hop headers included), in one pass over the headers' names.
fn remove_hop_by_hop_and(headers: &mut HeaderMap, names: &[HeaderName]) {
    debug_assert!(names.len() >= HOP_BY_HOP && names[0] == header::CONNECTION);
    let found = header_names::present(headers, names);
    if found & 1 != 0 {
        header_names::remove_connection_named(headers);
    }
    header_names::remove_found(headers, names, found);
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    #[test]
    fn rewrite_keeps_mcp_headers_and_drops_hop_by_hop_and_caller_auth() {
        let mut h = headers(&[
            ("host", "127.0.0.1:8080"),
            ("authorization", "Bearer caller"),
            ("connection", "keep-alive, x-private"),
            ("x-private", "1"),
            ("keep-alive", "timeout=5"),
            ("transfer-encoding", "chunked"),
            ("te", "trailers"),
            ("content-length", "12"),
            ("mcp-session-id", "s1"),
            ("mcp-protocol-version", "2025-06-18"),
            ("last-event-id", "7"),
            ("accept", "application/json, text/event-stream"),
            ("content-type", "application/json"),
            (
                "traceparent",
                "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            ),
        ]);
        rewrite_request_headers(&mut h, false);
        let mut names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "accept",
                "content-length",
                "content-type",
                "last-event-id",
                "mcp-protocol-version",
                "mcp-session-id",
                "traceparent"
            ]
        );
    }

    #[test]
    fn each_hop_by_hop_header_is_dropped_on_its_own() {
        // Without a `Connection` header naming them.
        for hop in [
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "connection",
        ] {
            let mut h = headers(&[(hop, "x"), ("mcp-session-id", "s1")]);
            strip_hop_by_hop(&mut h);
            let names: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            assert_eq!(names, ["mcp-session-id"], "{hop}");
        }
        let mut clean = headers(&[("accept", "application/json"), ("mcp-session-id", "s1")]);
        strip_hop_by_hop(&mut clean);
        assert_eq!(clean.len(), 2);
    }

    #[test]
    fn passthrough_keeps_the_caller_authorization() {
        let mut h = headers(&[("authorization", "Bearer user")]);
        rewrite_request_headers(&mut h, true);
        assert_eq!(h["authorization"], "Bearer user");
    }
}
