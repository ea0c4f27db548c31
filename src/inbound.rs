//! Who may use the proxy: checks on each agent request before routing.

use std::net::SocketAddr;

use hyper::body::Incoming;
use serde::Deserialize;

use crate::error::ProxyError;

#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct InboundConfig {}

/// The inbound rules in force, built once from config.
#[derive(Default)]
pub struct InboundGuard {}

impl InboundGuard {
    pub fn build(_config: &InboundConfig, _listen: SocketAddr) -> Result<InboundGuard, String> {
        Ok(InboundGuard {})
    }

    /// `peer` is None for unix-socket connections.
    pub fn check(
        &self,
        _peer: Option<SocketAddr>,
        _req: &http::Request<Incoming>,
    ) -> Result<(), ProxyError> {
        Ok(())
    }
}
