//! The one log line per request, written when the response is complete (for streams:
//! when the stream ends), so that it can carry the bytes sent and how the stream ended.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ops::metrics::RouteMetrics;

pub struct AccessLog {
    pub route: Arc<str>,
    pub metrics: Arc<RouteMetrics>,
    /// An SSE stream: counted in the active-streams gauge until it ends.
    pub stream: bool,
    pub method: http::Method,
    /// The bounded label (`rpc_method_label`): an MCP method's name, or `other`. The
    /// agent's own string never reaches the log line, where it could forge lines or
    /// carry terminal escapes.
    pub rpc_method: &'static str,
    pub session: bool,
    pub status: u16,
    pub started: Instant,
    pub upstream: Option<Duration>,
    pub bytes_in: u64,
}

impl AccessLog {
    /// Counts the request in the metrics; call once, when the response starts.
    pub fn start(&self) {
        if self.stream {
            self.metrics.active_streams.inc();
        }
    }

    pub fn finish(self, bytes_out: u64, outcome: &str) {
        let m = &self.metrics;
        if self.stream {
            m.active_streams.dec();
        }
        m.request(&self.method, self.rpc_method, self.status);
        m.request_seconds
            .observe(self.started.elapsed().as_secs_f64());
        m.bytes_in.inc_by(self.bytes_in);
        m.bytes_out.inc_by(bytes_out);
        let upstream_ms = self.upstream.map(|d| d.as_micros() as f64 / 1000.0);
        tracing::info!(
            target: "mcp_vpce_proxy::access",
            route = %self.route,
            method = %self.method,
            rpc_method = self.rpc_method,
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
