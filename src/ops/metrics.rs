//! Prometheus metrics: one registry for the process, reachable from every layer that
//! records something (`metrics()`), encoded by the admin listener's `/metrics`.
//!
//! Label sets are small structs so that the hot path hashes a few short strings and
//! never formats anything.

use std::sync::Arc;
use std::sync::OnceLock;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RouteLabels {
    pub route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: Arc<str>,
    pub method: &'static str,
    pub rpc_method: &'static str,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ToolLabels {
    pub route: Arc<str>,
    /// A name from [`ToolNames`]: a real tool's, or `other`.
    pub tool: Arc<str>,
    pub outcome: ToolOutcome,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum ToolOutcome {
    ok,
    tool_error,
    rpc_error,
    refused,
    upstream_failure,
}

impl ToolOutcome {
    /// How many outcomes there are (the variants are numbered from 0).
    const COUNT: usize = ToolOutcome::upstream_failure as usize + 1;
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub route: Arc<str>,
    /// An error's kind (`ProxyError::kind`).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DnsLabels {
    pub name: String,
    pub result: DnsResult,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum DnsResult {
    in_vpc,
    outside,
    /// The name servers failed and the last good answer (younger than
    /// `dns.stale_limit`) was used.
    stale,
    error,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct NameLabels {
    pub name: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CredentialLabels {
    pub route: String,
    pub source: String,
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: String,
}

/// Why a finished span never reached the collector.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
#[allow(non_camel_case_types)]
pub enum SpanDropReason {
    /// The export queue was full (the collector slower than the spans coming).
    queue_full,
    /// The collector did not take the batch (unreachable, refused, timed out).
    export_failed,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct SpanDropLabels {
    pub reason: SpanDropReason,
}

impl From<SpanDropReason> for SpanDropLabels {
    fn from(reason: SpanDropReason) -> Self {
        SpanDropLabels { reason }
    }
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub request_seconds: Family<RouteLabels, Histogram>,
    pub upstream_seconds: Family<RouteLabels, Histogram>,
    pub tool_calls: Family<ToolLabels, Counter>,
    pub active_streams: Family<RouteLabels, Gauge>,
    pub upstream_connections_opened: Family<RouteLabels, Counter>,
    pub upstream_connections_reused: Family<RouteLabels, Counter>,
    pub upstream_connections_open: Family<RouteLabels, Gauge>,
    pub tls_handshake_failures: Family<RouteLabels, Counter>,
    pub dns_resolutions: Family<DnsLabels, Counter>,
    pub dns_answer_age_seconds: Family<NameLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub credential_refreshes: Family<CredentialLabels, Counter>,
    pub credential_expiry_seconds: Family<RouteLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pub refused: Family<ReasonLabels, Counter>,
    pub bytes_in: Family<RouteLabels, Counter>,
    pub bytes_out: Family<RouteLabels, Counter>,
    pub config_reloads: Family<ResultLabels, Counter>,
    pub trace_spans_exported: Counter,
    pub trace_spans_dropped: Family<SpanDropLabels, Counter>,
    /// Throttle answers the gateway gave (JSON-RPC -32003, or HTTP 429/503 with Retry-After).
    pub gateway_throttles: Family<RouteLabels, Counter>,
    /// Requests the proxy answered with the gateway's throttle shape without sending them,
    /// by reason: `gateway_window` (a window the gateway gave is open), `shaping`.
    pub throttled_locally: Family<ReasonLabels, Counter>,
    /// Requests held (`throttle = "hold"`) until a window ended.
    pub throttle_holds: Family<RouteLabels, Counter>,
    /// Requests answered with another request's upstream answer (coalescing).
    pub coalesced: Family<RouteLabels, Counter>,
    /// Requests waiting now for another request's upstream answer.
    pub coalesce_waiting: Family<RouteLabels, Gauge>,
    /// Requests answered from the cache of MCP 2026-07-28 list answers.
    pub cache_hits: Family<RouteLabels, Counter>,
    /// Read-only requests sent once more after their connection failed before any answer.
    pub upstream_retries: Family<RouteLabels, Counter>,
    /// The tool names that may label `tool_calls`.
    pub tool_names: ToolNames,
}

/// The most tool names that get series of their own, all routes together. AgentCore
/// gateways list tens to hundreds of tools; past this every new name is `other`.
pub const MAX_TOOL_NAMES: usize = 1000;

/// Tool names the `tool` label may carry, per route: names the route's gateway listed or
/// ran, never a name an agent merely sent. The agent chooses what it calls, so labelling
/// by its string would let it add series without bound; refused and failed calls of
/// names the gateway never vouched for count as `other`.
pub struct ToolNames {
    names: std::sync::RwLock<KnownNames>,
    other: Arc<str>,
}

/// Maps looked up on every request hash with foldhash rather than std's SipHash, ~5
/// times cheaper on short names. Its seed is random per process; the maps grow only
/// with names the gateway vouched for (bounded by [`MAX_TOOL_NAMES`]) or labels of
/// bounded sets, so an agent's strings are never keys of their own.
type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct KnownNames {
    by_route: FastMap<Arc<str>, FastMap<Arc<str>, KnownTool>>,
    total: usize,
}

/// A known tool's name and its `tool_calls_total` series, one per outcome, made the
/// first time the outcome is counted: counting a call then needs no look-up in the
/// family (which hashes every label with SipHash).
struct KnownTool {
    name: Arc<str>,
    calls: [OnceLock<Counter>; ToolOutcome::COUNT],
}

impl KnownTool {
    fn new(name: Arc<str>) -> KnownTool {
        KnownTool {
            name,
            calls: Default::default(),
        }
    }
}

impl Default for ToolNames {
    fn default() -> Self {
        ToolNames {
            names: Default::default(),
            other: Arc::from("other"),
        }
    }
}

impl ToolNames {
    /// A name the route's gateway vouched for (it listed the tool or ran it).
    pub fn learn(&self, route: &Arc<str>, tool: &str) {
        if self.known(route, tool).is_none() {
            self.add(route, tool);
        }
    }

    /// Adds a name not known yet; its label (`other` when over-long or past the cap).
    fn add(&self, route: &Arc<str>, tool: &str) -> Arc<str> {
        if tool.len() > 128 {
            return self.other.clone();
        }
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        if names.total >= MAX_TOOL_NAMES {
            return self.other.clone();
        }
        let tools = names.by_route.entry(route.clone()).or_default();
        if let Some(known) = tools.get(tool) {
            // Added by another thread since the look-up.
            return known.name.clone();
        }
        let name: Arc<str> = Arc::from(tool);
        tools.insert(name.clone(), KnownTool::new(name.clone()));
        names.total += 1;
        name
    }

    /// The label for `tool` on `route`: its name when known, `other` otherwise.
    pub fn label(&self, route: &str, tool: &str) -> Arc<str> {
        self.known(route, tool)
            .unwrap_or_else(|| self.other.clone())
    }

    fn known(&self, route: &str, tool: &str) -> Option<Arc<str>> {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        Some(names.by_route.get(route)?.get(tool)?.name.clone())
    }

    /// Counts a call of a known tool; false when the name is not known.
    fn count_known(&self, route: &Arc<str>, tool: &str, outcome: ToolOutcome) -> bool {
        let names = self.names.read().unwrap_or_else(|p| p.into_inner());
        let Some(known) = names
            .by_route
            .get(&**route)
            .and_then(|tools| tools.get(tool))
        else {
            return false;
        };
        known.calls[outcome as usize]
            .get_or_init(|| {
                metrics()
                    .tool_calls
                    .get_or_create(&ToolLabels {
                        route: route.clone(),
                        tool: known.name.clone(),
                        outcome,
                    })
                    .clone()
            })
            .inc();
        true
    }

    /// Names known, all routes together.
    pub fn len(&self) -> usize {
        self.names.read().unwrap_or_else(|p| p.into_inner()).total
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn latency_histogram() -> Histogram {
    // 0.5 ms .. ~16 min: local hops up to 15-minute tool calls.
    Histogram::new(exponential_buckets(0.0005, 2.5, 16))
}

impl Metrics {
    fn new() -> Metrics {
        let mut registry = Registry::with_prefix("mcp_vpce_proxy");
        let m = Metrics {
            requests: Family::default(),
            request_seconds: Family::new_with_constructor(latency_histogram),
            upstream_seconds: Family::new_with_constructor(latency_histogram),
            tool_calls: Family::default(),
            active_streams: Family::default(),
            upstream_connections_opened: Family::default(),
            upstream_connections_reused: Family::default(),
            upstream_connections_open: Family::default(),
            tls_handshake_failures: Family::default(),
            dns_resolutions: Family::default(),
            dns_answer_age_seconds: Family::default(),
            credential_refreshes: Family::default(),
            credential_expiry_seconds: Family::default(),
            refused: Family::default(),
            bytes_in: Family::default(),
            bytes_out: Family::default(),
            config_reloads: Family::default(),
            trace_spans_exported: Counter::default(),
            trace_spans_dropped: Family::default(),
            gateway_throttles: Family::default(),
            throttled_locally: Family::default(),
            throttle_holds: Family::default(),
            coalesced: Family::default(),
            coalesce_waiting: Family::default(),
            cache_hits: Family::default(),
            upstream_retries: Family::default(),
            tool_names: ToolNames::default(),
            registry: Registry::default(),
        };
        registry.register(
            "requests",
            "Requests answered, by route, HTTP method, JSON-RPC method and status",
            m.requests.clone(),
        );
        registry.register(
            "request_seconds",
            "Time from request to the end of the response",
            m.request_seconds.clone(),
        );
        registry.register(
            "upstream_seconds",
            "Time from sending upstream to the gateway's response headers",
            m.upstream_seconds.clone(),
        );
        registry.register(
            "tool_calls",
            "tools/call requests by route, tool and outcome",
            m.tool_calls.clone(),
        );
        registry.register(
            "active_streams",
            "SSE response streams open now",
            m.active_streams.clone(),
        );
        registry.register(
            "upstream_connections_opened",
            "Upstream connections established",
            m.upstream_connections_opened.clone(),
        );
        registry.register(
            "upstream_connections_reused",
            "Requests sent on an already used upstream connection",
            m.upstream_connections_reused.clone(),
        );
        registry.register(
            "upstream_connections_open",
            "Upstream connections open now (in use or idle in the pool)",
            m.upstream_connections_open.clone(),
        );
        registry.register(
            "tls_handshake_failures",
            "TLS handshakes with the gateway that failed",
            m.tls_handshake_failures.clone(),
        );
        registry.register(
            "dns_resolutions",
            "Name resolutions by result (in_vpc, outside, stale: the last good answer used while the name servers fail, error)",
            m.dns_resolutions.clone(),
        );
        registry.register(
            "dns_answer_age_seconds",
            "Age of the answer in use for a name",
            m.dns_answer_age_seconds.clone(),
        );
        registry.register(
            "credential_refreshes",
            "Credential fetches by route, source and result",
            m.credential_refreshes.clone(),
        );
        registry.register(
            "credential_expiry_seconds",
            "Seconds until the route's current credential expires",
            m.credential_expiry_seconds.clone(),
        );
        registry.register(
            "refused",
            "Requests answered by the proxy itself, by route and reason",
            m.refused.clone(),
        );
        registry.register(
            "bytes_in",
            "Request body bytes forwarded upstream",
            m.bytes_in.clone(),
        );
        registry.register(
            "bytes_out",
            "Response body bytes sent to agents",
            m.bytes_out.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            m.config_reloads.clone(),
        );
        registry.register(
            "trace_spans_exported",
            "Spans the OpenTelemetry collector accepted",
            m.trace_spans_exported.clone(),
        );
        registry.register(
            "trace_spans_dropped",
            "Spans that never reached the collector, by reason (queue_full, export_failed)",
            m.trace_spans_dropped.clone(),
        );
        registry.register(
            "gateway_throttles",
            "Throttle answers from the gateway (JSON-RPC -32003, or HTTP 429/503 with Retry-After)",
            m.gateway_throttles.clone(),
        );
        registry.register(
            "throttled_locally",
            "Requests answered with the gateway's throttle shape without being sent, by route and reason (gateway_window, shaping)",
            m.throttled_locally.clone(),
        );
        registry.register(
            "throttle_holds",
            "Requests held until the gateway's throttle window ended (throttle = \"hold\")",
            m.throttle_holds.clone(),
        );
        registry.register(
            "coalesced",
            "Requests answered with another identical request's upstream answer",
            m.coalesced.clone(),
        );
        registry.register(
            "coalesce_waiting",
            "Requests waiting now for another identical request's upstream answer",
            m.coalesce_waiting.clone(),
        );
        registry.register(
            "cache_hits",
            "Requests answered from the cache of MCP 2026-07-28 list answers (ttlMs)",
            m.cache_hits.clone(),
        );
        registry.register(
            "upstream_retries",
            "Read-only requests sent once more after their connection failed before any answer",
            m.upstream_retries.clone(),
        );
        Metrics { registry, ..m }
    }

    /// The Prometheus text exposition of every metric.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::new)
}

/// The `route` label of what no route took (`-`), shared rather than made per request.
pub fn no_route() -> Arc<str> {
    static NO_ROUTE: OnceLock<Arc<str>> = OnceLock::new();
    NO_ROUTE.get_or_init(|| Arc::from("-")).clone()
}

/// Label set for one route.
pub fn route(name: &str) -> RouteLabels {
    RouteLabels {
        route: name.to_string(),
    }
}

/// Handles of the per-route metrics, resolved once when the route is built so that the
/// request path only touches atomics.
pub struct RouteMetrics {
    pub name: Arc<str>,
    pub request_seconds: Histogram,
    pub upstream_seconds: Histogram,
    pub active_streams: Gauge,
    pub connections_opened: Counter,
    pub connections_reused: Counter,
    pub connections_open: Gauge,
    pub tls_failures: Counter,
    pub bytes_in: Counter,
    pub bytes_out: Counter,
    pub coalesced: Counter,
    pub coalesce_waiting: Gauge,
    pub cache_hits: Counter,
    pub upstream_retries: Counter,
    /// The route's `requests_total` series met so far, by their other labels (bounded
    /// sets: the method and RPC method labels, the status): one fast look-up per request
    /// instead of the family's SipHash over every label.
    requests: std::sync::RwLock<FastMap<RequestKey, Counter>>,
}

/// `requests_total`'s labels besides the route.
type RequestKey = (&'static str, &'static str, u16);

impl RouteMetrics {
    pub fn new(name: &str) -> RouteMetrics {
        let m = metrics();
        let labels = route(name);
        RouteMetrics {
            name: Arc::from(name),
            request_seconds: m.request_seconds.get_or_create(&labels).clone(),
            upstream_seconds: m.upstream_seconds.get_or_create(&labels).clone(),
            active_streams: m.active_streams.get_or_create(&labels).clone(),
            connections_opened: m.upstream_connections_opened.get_or_create(&labels).clone(),
            connections_reused: m.upstream_connections_reused.get_or_create(&labels).clone(),
            connections_open: m.upstream_connections_open.get_or_create(&labels).clone(),
            tls_failures: m.tls_handshake_failures.get_or_create(&labels).clone(),
            bytes_in: m.bytes_in.get_or_create(&labels).clone(),
            bytes_out: m.bytes_out.get_or_create(&labels).clone(),
            coalesced: m.coalesced.get_or_create(&labels).clone(),
            coalesce_waiting: m.coalesce_waiting.get_or_create(&labels).clone(),
            cache_hits: m.cache_hits.get_or_create(&labels).clone(),
            upstream_retries: m.upstream_retries.get_or_create(&labels).clone(),
            requests: Default::default(),
        }
    }

    /// Counts one answered request; `rpc_label` is already [`rpc_method_label`]'s. The
    /// labels borrow static names, so counting costs no allocation.
    pub fn request(&self, method: &http::Method, rpc_label: &'static str, status: u16) {
        let key = (http_method_label(method), rpc_label, status);
        let seen = self.requests.read().unwrap_or_else(|p| p.into_inner());
        if let Some(counter) = seen.get(&key) {
            counter.inc();
            return;
        }
        drop(seen);
        let (method, rpc_method, status) = key;
        let counter = metrics()
            .requests
            .get_or_create(&RequestLabels {
                route: self.name.clone(),
                method,
                rpc_method,
                status,
            })
            .clone();
        counter.inc();
        let mut seen = self.requests.write().unwrap_or_else(|p| p.into_inner());
        seen.insert(key, counter);
    }

    /// Counts one refusal; like `request`, without allocating.
    pub fn refused(&self, reason: &'static str) {
        metrics()
            .refused
            .get_or_create(&ReasonLabels {
                route: self.name.clone(),
                reason,
            })
            .inc();
    }
}

/// Counts one tools/call by how it ended. The tool's name gets a series of its own only
/// once the gateway has vouched for it (see [`ToolNames`]).
pub fn count_tool_call(route: &Arc<str>, tool: &str, outcome: crate::ops::audit::Outcome) {
    use crate::ops::audit::Outcome;
    let m = metrics();
    // A known name (the usual case): its series is kept with the name.
    if m.tool_names.count_known(route, tool, outcome.metric()) {
        return;
    }
    let label = match m.tool_names.known(route, tool) {
        Some(known) => known,
        // The gateway ran it: the name is a real tool's, worth a series of its own.
        None if matches!(outcome, Outcome::Ok | Outcome::ToolError) => {
            m.tool_names.add(route, tool)
        }
        None => m.tool_names.other.clone(),
    };
    m.tool_calls
        .get_or_create(&ToolLabels {
            route: route.clone(),
            tool: label,
            outcome: outcome.metric(),
        })
        .inc();
}

/// The `method` label: the HTTP method an agent may send, `other` for anything else.
pub fn http_method_label(method: &http::Method) -> &'static str {
    use http::Method;
    match *method {
        Method::POST => "POST",
        Method::GET => "GET",
        Method::DELETE => "DELETE",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::CONNECT => "CONNECT",
        Method::TRACE => "TRACE",
        _ => "other",
    }
}

/// The methods of the MCP specification (2025-06-18, 2025-11-25 and 2026-07-28), which
/// name their own `rpc_method` series.
pub const MCP_METHODS: &[&str] = &[
    "initialize",
    "server/discover",
    "ping",
    "tools/list",
    "tools/call",
    "resources/list",
    "resources/templates/list",
    "resources/read",
    "resources/subscribe",
    "resources/unsubscribe",
    "prompts/list",
    "prompts/get",
    "completion/complete",
    "logging/setLevel",
    "sampling/createMessage",
    "roots/list",
    "elicitation/create",
    "tasks/get",
    "tasks/list",
    "tasks/result",
    "tasks/cancel",
    "notifications/initialized",
    "notifications/cancelled",
    "notifications/progress",
    "notifications/message",
    "notifications/roots/list_changed",
    "notifications/resources/updated",
    "notifications/resources/list_changed",
    "notifications/tools/list_changed",
    "notifications/prompts/list_changed",
    "notifications/elicitation/complete",
    "notifications/tasks/status",
];

/// The `rpc_method` label: an MCP method by its name, `batch` and `-` (no readable
/// message) as they are, `other` for any other name. The agent chooses the method
/// string, so passing it through would let it grow the series without bound.
pub fn rpc_method_label(method: &str) -> &'static str {
    match method {
        "-" => "-",
        "batch" => "batch",
        m => MCP_METHODS
            .iter()
            .find(|known| **known == m)
            .copied()
            .unwrap_or("other"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_labels_are_names_the_gateway_vouched_for_up_to_a_cap() {
        let names = ToolNames::default();
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("a"), Arc::from("b"));
        assert_eq!(&*names.label("a", "Demo___echo"), "other");
        names.learn(&a, "Demo___echo");
        assert_eq!(&*names.label("a", "Demo___echo"), "Demo___echo");
        assert_eq!(&*names.label("b", "Demo___echo"), "other", "per route");
        names.learn(&a, &"x".repeat(129));
        assert_eq!(names.len(), 1, "over-long names are never labels");
        for i in 0..MAX_TOOL_NAMES + 50 {
            names.learn(&b, &format!("T___{i}"));
        }
        assert_eq!(names.len(), MAX_TOOL_NAMES);
        let last = format!("T___{}", MAX_TOOL_NAMES + 10);
        assert_eq!(&*names.label("b", &last), "other");
    }

    /// The series a request or a call is counted in, whether found in the route's or
    /// the tool's kept handles or in the family.
    #[test]
    fn kept_series_count_in_the_same_series_as_the_family() {
        let m = metrics();
        let route = RouteMetrics::new("kept-series-route");
        route.request(&http::Method::POST, "tools/call", 200);
        route.request(&http::Method::POST, "tools/call", 200);
        route.request(&http::Method::GET, "-", 200);
        let requests = |method, rpc_method, status| {
            m.requests
                .get_or_create(&RequestLabels {
                    route: route.name.clone(),
                    method,
                    rpc_method,
                    status,
                })
                .get()
        };
        assert_eq!(requests("POST", "tools/call", 200), 2);
        assert_eq!(requests("GET", "-", 200), 1);
        assert_eq!(requests("POST", "tools/call", 500), 0);

        use crate::ops::audit::Outcome;
        let name = &route.name;
        count_tool_call(name, "Demo___known", Outcome::Ok); // vouches for the name
        count_tool_call(name, "Demo___known", Outcome::Ok);
        count_tool_call(name, "Demo___known", Outcome::Refused);
        count_tool_call(name, "Demo___unknown", Outcome::Refused);
        count_tool_call(name, "Demo___unknown", Outcome::RpcError);
        let calls = |tool: &str, outcome| {
            m.tool_calls
                .get_or_create(&ToolLabels {
                    route: name.clone(),
                    tool: Arc::from(tool),
                    outcome,
                })
                .get()
        };
        assert_eq!(calls("Demo___known", ToolOutcome::ok), 2);
        assert_eq!(calls("Demo___known", ToolOutcome::refused), 1);
        assert_eq!(calls("other", ToolOutcome::refused), 1);
        assert_eq!(calls("other", ToolOutcome::rpc_error), 1);
        assert_eq!(calls("Demo___unknown", ToolOutcome::refused), 0);
        assert_eq!(
            &*m.tool_names.label(name, "Demo___unknown"),
            "other",
            "a name the gateway never ran is no label"
        );
    }

    #[test]
    fn rpc_method_labels_are_bounded_to_mcp_methods() {
        assert_eq!(rpc_method_label("tools/call"), "tools/call");
        assert_eq!(
            rpc_method_label("notifications/initialized"),
            "notifications/initialized"
        );
        assert_eq!(rpc_method_label("batch"), "batch");
        assert_eq!(rpc_method_label("-"), "-");
        assert_eq!(rpc_method_label("tools/call2"), "other");
        assert_eq!(rpc_method_label(&"x".repeat(10_000)), "other");
        assert_eq!(http_method_label(&http::Method::DELETE), "DELETE");
        let custom = http::Method::from_bytes(b"BREW").unwrap();
        assert_eq!(http_method_label(&custom), "other");
    }
}
