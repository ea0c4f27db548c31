//! The MCP-aware layer of one route: sees each request before it is forwarded and each
//! response on its way back.

use bytes::Bytes;
use http::{request, response, Response};

use super::config::PolicyConfig;
use super::peek::RpcPeek;
use crate::audit::AuditSink;
use crate::body::ProxyBody;
use crate::error::ProxyError;

/// Per-route state of the layer, built with the route (and rebuilt on reload).
pub struct RouteLayer {}

/// What the layer learned from a request, carried to its response.
pub struct Inspection {}

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

impl RouteLayer {
    pub fn build(
        _route: &str,
        _policy: &PolicyConfig,
        _audit: &AuditSink,
    ) -> Result<RouteLayer, String> {
        Ok(RouteLayer {})
    }

    pub fn inspect(&self, _head: &request::Parts, payload: Bytes, _rpc: &RpcPeek) -> Verdict {
        Verdict::Forward {
            payload,
            inspection: Inspection {},
        }
    }

    /// The upstream answered: returns the body to stream back (possibly filtered).
    pub fn respond(
        &self,
        _inspection: Inspection,
        _parts: &mut response::Parts,
        body: ProxyBody,
    ) -> ProxyBody {
        body
    }

    /// The request failed before the upstream answered.
    pub fn failed(&self, _inspection: Inspection, _err: &ProxyError) {}
}
