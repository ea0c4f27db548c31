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
    mut parts: http::request::Parts,
    payload: &Bytes,
    timeout: Duration,
    timings: &mut Timings,
) -> Result<Response<Incoming>, ProxyError> {
    let getting = Instant::now();
    let applied = route.credential.apply(&mut parts, payload).await;
    timings.credential = Some(getting.elapsed());
    applied.map_err(ProxyError::Credential)?;
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
    let response = match tokio::time::timeout(timeout, pool.client.request(request)).await {
        Err(_) => return Err(ProxyError::ResponseTimeout { after: timeout }),
        Ok(Err(e)) => return Err(classify(&e)),
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
            timings.opened = Some(used.opened);
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
