//! The span API and the export queue, with the SDK's real tracer and a recording
//! processor (or exporter) in place of the collector.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderValue, Method, Uri, Version};
use opentelemetry::trace::{SpanId, SpanKind, Status, TraceId, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    Sampler, SdkTracer, SdkTracerProvider, Span, SpanData, SpanExporter, SpanProcessor,
};
use serde_json::json;

use super::export;
use super::span::{McpCall, RequestSpan, ServerRequest, Step, UpstreamRequest};
use crate::ops::metrics::{metrics, SpanDropReason};

const AGENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const AGENT_SPAN: &str = "00f067aa0ba902b7";

#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<SpanData>>>);

impl SpanProcessor for Recorder {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}
    fn on_end(&self, span: SpanData) {
        self.0.lock().unwrap().push(span);
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

impl Recorder {
    fn spans(&self) -> Vec<SpanData> {
        self.0.lock().unwrap().clone()
    }

    fn named(&self, name: &str) -> SpanData {
        self.spans()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no span {name:?} in {:?}", self.names()))
    }

    fn names(&self) -> Vec<String> {
        self.spans().iter().map(|s| s.name.to_string()).collect()
    }
}

fn tracer(sampler: Sampler) -> (SdkTracer, Recorder, SdkTracerProvider) {
    let recorder = Recorder::default();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(recorder.clone())
        .with_sampler(sampler)
        .build();
    (provider.tracer("test"), recorder, provider)
}

fn parent_based() -> Sampler {
    Sampler::ParentBased(Box::new(Sampler::AlwaysOn))
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

/// A server span for `POST /mcp`, routed to route `weather`.
fn routed(tracer: &SdkTracer, headers: &HeaderMap) -> RequestSpan {
    let mut span = RequestSpan::start_with(tracer, &server(headers));
    span.routed(&Method::POST, "weather");
    span
}

fn server<'a>(headers: &'a HeaderMap) -> ServerRequest<'a> {
    ServerRequest {
        method: &Method::POST,
        path: "/mcp",
        version: Version::HTTP_11,
        headers,
    }
}

