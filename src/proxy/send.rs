//! One attempt at the gateway, shared by the forwarding and by `doctor`: attach the
//! route's credential, send over the worker's gateway connection within a timeout, and
//! map a failure to what the agent (or the operator) is told.

use std::future::Future;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Response;

use crate::exchange::context::Timings;
use crate::exchange::error::ProxyError;
use crate::proxy::route::Route;
use crate::upstream::connector::ConnectError;
use crate::upstream::content_length;
use crate::upstream::gateway_conns::{SendError, UpstreamBody};

/// One attempt: attach the credential, send, wait at most `timeout` for the response
/// head. A connection to an address the endpoint name no longer resolves to is retired
/// after this request, so the pool drains towards the endpoint's current addresses.
///
/// Fails with `Credential`, `ResponseTimeout`, `Connect` or `Upstream` only.
/// `timings` gets the credential's time and, when the request opened a connection, that
/// connection's DNS, connect and TLS times.
pub async fn send(
    route: &Route,
    parts: http::request::Parts,
    payload: &Bytes,
    timeout: Duration,
    timings: &mut Timings,
) -> Result<Response<UpstreamBody>, ProxyError> {
    attempt(route, parts, payload, timeout, Instant::now(), timings)
        .await
        .map_err(|f| f.err)
}

/// Why an attempt failed, and whether it failed before the gateway can have sent a byte
/// of its answer, in a way another connection may not (so a read may be sent again).
#[derive(Debug)]
pub struct Failure {
    pub err: ProxyError,
    pub retryable: bool,
}

/// One attempt, as [`send`], telling a failure a read may be sent again after. `begun`
/// is when it begins, read by the caller (who times the exchange from the same reading):
/// the credential's time counts from it, and the response deadline from when the
/// credential is attached, which for a credential in hand (the usual case) is `begun`
/// itself, so no other look at the clock is needed. A
/// connection that failed is never lent again (a closed or going-away h2 connection is
/// left, a failed HTTP/1.1 one dropped), so a second attempt goes over another one; a
/// stream the gateway refused (REFUSED_STREAM) leaves its connection usable, and the
/// second attempt may go over it again (RFC 9113 8.7).
#[allow(clippy::manual_async_fn)] // not an `async fn` on purpose: see the note in the body
pub fn attempt<'a>(
    route: &'a Route,
    mut parts: http::request::Parts,
    payload: &'a Bytes,
    timeout: Duration,
    begun: Instant,
    timings: &'a mut Timings,
) -> impl Future<Output = Result<Response<UpstreamBody>, Failure>> + 'a {
    // An async block rather than an `async fn`: rustc keeps an `async fn`'s arguments
    // twice in its state, and this future is part of every request's.
    async move {
        let fail = |err| Failure {
            err,
            retryable: false,
        };
        // What is declared is what is sent (a filtered batch is shorter than the agent's
        // body), before a credential that signs the headers sees them.
        content_length::declare(&mut parts.headers, &parts.method, payload.len());
        // The response deadline counts from when the request is ready to go: a
        // credential that had to be fetched or signed is timed, and its time is not the
        // gateway's. One in hand takes no time worth a clock read.
        let (applied, ready) = match route.credential.apply_now(&mut parts) {
            Some(applied) => (applied, begun),
            None => {
                let applied = route.credential.apply(&mut parts, payload).await;
                (applied, Instant::now())
            }
        };
        timings.credential = Some(ready - begun);
        applied.map_err(|e| fail(ProxyError::Credential(e)))?;
        let conns = route.pool();
        let deadline = tokio::time::Instant::from_std(ready + timeout);
        let sending = conns.send(parts, payload.clone());
        let response = match tokio::time::timeout_at(deadline, sending).await {
            Err(_) => return Err(fail(ProxyError::ResponseTimeout { after: timeout })),
            Ok(Err(e)) => {
                return Err(Failure {
                    err: classify(&e),
                    retryable: failed_before_answer(&e),
                })
            }
            Ok(Ok(response)) => response,
        };
        let used = response.body().connection();
        if used.mark_used() {
            route.metrics.connections_reused.inc();
        } else {
            // The first request on a new connection: its opening was this request's time.
            timings.dns = Some(used.opened.dns);
            timings.connect = Some(used.opened.connect);
            timings.tls = Some(used.opened.tls);
            timings.opened = Some(used.opened);
        }
        if route.is_stale(used) {
            tracing::info!(route = %route.name, addr = %used.addr, "endpoint address no longer in DNS; retiring its connection");
            conns.retire(used);
        }
        Ok(response)
    }
}

/// Whether the connection failed before any byte of the answer arrived, in a way another
/// connection may not: refused or reset while connecting, or a connection (a reused one,
/// most often: the gateway closed it as it went idle) closed or reset before the answer's
/// head. A failed name lookup, an address outside the VPC, a TLS or HTTP handshake
/// failure would fail the same way again; a timeout may mean the gateway is still
/// working on it.
pub fn failed_before_answer(e: &SendError) -> bool {
    let http = match e {
        SendError::Connect(connect) => return matches!(connect, ConnectError::Unreachable { .. }),
        SendError::Handshake(_) => return false,
        SendError::H2 { err, sent } => return !sent || h2_failed_before_answer(err),
        SendError::Http(http) => http,
    };
    if http.is_incomplete_message() || http.is_canceled() || http.is_closed() {
        return true;
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(http);
    while let Some(s) = source {
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_canceled() || h.is_closed() {
                return true;
            }
        }
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// An HTTP/2 stream that failed before its answer's head in a way another connection may
/// not: the gateway refused the stream or went away past it (RFC 9113 8.7: it did not
/// process the request), or the connection broke.
fn h2_failed_before_answer(err: &h2::Error) -> bool {
    if err.reason() == Some(h2::Reason::REFUSED_STREAM) || (err.is_go_away() && err.is_remote()) {
        return true;
    }
    err.get_io().is_some_and(|io| {
        use std::io::ErrorKind::*;
        matches!(
            io.kind(),
            ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
        )
    })
}

/// Maps a failed send to what the agent is told: the connector's own error when the
/// connection could not be made, the cause chain otherwise.
pub fn classify(e: &SendError) -> ProxyError {
    if let SendError::Connect(connect) = e {
        return ProxyError::Connect(connect.clone());
    }
    let mut causes = vec![e.to_string()];
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    // hyper's own message first, then what it names as the cause.
    if let SendError::Http(http) = e {
        source = std::error::Error::source(http);
    }
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    ProxyError::Upstream(causes.join(": "))
}
