//! OpenTelemetry traces: the proxy's hop joins the agent's trace and the gateway's.
//!
//! The proxy runs as a child process (export is set up once per process, from the
//! `OTEL_*` environment) against the TLS gateway fixture and a loopback OTLP/HTTP
//! receiver that decodes what it is sent with the `opentelemetry-proto` crate.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::common::aws::ChildProxy;
use crate::common::client;
use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, send};
use crate::common::otlp::{OtlpReceiver, ReceivedSpan, CLIENT, SERVER};
use crate::common::proxy::{head, Mode, Setup, OUTSIDE};
use crate::common::token_server::TokenServer;
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};

const AGENT_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const AGENT_SPAN: &str = "00f067aa0ba902b7";
const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#;

fn agent_traceparent() -> String {
    format!("00-{AGENT_TRACE}-{AGENT_SPAN}-01")
}

/// Gateway, DNS (private DNS off), receiver, and the proxy exporting to it.
struct Traced {
    upstream: Upstream,
    receiver: OtlpReceiver,
    proxy: ChildProxy,
    audit: PathBuf,
    _dns: DnsServer,
    _dir: tempfile::TempDir,
}

async fn traced(envs: &[(&str, String)]) -> Traced {
    traced_with("", "", envs).await
}

/// As [`traced`], with the route's credential table (the token file's by default) and
/// more route keys.
async fn traced_with(credential: &str, route_extra: &str, envs: &[(&str, String)]) -> Traced {
    let upstream = Upstream::start().await;
    let receiver = OtlpReceiver::start().await;
    let dns = DnsServer::start(&[
        (ENDPOINT_HOST, "127.0.0.1".parse().unwrap()),
        (GATEWAY_HOST, OUTSIDE.parse().unwrap()),
    ])
    .await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    std::fs::write(&token, "gateway-token").unwrap();
    let audit = dir.path().join("audit.jsonl");
    let credential = match credential {
        "" => format!(
            "credential = {{ type = \"file\", path = \"{}\" }}",
            token.display()
        ),
        table => table.to_string(),
    };
    let toml = format!(
        r#"{head}
[audit]
to = "file"
path = "{audit}"
[[route]]
name = "weather"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
{credential}
{route_extra}
"#,
        head = head(&dns),
        audit = audit.display(),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    let mut all = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint()),
        // Batches go out quickly, so the tests wait little.
        ("OTEL_BSP_SCHEDULE_DELAY", "50".to_string()),
    ];
    all.extend(envs.iter().cloned());
    let proxy = ChildProxy::start_with_admin(&toml, &all, "info", &[]).await;
    Traced {
        upstream,
        receiver,
        proxy,
        audit,
        _dns: dns,
        _dir: dir,
    }
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> Vec<&'a ReceivedSpan> {
    spans.iter().filter(|s| s.name == name).collect()
}

fn one<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    let found = named(spans, name);
    assert_eq!(found.len(), 1, "one span {name:?} in {spans:#?}");
    found[0]
}

fn children<'a>(spans: &'a [ReceivedSpan], parent: &ReceivedSpan) -> Vec<&'a ReceivedSpan> {
    spans
        .iter()
        .filter(|s| s.parent_span_id == parent.span_id)
        .collect()
}

/// The access lines of the child's JSON log.
fn access_lines(proxy: &ChildProxy) -> Vec<Value> {
    proxy
        .logs()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|l| l["target"] == "mcp_vpce_proxy::access")
        .collect()
}

