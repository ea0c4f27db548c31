//! The one log line per request, in one format. Only the request context writes it
//! (`exchange::context::RequestContext::finish`), once per request, when the answer is
//! complete (for streams: when the stream ends) or the agent went away.

/// The fields of one access line. Every string is the proxy's own or bounded: the
/// agent's JSON-RPC method appears only as its `rpc_method_label`, so nothing the agent
/// writes can forge a line or carry terminal escapes.
pub struct Line<'a> {
    pub route: &'a str,
    pub method: &'a http::Method,
    pub rpc_method: &'static str,
    pub session: bool,
    pub status: u16,
    /// `ok`, `answered`, `refused`, `failed`, `broken`, `idle_timeout`, `client_gone`
    /// (docs/operations.md says what each means).
    pub outcome: &'static str,
    /// For `refused` and `failed`: the error's kind, and the message the agent got.
    pub reason: Option<&'static str>,
    pub message: Option<&'a str>,
    pub credential_ms: Option<f64>,
    pub dns_ms: Option<f64>,
    pub connect_ms: Option<f64>,
    pub tls_ms: Option<f64>,
    pub upstream_ms: Option<f64>,
    pub total_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// The trace and the proxy's server span, when traces are exported.
    pub trace_id: Option<&'a str>,
    pub span_id: Option<&'a str>,
}

pub fn write(line: &Line<'_>) {
    macro_rules! emit {
        ($level:ident, $($msg:tt)+) => {
            tracing::$level!(
                target: "mcp_vpce_proxy::access",
                route = line.route,
                method = %line.method,
                rpc_method = line.rpc_method,
                session = line.session,
                status = line.status,
                outcome = line.outcome,
                reason = line.reason,
                credential_ms = line.credential_ms,
                dns_ms = line.dns_ms,
                connect_ms = line.connect_ms,
                tls_ms = line.tls_ms,
                upstream_ms = line.upstream_ms,
                total_ms = line.total_ms,
                bytes_in = line.bytes_in,
                bytes_out = line.bytes_out,
                trace_id = line.trace_id,
                span_id = line.span_id,
                $($msg)+
            )
        };
    }
    match line.outcome {
        "refused" | "failed" => emit!(warn, "refused: {}", line.message.unwrap_or("-")),
        "answered" => emit!(warn, "answered by the MCP layer"),
        _ => emit!(info, "request"),
    }
}
