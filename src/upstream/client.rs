//! The pooled HTTP client of one route. Each route owns its client, hence its pool:
//! routes to the same gateway through different endpoints never share a connection.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::connector::Connector;

/// The body of a request to the gateway: any body, boxed (the same type as the request
/// path's `exchange::body::ProxyBody`, named here so that this layer does not use that one).
pub type RequestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;

pub type UpstreamClient = Client<Connector, RequestBody>;

pub fn build(connector: Connector, max_idle: usize, idle_timeout: Duration) -> UpstreamClient {
    Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(idle_timeout)
        .pool_timer(TokioTimer::new())
        .timer(TokioTimer::new())
        // The request URI always names the gateway; Host comes from it.
        .set_host(true)
        .build(connector)
}