fn audit_records(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

async fn metric(admin: SocketAddr, line_start: &str) -> f64 {
    let page = send("GET", &format!("http://{admin}/metrics"), &[], "")
        .await
        .body;
    page.lines()
        .find(|l| l.starts_with(line_start))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn nanos(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_span_is_the_child_of_the_agents_span_and_the_gateway_joins_the_trace() {
    let t = traced(&[
        ("OTEL_SERVICE_NAME", "agent-sidecar".to_string()),
        ("POD_NAME", "agent-7d9f".to_string()),
        ("POD_NAMESPACE", "agents".to_string()),
    ])
    .await;
    let traceparent = agent_traceparent();
    let agent = client::connect_with_headers(
        &t.proxy.url(),
        &[
            ("traceparent", &traceparent),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("baggage", "userId=alice"),
        ],
    )
    .await;
    let result = client::call_tool(&agent, "DemoTarget___echo", json!({"text": "hi"})).await;
    assert_eq!(client::first_text(&result), Some("hi"));

    let spans = t
        .receiver
        .wait_for("the tools/call spans", |s| {
            !named(s, "tools/call DemoTarget___echo").is_empty()
                && s.iter().filter(|s| s.kind == CLIENT).count() >= 3
        })
        .await;
    // The server span: the agent's span is its parent; it names the MCP method and tool.
    let call = one(&spans, "tools/call DemoTarget___echo");
    assert_eq!(call.kind, SERVER);
    assert_eq!(call.trace_id, AGENT_TRACE);
    assert_eq!(call.parent_span_id, AGENT_SPAN);
    for (key, value) in [
        ("mcp.method.name", "tools/call"),
        ("gen_ai.tool.name", "DemoTarget___echo"),
        ("gen_ai.operation.name", "execute_tool"),
        ("http.request.method", "POST"),
        ("http.route", "/mcp"),
        ("mcp_vpce_proxy.route", "weather"),
        ("http.response.status_code", "200"),
    ] {
        assert_eq!(call.attribute(key), Some(value), "{key}: {call:#?}");
    }
    assert!(call.attribute("jsonrpc.request.id").is_some(), "{call:#?}");
    assert!(call.attribute("mcp.session.id").is_some(), "{call:#?}");
    assert_eq!(call.status_code, 0, "unset: no error");
    assert_eq!(call.resource["service.name"], "agent-sidecar");
    assert_eq!(call.resource["service.version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(call.resource["k8s.pod.name"], "agent-7d9f");
    assert_eq!(call.resource["k8s.namespace.name"], "agents");
    // Nothing of the body or of other headers: the tool's argument never appears.
    for span in &spans {
        for value in span.attributes.values() {
            assert!(!value.contains("gateway-token"), "{span:#?}");
        }
    }

    // The gateway request: a client span below the server span, and the traceparent
    // the gateway received names it as the parent, in the agent's trace.
    let upstream_span = children(&spans, call)
        .into_iter()
        .find(|s| s.kind == CLIENT)
        .unwrap_or_else(|| panic!("no client span below {call:#?}"));
    assert_eq!(upstream_span.name, "POST");
    assert_eq!(
        upstream_span.attribute("server.address"),
        Some(GATEWAY_HOST)
    );
    assert_eq!(
        upstream_span.attribute("http.response.status_code"),
        Some("200")
    );
    let expected = format!("00-{AGENT_TRACE}-{}-01", upstream_span.span_id);
    let seen = t.upstream.requests();
    let at_gateway = seen
        .iter()
        .find(|r| {
            r.headers
                .get("traceparent")
                .is_some_and(|v| v == expected.as_str())
        })
        .unwrap_or_else(|| panic!("no gateway request with traceparent {expected}"));
    assert_eq!(at_gateway.headers["tracestate"], "rojo=00f067aa0ba902b7");
    assert_eq!(at_gateway.headers["baggage"], "userId=alice");
    // Every traceparent the gateway got is of the agent's trace, with an exported parent
    // (the session's GET stream is still open: its spans end with it).
    for request in seen.iter().filter(|r| r.method == http::Method::POST) {
        let value = request.headers["traceparent"].to_str().unwrap();
        let parts: Vec<&str> = value.split('-').collect();
        assert_eq!(parts[1], AGENT_TRACE, "{value}");
        assert!(
            spans.iter().any(|s| s.span_id == parts[2]),
            "{value}: parent not exported"
        );
    }

    // The first request opened the connection: its DNS, connect and TLS steps, with the
    // names dialed, inside its gateway request.
    let initialize = one(&spans, "initialize");
    let opening = children(&spans, initialize)
        .into_iter()
        .find(|s| s.kind == CLIENT)
        .unwrap();
    let steps: Vec<&str> = children(&spans, opening)
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    assert!(
        steps.contains(&format!("DNS lookup {ENDPOINT_HOST}").as_str()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&format!("socket connect 127.0.0.1:{}", t.upstream.port()).as_str()),
        "{steps:?}"
    );
    assert!(
        steps.contains(&format!("TLS client handshake {GATEWAY_HOST}").as_str()),
        "{steps:?}"
    );
    for step in children(&spans, opening) {
        assert!(step.start_unix_nano >= opening.start_unix_nano, "{step:#?}");
        assert!(step.end_unix_nano <= opening.end_unix_nano, "{step:#?}");
    }

    // The access line and the audit record lead to the trace.
    let lines = access_lines(&t.proxy);
    let line = lines
        .iter()
        .find(|l| l["rpc_method"] == "tools/call")
        .unwrap_or_else(|| panic!("no tools/call access line:\n{}", t.proxy.logs()));
    assert_eq!(line["trace_id"], AGENT_TRACE);
    assert_eq!(line["span_id"], call.span_id.as_str());
    let records = audit_records(&t.audit);
    let record = records
        .iter()
        .find(|r| r["method"] == "tools/call")
        .unwrap_or_else(|| panic!("no tools/call audit record: {records:?}"));
    assert_eq!(record["trace_id"], AGENT_TRACE);
    assert_eq!(record["span_id"], call.span_id.as_str());

    // A tool that reports an error (`isError`) marks its span as the MCP conventions say.
    let failed = client::call_tool(&agent, "DemoTarget___fail", json!({})).await;
    assert_eq!(failed.is_error, Some(true));
    let spans = t
        .receiver
        .wait_for("the failed call's span", |s| {
            !named(s, "tools/call DemoTarget___fail").is_empty()
        })
        .await;
    let failed = one(&spans, "tools/call DemoTarget___fail");
    assert_eq!(failed.attribute("error.type"), Some("tool_error"));
    assert_eq!(failed.status_code, 2, "error");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_streamed_answers_spans_end_when_the_stream_ends_or_the_agent_leaves() {
    let t = traced(&[]).await;
    let agent = client::connect(&t.proxy.url()).await;
    let mut progress = agent.service().take_progress();
    let call = client::start_tool_call(&agent, "DemoTarget___slow_progress", json!({})).await;
    progress.recv().await.expect("the first progress event");
    let released = SystemTime::now();
    t.upstream.release_progress();
    call.result().await.expect("the call's result");

    let spans = t
        .receiver
        .wait_for("the streamed call's spans", |s| {
            !named(s, "tools/call DemoTarget___slow_progress").is_empty()
        })
        .await;
    let server = one(&spans, "tools/call DemoTarget___slow_progress");
    // The stream could only end after the gateway was let go: so could the spans.
    assert!(server.end_unix_nano >= nanos(released), "{server:#?}");
    let upstream_span = children(&spans, server)
        .into_iter()
        .find(|s| s.kind == CLIENT)
        .unwrap();
    assert!(
        upstream_span.end_unix_nano >= nanos(released),
        "{upstream_span:#?}"
    );
    assert_eq!(server.status_code, 0);

    // An agent that leaves mid-stream: both spans end, marked client_gone.
    let leaving = client::connect(&t.proxy.url()).await;
    let mut progress = leaving.service().take_progress();
    let _call = client::start_tool_call(&leaving, "DemoTarget___slow_progress", json!({})).await;
    progress.recv().await.expect("the first progress event");
    leaving.cancel().await.unwrap();
    let abandoned = |s: &ReceivedSpan| {
        s.name == "tools/call DemoTarget___slow_progress"
            && s.attribute("error.type") == Some("client_gone")
    };
    let spans = t
        .receiver
        .wait_for("the abandoned call's span", |s| s.iter().any(abandoned))
        .await;
    let gone = spans.iter().find(|s| abandoned(s)).unwrap();
    assert_eq!(gone.kind, SERVER);
    assert_eq!(gone.status_code, 2, "error");
    let gone_upstream = children(&spans, gone)
        .into_iter()
        .find(|s| s.kind == CLIENT)
        .unwrap();
    assert_eq!(gone_upstream.attribute("error.type"), Some("client_gone"));
    t.upstream.release_progress();
}

#[tokio::test(flavor = "multi_thread")]
async fn with_the_collector_gone_requests_succeed_and_the_drops_are_counted() {
    let t = traced(&[]).await;
    let admin = t.proxy.admin.unwrap();
    t.receiver.stop();
    let agent = client::connect(&t.proxy.url()).await;
    for i in 0..5 {
        let text = format!("call {i}");
        let result = client::call_tool(&agent, "DemoTarget___echo", json!({ "text": text })).await;
        assert_eq!(client::first_text(&result), Some(text.as_str()));
    }
    let dropped = "mcp_vpce_proxy_trace_spans_dropped_total{reason=\"export_failed\"}";
    let mut count = 0.0;
    for _ in 0..600 {
        count = metric(admin, dropped).await;
        if count > 0.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(count > 0.0, "{}", t.proxy.logs());
    assert!(t.receiver.spans().is_empty());
    // Said once, not per span.
    let warnings = || {
        t.proxy
            .logs()
            .lines()
            .filter(|l| l.contains("telemetry: spans dropped"))
            .count()
    };
    for _ in 0..600 {
        if warnings() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(warnings(), 1, "{}", t.proxy.logs());
}

/// A loopback stand-in for the ECS task metadata endpoint (v4).
async fn ecs_metadata() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    use http_body_util::Full;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let service = hyper::service::service_fn(
                |req: http::Request<hyper::body::Incoming>| async move {
                    let body = match req.uri().path() {
                        "/v4/abc/task" => json!({
                            "Cluster": "agents",
                            "TaskARN": "arn:aws:ecs:us-east-1:111122223333:task/agents/0123456789abcdef",
                            "Family": "agent-with-mcp-vpce-proxy",
                            "Revision": "7",
                            "LaunchType": "FARGATE",
                            "AvailabilityZone": "us-east-1a"
                        }),
                        "/v4/abc" => json!({"Name": "mcp-vpce-proxy", "DockerId": "cafe01"}),
                        _ => json!({}),
                    };
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                        bytes::Bytes::from(body.to_string()),
                    )))
                },
            );
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, task)
}

#[tokio::test(flavor = "multi_thread")]
async fn on_ecs_the_spans_name_the_task() {
    let (metadata, task) = ecs_metadata().await;
    let t = traced(&[(
        "ECS_CONTAINER_METADATA_URI_V4",
        format!("http://{metadata}/v4/abc"),
    )])
    .await;
    let agent = client::connect(&t.proxy.url()).await;
    client::call_tool(&agent, "DemoTarget___echo", json!({"text": "x"})).await;
    let spans = t
        .receiver
        .wait_for("a span", |s| {
            !named(s, "tools/call DemoTarget___echo").is_empty()
        })
        .await;
    let resource = &spans[0].resource;
    assert_eq!(resource["cloud.platform"], "aws_ecs");
    assert_eq!(
        resource["aws.ecs.task.arn"],
        "arn:aws:ecs:us-east-1:111122223333:task/agents/0123456789abcdef"
    );
    assert_eq!(
        resource["aws.ecs.cluster.arn"],
        "arn:aws:ecs:us-east-1:111122223333:cluster/agents"
    );
    assert_eq!(resource["aws.ecs.launchtype"], "fargate");
    assert_eq!(resource["container.name"], "mcp-vpce-proxy");
    task.abort();
}

/// With export off (no collector named), the agent's trace context reaches the gateway
/// as sent and nothing is added to the logs.
#[tokio::test(flavor = "multi_thread")]
async fn with_export_off_the_agents_trace_context_passes_unchanged() {
    let setup = Setup::start(Mode::PrivateDnsOff).await;
    let traceparent = agent_traceparent();
    let answer = send(
        "POST",
        &setup.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("traceparent", &traceparent),
            ("tracestate", "rojo=00f067aa0ba902b7"),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}"#,
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let seen = &setup.upstream.requests()[0];
    assert_eq!(seen.headers["traceparent"], traceparent.as_str());
    assert_eq!(seen.headers["tracestate"], "rojo=00f067aa0ba902b7");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_fetch_is_a_step_of_the_gateway_request_and_a_refusal_marks_the_span() {
    let tokens = TokenServer::start(Some(3600)).await;
    // The fetch takes a while: the step is there to show where such time goes.
    tokens.delay(Duration::from_millis(50));
    let t = traced_with(
        &format!(
            "[route.credential]\ntype = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"agent\"\n\
             client_secret_env = \"CLIENT_SECRET\"",
            tokens.url()
        ),
        "[route.policy]\ndeny_tools = [\"Secret___*\"]",
        &[("CLIENT_SECRET", "s3cret-client-value".to_string())],
    )
    .await;
    // The first request fetches the token; the second uses the cached one.
    for _ in 0..2 {
        let answer = post_rpc(&t.proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, t.proxy.logs());
    }
    let refused = post_rpc(
        &t.proxy.url(),
        r#"{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"Secret___read","arguments":{}}}"#,
    )
    .await;
    assert_eq!(refused.status, 200, "{}", refused.body);
    let code = refused.json()["error"]["code"]
        .as_i64()
        .unwrap()
        .to_string();

    let spans = t
        .receiver
        .wait_for("two initialize requests and the refused call", |s| {
            named(s, "initialize").len() == 2 && !named(s, "tools/call Secret___read").is_empty()
        })
        .await;
    let mut fetched = Vec::new();
    for initialize in named(&spans, "initialize") {
        let upstream_span = children(&spans, initialize)
            .into_iter()
            .find(|s| s.kind == CLIENT)
            .unwrap();
        let steps = children(&spans, upstream_span);
        fetched.extend(
            steps
                .iter()
                .filter(|s| s.name == "credential fetch")
                .map(|s| {
                    s.attribute("mcp_vpce_proxy.credential.source")
                        .unwrap_or("")
                        .to_string()
                }),
        );
    }
    assert_eq!(fetched, ["oauth2"], "one fetch, for the first request");
    for span in &spans {
        for value in span.attributes.values() {
            assert!(
                !value.contains("s3cret") && !value.contains("oauth-access-token"),
                "{span:#?}"
            );
        }
    }

    let call = one(&spans, "tools/call Secret___read");
    assert_eq!(call.status_code, 2, "error");
    assert_eq!(call.attribute("error.type"), Some(code.as_str()));
    assert_eq!(
        call.attribute("rpc.response.status_code"),
        Some(code.as_str())
    );
    assert_eq!(
        call.attribute("mcp_vpce_proxy.reason"),
        Some("tool_refused")
    );
    assert_eq!(call.attribute("jsonrpc.request.id"), Some("9"));
    assert!(
        children(&spans, call).is_empty(),
        "refused before any gateway request"
    );
}
