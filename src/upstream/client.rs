//! The body type of a request to the gateway.

use bytes::Bytes;
use http_body_util::combinators::UnsyncBoxBody;

/// The body of a request to the gateway: any body, boxed (the same type as the request
/// path's `exchange::body::ProxyBody`, named here so that this layer does not use that one).
pub type RequestBody = UnsyncBoxBody<Bytes, Box<dyn std::error::Error + Send + Sync>>;