fn attribute(span: &SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

fn gateway() -> Uri {
    "https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com:8443/mcp?x=secret"
        .parse()
        .unwrap()
}

#[test]
fn with_export_off_no_span_is_made_and_headers_pass_unchanged() {
    assert!(!super::enabled());
    let agent = headers(&[("traceparent", &format!("00-{AGENT_TRACE}-{AGENT_SPAN}-01"))]);
    let mut span = RequestSpan::start(&server(&agent));
    assert!(!span.is_active());
    span.set_mcp(&McpCall {
        method: "tools/call",
        id: Some(&json!(1)),
        tool: Some("t"),
    });
    span.set_status_code(502);
    let upstream = span.upstream(&UpstreamRequest {
        method: &Method::POST,
        uri: &gateway(),
    });
    let mut out = agent.clone();
    upstream.inject(&mut out);
    assert_eq!(out, agent);
    assert_eq!((span.trace_id(), span.span_id()), (None, None));
    assert_eq!(
        std::mem::size_of::<RequestSpan>(),
        std::mem::size_of::<usize>()
    );
}

#[test]
fn the_server_span_is_the_child_of_the_agents_span_and_names_the_mcp_call() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = headers(&[
        ("traceparent", &format!("00-{AGENT_TRACE}-{AGENT_SPAN}-01")),
        ("tracestate", "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"),
        ("baggage", "userId=alice"),
        ("mcp-session-id", "191c4850af6c49e08843a3f6c80e5046"),
        ("mcp-protocol-version", "2025-06-18"),
        ("user-agent", "strands-agents/1.0"),
    ]);
    let mut span = routed(&tracer, &agent);
    span.set_mcp(&McpCall {
        method: "tools/call",
        id: Some(&json!(7)),
        tool: Some("Weather___get_weather"),
    });
    assert_eq!(span.trace_id().as_deref(), Some(AGENT_TRACE));
    let server_id = span.span_id().unwrap();
    let ids = span.ids().unwrap();
    assert_eq!(
        (ids.trace_id(), ids.span_id()),
        (AGENT_TRACE, server_id.as_str())
    );

    let mut upstream = span.upstream(&UpstreamRequest {
        method: &Method::POST,
        uri: &gateway(),
    });
    let mut to_gateway = agent.clone();
    upstream.inject(&mut to_gateway);
    let upstream_id = upstream.span_id().unwrap();
    assert_eq!(
        to_gateway["traceparent"],
        format!("00-{AGENT_TRACE}-{upstream_id}-01").as_str(),
        "the gateway's parent is the upstream span"
    );
    assert_eq!(
        to_gateway["tracestate"], agent["tracestate"],
        "kept as sent"
    );
    assert_eq!(to_gateway["baggage"], "userId=alice");
    upstream.set_status_code(200);
    upstream.end();
    span.set_status_code(200);
    span.end();

    let server = recorder.named("tools/call Weather___get_weather");
    assert_eq!(server.span_kind, SpanKind::Server);
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex(AGENT_TRACE).unwrap()
    );
    assert_eq!(server.parent_span_id, SpanId::from_hex(AGENT_SPAN).unwrap());
    assert!(server.parent_span_is_remote);
    assert_eq!(server.span_context.span_id().to_string(), server_id);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "Weather___get_weather"),
        ("gen_ai.operation.name", "execute_tool"),
        ("jsonrpc.request.id", "7"),
        ("mcp.session.id", "191c4850af6c49e08843a3f6c80e5046"),
        ("mcp.protocol.version", "2025-06-18"),
        ("http.request.method", "POST"),
        ("http.route", "/mcp"),
        ("mcp_vpce_proxy.route", "weather"),
        ("http.response.status_code", "200"),
        ("user_agent.original", "strands-agents/1.0"),
    ] {
        assert_eq!(attribute(&server, key).as_deref(), Some(value), "{key}");
    }
    assert_eq!(server.status, Status::Unset);

    let client = recorder.named("POST");
    assert_eq!(client.span_kind, SpanKind::Client);
    assert_eq!(client.parent_span_id.to_string(), server_id);
    assert!(!client.parent_span_is_remote);
    assert_eq!(
        attribute(&client, "url.full").as_deref(),
        Some("https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com:8443/mcp"),
        "never the query"
    );
    assert_eq!(attribute(&client, "server.port").as_deref(), Some("8443"));
}

#[test]
fn without_a_traceparent_the_request_starts_a_trace() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    for bad in [
        None,
        Some("00-zzzz-00f067aa0ba902b7-01"),
        Some("00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
    ] {
        let agent = match bad {
            Some(value) => headers(&[("traceparent", value)]),
            None => HeaderMap::new(),
        };
        let span = routed(&tracer, &agent);
        let trace = span.trace_id().unwrap();
        assert_ne!(trace, AGENT_TRACE);
        assert_ne!(trace, "0".repeat(32));
        span.end();
    }
    for span in recorder.spans() {
        assert_eq!(span.parent_span_id, SpanId::INVALID);
        assert_eq!(span.name, "POST /mcp");
    }
}

#[test]
fn an_unsampled_agent_trace_is_followed_and_nothing_is_recorded() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = headers(&[("traceparent", &format!("00-{AGENT_TRACE}-{AGENT_SPAN}-00"))]);
    let span = routed(&tracer, &agent);
    let upstream = span.upstream(&UpstreamRequest {
        method: &Method::POST,
        uri: &gateway(),
    });
    let mut out = HeaderMap::new();
    upstream.inject(&mut out);
    let traceparent = out["traceparent"].to_str().unwrap().to_string();
    assert!(
        traceparent.starts_with(&format!("00-{AGENT_TRACE}-")),
        "{traceparent}"
    );
    assert!(traceparent.ends_with("-00"), "not sampled: {traceparent}");
    drop(upstream);
    drop(span);
    assert!(recorder.spans().is_empty());
}

