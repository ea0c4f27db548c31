//! One attempt at the gateway, shared by the forwarding and by `doctor`: attach the
//! route's credential, send through the worker's pooled client within a timeout, and map
//! a client error to what the agent (or the operator) is told.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::capture_connection;

use crate::exchange::body;
use crate::exchange::context::Timings;
use crate::exchange::error::ProxyError;
use crate::proxy::route::Route;
use crate::upstream::connector::{ConnectError, ConnectionUse};

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
) -> Result<Response<Incoming>, ProxyError> {
    attempt(route, parts, payload, timeout, timings, false)
        .await
        .map_err(|f| f.err)
}

/// Why an attempt failed, and whether it failed before the gateway can have seen the
/// request's end or sent a byte of its answer (so a read-only request may be sent again).
#[derive(Debug)]
pub struct Failure {
    pub err: ProxyError,
    pub retryable: bool,
}

/// One attempt, as [`send`]; `fresh` sends it on a new connection (the route's unpooled
/// client), for the one retry of a read whose connection failed.
pub async fn attempt(
    route: &Route,
    mut parts: http::request::Parts,
    payload: &Bytes,
    timeout: Duration,
    timings: &mut Timings,
    fresh: bool,
) -> Result<Response<Incoming>, Failure> {
    let fail = |err| Failure {
        err,
        retryable: false,
    };
    let getting = Instant::now();
    let applied = route.credential.apply(&mut parts, payload).await;
    timings.credential = Some(getting.elapsed());
    applied.map_err(|e| fail(ProxyError::Credential(e)))?;
    let body = if payload.is_empty() {
        body::empty()
    } else {
        body::full(payload.clone())
    };
    let mut request = Request::from_parts(parts, body);
    let pool = route.pool();
    let connection = pool
        .retiring
        .load(Ordering::Relaxed)
        .then(|| capture_connection(&mut request));
    let client = if fresh { &pool.fresh } else { &pool.client };
    let response = match tokio::time::timeout(timeout, client.request(request)).await {
        Err(_) => return Err(fail(ProxyError::ResponseTimeout { after: timeout })),
        Ok(Err(e)) => {
            return Err(Failure {
                err: classify(&e),
                retryable: failed_before_answer(&e),
            })
        }
        Ok(Ok(response)) => response,
    };
    if let Some(used) = response.extensions().get::<ConnectionUse>() {
        if used.mark_used() {
            route.metrics.connections_reused.inc();
        } else {
            // The first request on a new connection: its opening was this request's time.
            timings.dns = Some(used.opened.dns);
            timings.connect = Some(used.opened.connect);
            timings.tls = Some(used.opened.tls);
        }
        if route.is_stale(used) {
            let poisoned = connection.as_ref().is_some_and(|c| {
                c.connection_metadata()
                    .as_ref()
                    .map(|connected| connected.poison())
                    .is_some()
            });
            if poisoned {
                tracing::info!(route = %route.name, addr = %used.addr, "endpoint address no longer in DNS; retiring its connection");
            } else {
                // Not captured: caught on its next request.
                pool.retiring.store(true, Ordering::Relaxed);
            }
        } else if connection.is_some() {
            pool.retiring.store(false, Ordering::Relaxed);
        }
    }
    Ok(response)
}

/// Whether the connection failed before any byte of the answer arrived, in a way a new
/// connection may not: refused or reset while connecting, or a connection (a reused one,
/// most often: the gateway closed it as it went idle) closed or reset before the answer's
/// head. A failed name lookup, an address outside the VPC or a TLS failure would fail
/// the same way again; a timeout may mean the gateway is still working on it.
pub fn failed_before_answer(e: &hyper_util::client::legacy::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(connect) = s.downcast_ref::<ConnectError>() {
            return matches!(connect, ConnectError::Unreachable { .. });
        }
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

/// Maps a client error to what the agent is told: the connector's own error when the
/// connection could not be made, the cause chain otherwise.
pub fn classify(e: &hyper_util::client::legacy::Error) -> ProxyError {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    let mut causes = Vec::new();
    while let Some(s) = source {
        if let Some(connect) = s.downcast_ref::<ConnectError>() {
            return ProxyError::Connect(connect.clone());
        }
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        causes.push(e.to_string());
    }
    ProxyError::Upstream(causes.join(": "))
}
