//! The one log line per request, written when the response is complete (for streams:
//! when the stream ends), so that it can carry the bytes sent and how the stream ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

pub struct AccessLog {
    pub route: Arc<str>,
    pub method: http::Method,
    pub rpc_method: String,
    pub session: bool,
    pub status: u16,
    pub started: Instant,
    pub upstream: Option<Duration>,
    pub bytes_in: u64,
}

impl AccessLog {
    pub fn finish(self, bytes_out: u64, outcome: &str) {
        let upstream_ms = self.upstream.map(|d| d.as_micros() as f64 / 1000.0);
        tracing::info!(
            target: "mcp_vpce_proxy::access",
            route = %self.route,
            method = %self.method,
            rpc_method = %self.rpc_method,
            session = self.session,
            status = self.status,
            upstream_ms,
            total_ms = self.started.elapsed().as_micros() as f64 / 1000.0,
            bytes_in = self.bytes_in,
            bytes_out,
            outcome,
            "request"
        );
    }
}