#[test]
fn only_allow_listed_values_become_attributes() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = headers(&[
        ("authorization", "Bearer secret-token-1"),
        ("cookie", "session=secret-cookie-2"),
        ("x-api-key", "secret-key-3"),
        ("x-amz-security-token", "secret-token-4"),
        ("mcp-session-id", "s-1"),
    ]);
    let mut span = routed(&tracer, &agent);
    span.set_mcp(&McpCall {
        method: "tools/call",
        id: Some(&json!("req-1")),
        tool: Some("echo"),
    });
    let upstream = span.upstream(&UpstreamRequest {
        method: &Method::POST,
        uri: &"https://gw.example:443/mcp?token=secret-query-5"
            .parse()
            .unwrap(),
    });
    upstream.end();
    span.end();
    for recorded in recorder.spans() {
        for KeyValue { key, value, .. } in &recorded.attributes {
            assert!(
                !value.to_string().contains("secret"),
                "{} carries {key} = {value}",
                recorded.name
            );
        }
    }
    let server = recorder.named("tools/call echo");
    assert_eq!(
        attribute(&server, "jsonrpc.request.id").as_deref(),
        Some("req-1")
    );
}

#[test]
fn agent_strings_are_bounded() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = HeaderMap::new();
    let mut span = routed(&tracer, &agent);
    let long = "é".repeat(400);
    span.set_mcp(&McpCall {
        method: "tools/call",
        id: None,
        tool: Some(&long),
    });
    span.end();
    let mut span = routed(&tracer, &agent);
    span.set_mcp(&McpCall {
        method: "x/made-up",
        id: Some(&json!(null)),
        tool: None,
    });
    span.end();
    let spans = recorder.spans();
    let tool = attribute(&spans[0], "gen_ai.tool.name").unwrap();
    assert_eq!(tool.len(), 256);
    assert_eq!(spans[1].name, "_OTHER");
    assert_eq!(
        attribute(&spans[1], "mcp.method.name").as_deref(),
        Some("_OTHER")
    );
    assert_eq!(
        attribute(&spans[1], "jsonrpc.request.id"),
        None,
        "null ids are not recorded"
    );
}

#[test]
fn errors_set_the_status_and_error_type() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = HeaderMap::new();

    let mut span = routed(&tracer, &agent);
    span.set_status_code(502);
    span.end();
    let mut span = routed(&tracer, &agent);
    span.set_mcp(&McpCall {
        method: "tools/call",
        id: Some(&json!(1)),
        tool: Some("denied"),
    });
    span.set_rpc_error(-32001);
    span.end();
    let mut span = routed(&tracer, &agent);
    span.set_status_code(404);
    let mut step = span.step(Step::Credential { source: "oauth2" });
    step.set_error("token_endpoint_refused");
    step.end();
    span.set_error("credential_failed");
    span.end();

    let spans = recorder.spans();
    let by_status: Vec<(String, Option<String>, Status)> = spans
        .iter()
        .map(|s| {
            (
                s.name.to_string(),
                attribute(s, "error.type"),
                s.status.clone(),
            )
        })
        .collect();
    assert_eq!(
        by_status,
        [
            (
                "POST /mcp".to_string(),
                Some("502".to_string()),
                Status::error("502")
            ),
            (
                "tools/call denied".to_string(),
                Some("-32001".to_string()),
                Status::error("-32001")
            ),
            (
                "credential fetch".to_string(),
                Some("token_endpoint_refused".to_string()),
                Status::error("token_endpoint_refused")
            ),
            (
                "POST /mcp".to_string(),
                Some("credential_failed".to_string()),
                Status::error("credential_failed")
            ),
        ]
    );
    assert_eq!(
        attribute(&spans[1], "rpc.response.status_code").as_deref(),
        Some("-32001")
    );
    assert_eq!(
        attribute(&spans[3], "http.response.status_code").as_deref(),
        Some("404")
    );
}

#[test]
fn connection_steps_keep_the_connectors_own_times() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = HeaderMap::new();
    let span = routed(&tracer, &agent);
    let server_id = span.span_id().unwrap();
    let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
    let ms = Duration::from_millis;
    span.record_step(
        Step::Dns {
            name: "vpce-1.example",
        },
        t0,
        t0 + ms(3),
        None,
    );
    span.record_step(
        Step::Connect {
            peer: "127.0.0.1:8443".parse().unwrap(),
        },
        t0 + ms(3),
        t0 + ms(5),
        None,
    );
    span.record_step(
        Step::Tls {
            server_name: "gw.example",
        },
        t0 + ms(5),
        t0 + ms(9),
        Some("server_certificate_invalid"),
    );
    span.end();

    let dns = recorder.named("DNS lookup vpce-1.example");
    assert_eq!((dns.start_time, dns.end_time), (t0, t0 + ms(3)));
    assert_eq!(dns.span_kind, SpanKind::Client);
    assert_eq!(
        attribute(&dns, "dns.question.name").as_deref(),
        Some("vpce-1.example")
    );
    let connect = recorder.named("socket connect 127.0.0.1:8443");
    assert_eq!(
        attribute(&connect, "network.peer.address").as_deref(),
        Some("127.0.0.1")
    );
    assert_eq!(
        attribute(&connect, "network.peer.port").as_deref(),
        Some("8443")
    );
    let tls = recorder.named("TLS client handshake gw.example");
    assert_eq!(tls.status, Status::error("server_certificate_invalid"));
    for step in [dns, connect, tls] {
        assert_eq!(step.parent_span_id.to_string(), server_id);
    }
}

#[test]
fn a_dropped_handle_ends_its_span() {
    let (tracer, recorder, _provider) = tracer(parent_based());
    let agent = HeaderMap::new();
    let span = routed(&tracer, &agent);
    let upstream = span.upstream(&UpstreamRequest {
        method: &Method::GET,
        uri: &gateway(),
    });
    assert!(recorder.spans().is_empty());
    // The agent went away: the request's future (and its handles) are dropped.
    drop(upstream);
    drop(span);
    assert_eq!(recorder.names(), ["GET", "POST /mcp"]);
}

// ---- The export queue --------------------------------------------------------------

/// An exporter that never answers, or that fails every batch.
#[derive(Debug, Clone)]
struct Collector {
    hang: bool,
    seen: Arc<Mutex<usize>>,
}

impl SpanExporter for Collector {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        *self.seen.lock().unwrap() += batch.len();
        if self.hang {
            std::future::pending::<()>().await;
        }
        Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
            "connection refused".into(),
        ))
    }
}

fn queued_tracer(
    queue: usize,
    max_batch: usize,
    collector: Collector,
) -> (SdkTracer, SdkTracerProvider) {
    let processor = export::start(
        queue,
        export::Exporter {
            exporter: collector,
            url: "http://127.0.0.1:1/v1/traces".into(),
            max_batch,
            schedule_delay: Duration::from_secs(3600),
            export_timeout: Duration::from_secs(3600),
            prepare: Box::new(|_, _| {}),
        },
    )
    .unwrap();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .build();
    (provider.tracer("test"), provider)
}

fn dropped(reason: SpanDropReason) -> u64 {
    metrics()
        .trace_spans_dropped
        .get_or_create(&reason.into())
        .get()
}

#[test]
fn a_full_queue_drops_spans_and_counts_them_without_waiting() {
    let seen = Arc::new(Mutex::new(0));
    let (tracer, provider) = queued_tracer(
        2,
        1,
        Collector {
            hang: true,
            seen: seen.clone(),
        },
    );
    let before = dropped(SpanDropReason::queue_full);
    let agent = HeaderMap::new();
    for _ in 0..10 {
        routed(&tracer, &agent).end();
    }
    // One span at most is with the hanging collector, two wait in the queue.
    assert!(dropped(SpanDropReason::queue_full) - before >= 7);
    // Dropping the provider would wait for the hanging export to shut down.
    std::mem::forget(provider);
}

#[test]
fn spans_the_collector_refuses_are_counted() {
    let seen = Arc::new(Mutex::new(0));
    let (tracer, provider) = queued_tracer(
        64,
        4,
        Collector {
            hang: false,
            seen: seen.clone(),
        },
    );
    let before = dropped(SpanDropReason::export_failed);
    let agent = HeaderMap::new();
    for _ in 0..10 {
        routed(&tracer, &agent).end();
    }
    provider.force_flush().unwrap();
    assert_eq!(*seen.lock().unwrap(), 10);
    assert!(dropped(SpanDropReason::export_failed) - before >= 10);
    provider.shutdown().unwrap();
}
