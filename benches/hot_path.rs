//! Micro-benchmarks of the pure functions every forwarded request runs through, so that a
//! regression shows without a full load run (`bench/run.sh`): the JSON-RPC peek and read,
//! the header rewrite, the SSE scan, the per-request context (made, routed, finished)
//! and the write coalescing of the gateway connection; and two that are not pure but
//! in-process: one small request over the gateway's HTTP/2 connection as the proxy drives
//! it (`h2_gateway_stream`: `h2_stream::open`, the answer's head, its body read through
//! `H2Body`, against an in-process `h2` server over a memory pipe, alone and 32 at once),
//! and the MCP layer's judgement of a tools/call (`mcp_layer`: `RouteLayer::on_request`
//! on routes built from a configuration as the proxy builds them); and the per-request
//! bookkeeping of an agent connection's watchdog beside the per-request timer it replaced
//! (`connection_watch`).
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast pass). Criterion keeps the
//! last run under `target/criterion/` and reports the change against it.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use futures_util::future::join_all;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use mcp_vpce_proxy::config::Config;
use mcp_vpce_proxy::exchange::context::{End, RequestContext};
use mcp_vpce_proxy::exchange::message;
use mcp_vpce_proxy::exchange::peek::peek;
use mcp_vpce_proxy::listener::watchdog::Activity;
use mcp_vpce_proxy::mcp::layer::Verdict;
use mcp_vpce_proxy::mcp::sse::{Collect, Field, Scanner, Sink};
use mcp_vpce_proxy::ops::audit::AuditSink;
use mcp_vpce_proxy::ops::metrics::RouteMetrics;
use mcp_vpce_proxy::proxy::forward::rewrite_request_headers;
use mcp_vpce_proxy::proxy::route::RouteTable;
use mcp_vpce_proxy::upstream::coalesce::Coalescing;
use mcp_vpce_proxy::upstream::dns::Dns;
use mcp_vpce_proxy::upstream::h2_stream::{self, H2Body};
use tokio::io::AsyncWrite;

/// Request bodies as MCP clients send them, from the smallest to a tool call with a
/// sizeable argument.
fn bodies() -> Vec<(&'static str, Vec<u8>)> {
    let initialize = br#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{"sampling":{},"roots":{"listChanged":true}},"clientInfo":{"name":"strands-agents","version":"1.0.0"}}}"#.to_vec();
    let notification = br#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_vec();
    let tools_call = br#"{"jsonrpc":"2.0","id":42,"method":"tools/call","params":{"name":"DemoTarget___get_weather","arguments":{"city":"Seattle","units":"metric"},"_meta":{"progressToken":42}}}"#.to_vec();
    // A tool call whose arguments carry ~4 KiB of text (a document to summarise, say):
    // the peek must skip over it, not copy it.
    let large_call = format!(
        r#"{{"jsonrpc":"2.0","id":"call-7","method":"tools/call","params":{{"name":"Docs___summarise","arguments":{{"text":"{}","nested":{{"list":[1,2,3,{{"a":"b"}}]}}}}}}}}"#,
        "lorem ipsum dolor sit amet ".repeat(150)
    )
    .into_bytes();
    let batch = br#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"},{"jsonrpc":"2.0","id":2,"method":"ping"},{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":0}}]"#.to_vec();
    let garbage = b"this is not JSON at all, just a body the gateway will judge".to_vec();
    vec![
        ("initialize", initialize),
        ("notification", notification),
        ("tools_call", tools_call),
        ("tools_call_4k_args", large_call),
        ("batch_of_3", batch),
        ("not_json", garbage),
    ]
}

fn bench_peek(c: &mut Criterion) {
    let mut group = c.benchmark_group("jsonrpc_peek");
    for (name, body) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(name, |b| b.iter(|| peek(black_box(&body))));
    }
    group.finish();
}

/// The read of a POST body for the MCP layer, errors and logs: one parse (`message::read`,
/// what the proxy does) against the lenient peek followed by the validating parse (what it
/// did before).
fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("post_body_read");
    for (name, body) in bodies() {
        group.throughput(Throughput::Bytes(body.len() as u64));
        group.bench_function(format!("{name}/read_once"), |b| {
            b.iter(|| {
                let post = message::read(black_box(&body));
                black_box((post.body.is_ok(), post.rpc.method_label().len()))
            })
        });
        group.bench_function(format!("{name}/peek_then_parse"), |b| {
            b.iter(|| {
                let rpc = peek(black_box(&body));
                let parsed = message::parse(black_box(&body));
                black_box((parsed.is_ok(), rpc.method_label().len()))
            })
        });
    }
    group.finish();
}

/// The headers the Python `mcp` SDK sends on a tools/call inside a session, plus the
/// hop-by-hop and credential headers the rewrite must remove.
fn agent_headers() -> HeaderMap {
    let pairs = [
        ("host", "127.0.0.1:8080"),
        ("accept", "application/json, text/event-stream"),
        ("accept-encoding", "gzip, deflate"),
        ("connection", "keep-alive"),
        ("user-agent", "python-httpx/0.28.1"),
        ("content-type", "application/json"),
        ("content-length", "161"),
        ("mcp-session-id", "3f1c9a0e6b7d4e2a9c8b1d0f5e4a3b2c"),
        ("mcp-protocol-version", "2025-06-18"),
        ("authorization", "Bearer caller-token-that-must-not-leave"),
        (
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        ),
    ];
    let mut map = HeaderMap::with_capacity(pairs.len());
    for (name, value) in pairs {
        map.append(
            HeaderName::from_static(name),
            HeaderValue::from_static(value),
        );
    }
    map
}

fn bench_rewrite(c: &mut Criterion) {
    let mut group = c.benchmark_group("rewrite_request_headers");
    let template = agent_headers();
    // The clone is setup, not measured: the proxy rewrites the map it already owns.
    group.bench_function("agent_headers_drop_authorization", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| rewrite_request_headers(black_box(headers), false),
            BatchSize::SmallInput,
        )
    });
    group.bench_function("agent_headers_passthrough", |b| {
        b.iter_batched_ref(
            || template.clone(),
            |headers| rewrite_request_headers(black_box(headers), true),
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// A sink that only counts the value bytes: the cost of finding event boundaries.
#[derive(Default)]
struct CountValues(usize);

impl Sink for CountValues {
    fn value(&mut self, _field: Field, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

/// Feeds `pieces` (frames as they arrive) to one scanner, with a fresh sink per event as
/// the response path keeps one; returns the events that ended.
fn scan_all<S: Sink + Default>(pieces: &[&[u8]]) -> usize {
    let mut scanner = Scanner::default();
    let mut sink = S::default();
    let mut events = 0;
    for piece in pieces {
        let mut rest = *piece;
        while let Some(used) = scanner.feed(rest, &mut sink) {
            events += 1;
            rest = &rest[used..];
            black_box(std::mem::take(&mut sink));
        }
    }
    events
}

fn bench_sse_scan(c: &mut Criterion) {
    // A tools/call answer as one ~300-byte message event, as the gateway sends it.
    let one = b"event: message\nid: 1\ndata: {\"jsonrpc\":\"2.0\",\"id\":42,\"result\":{\"content\":[{\"type\":\"text\",\"text\":\"Weather in Seattle: 22 C, sunny, light wind from the north-west, humidity 61 %, visibility 10 km, pressure 1016 hPa; tomorrow 19 C.\"}],\"isError\":false}}\n\n".to_vec();
    let sixteen = one.repeat(16);
    // The same event split over three frames, CRLF line ends and a comment first.
    let crlf = String::from_utf8(one.clone())
        .unwrap()
        .replace('\n', "\r\n");
    let crlf = format!(": keep-alive\r\n\r\n{crlf}").into_bytes();
    let (a, rest) = crlf.split_at(20);
    let (b, c_) = rest.split_at(rest.len() / 2);

    let mut group = c.benchmark_group("sse_scan");
    let cases: [(&str, Vec<&[u8]>); 3] = [
        ("one_event_one_frame", vec![&one]),
        ("sixteen_events_one_frame", vec![&sixteen]),
        ("crlf_comment_three_frames", vec![a, b, c_]),
    ];
    for (name, pieces) in &cases {
        let bytes: usize = pieces.iter().map(|p| p.len()).sum();
        group.throughput(Throughput::Bytes(bytes as u64));
        group.bench_function(format!("{name}/boundaries"), |bench| {
            bench.iter(|| scan_all::<CountValues>(black_box(pieces)))
        });
        group.bench_function(format!("{name}/collect_fields"), |bench| {
            bench.iter(|| scan_all::<Collect>(black_box(pieces)))
        });
    }
    group.finish();
}

/// The per-request context of a forwarded tools/call, from arrival to its end: made,
/// routed, told the JSON-RPC view, finished (access line with logging off, the request
/// metrics). No audit output, as by default.
fn bench_request_context(c: &mut Criterion) {
    let headers = agent_headers();
    let audit = AuditSink::default();
    let metrics = Arc::new(RouteMetrics::new("bench"));
    let name: Arc<str> = Arc::from("bench");
    let (_, tools_call) = &bodies()[2];
    let rpc = peek(tools_call);
    let mut group = c.benchmark_group("request_context");
    group.bench_function("tools_call_new_route_read_finish", |b| {
        b.iter(|| {
            let mut context = RequestContext::new(&Method::POST, black_box(&headers), &audit);
            context.routed(&name, &metrics, &audit);
            context.read(black_box(&rpc), 161);
            context.finish(black_box(300), End::Complete);
        })
    });
    group.finish();
}

/// A sink that takes every byte (the TLS stream, minus the encryption and the syscall).
struct Discard;

impl AsyncWrite for Discard {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Poll::Ready(Ok(black_box(data).len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// What the write coalescer adds per small request on the gateway connection: h2's
/// HEADERS (a frame head and ~30 bytes) and DATA (a frame head and the body) written
/// around the flush it puts off by one turn (with another request open on the
/// connection), then written as one; and a lone request's, written at its first flush.
fn bench_coalesce(c: &mut Criterion) {
    let headers = [0u8; 39];
    let (data_head, body) = ([0u8; 9], bodies()[2].1.clone());
    let mut cx = Context::from_waker(Waker::noop());
    let mut group = c.benchmark_group("write_coalescing");
    let open = |n| std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(n));
    group.bench_function("headers_flush_data_flush", |b| {
        let mut s = Coalescing::new(Discard, open(2));
        b.iter(|| {
            let mut s = Pin::new(&mut s);
            let _ = s.as_mut().poll_write(&mut cx, black_box(&headers));
            assert!(s.as_mut().poll_flush(&mut cx).is_pending());
            let slices = [
                std::io::IoSlice::new(&data_head),
                std::io::IoSlice::new(&body),
            ];
            let _ = s.as_mut().poll_write_vectored(&mut cx, black_box(&slices));
            assert!(s.as_mut().poll_flush(&mut cx).is_ready());
        })
    });
    group.bench_function("lone_request_headers_data_flush", |b| {
        let mut s = Coalescing::new(Discard, open(1));
        b.iter(|| {
            let mut s = Pin::new(&mut s);
            let _ = s.as_mut().poll_write(&mut cx, black_box(&headers));
            let slices = [
                std::io::IoSlice::new(&data_head),
                std::io::IoSlice::new(&body),
            ];
            let _ = s.as_mut().poll_write_vectored(&mut cx, black_box(&slices));
            assert!(s.as_mut().poll_flush(&mut cx).is_ready());
        })
    });
    group.bench_function("uncoalesced_two_writes_two_flushes", |b| {
        let mut s = Discard;
        b.iter(|| {
            let mut s = Pin::new(&mut s);
            let _ = s.as_mut().poll_write(&mut cx, black_box(&headers));
            let _ = s.as_mut().poll_flush(&mut cx);
            let slices = [
                std::io::IoSlice::new(&data_head),
                std::io::IoSlice::new(&body),
            ];
            let _ = s.as_mut().poll_write_vectored(&mut cx, black_box(&slices));
            let _ = s.as_mut().poll_flush(&mut cx);
        })
    });
    group.finish();
}

/// The gateway every request of the in-process benchmarks names.
const GATEWAY: &str =
    "https://bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp";

/// A tools/call answer as the gateway sends it with `application/json` (~200 bytes).
const CALL_ANSWER: &[u8] = br#"{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"Weather in Seattle: 22 C, sunny, light wind from the north-west, humidity 61 %, pressure 1016 hPa."}],"isError":false}}"#;

/// The head of a tools/call as the proxy sends it to an HTTP/2 gateway: the absolute URI
/// (h2 takes `:scheme` and `:authority` from it), the agent's MCP headers and the
/// route's credential, marked sensitive so that HPACK never indexes it.
fn gateway_head_template() -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(6);
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    headers.insert(
        http::header::ACCEPT,
        HeaderValue::from_static("application/json, text/event-stream"),
    );
    headers.insert(
        "mcp-session-id",
        HeaderValue::from_static("3f1c9a0e6b7d4e2a9c8b1d0f5e4a3b2c"),
    );
    headers.insert(
        "mcp-protocol-version",
        HeaderValue::from_static("2025-06-18"),
    );
    let mut token = HeaderValue::from_static("Bearer 0123456789abcdefghijABCDEFGHIJ0123456789");
    token.set_sensitive(true);
    headers.insert(http::header::AUTHORIZATION, token);
    headers
}

fn gateway_parts(headers: &HeaderMap) -> http::request::Parts {
    let (mut parts, ()) = Request::post(GATEWAY)
        .body(())
        .expect("valid request")
        .into_parts();
    parts.headers = headers.clone();
    parts
}

/// The gateway, in process: answers every request, once its body has arrived whole,
/// with [`CALL_ANSWER`] (each request on a task of its own, as an HTTP/2 server does).
async fn serve_gateway(io: tokio::io::DuplexStream) {
    let mut conn = h2::server::Builder::new()
        .max_concurrent_streams(128)
        .handshake::<_, Bytes>(io)
        .await
        .expect("server handshake");
    while let Some(Ok((request, mut respond))) = conn.accept().await {
        tokio::spawn(async move {
            let mut body = request.into_body();
            while let Some(Ok(data)) = body.data().await {
                let _ = body.flow_control().release_capacity(data.len());
            }
            let head = Response::builder()
                .header(http::header::CONTENT_TYPE, "application/json")
                .header(http::header::CONTENT_LENGTH, CALL_ANSWER.len())
                .body(())
                .expect("valid response");
            if let Ok(mut send) = respond.send_response(head, false) {
                let _ = send.send_data(Bytes::from_static(CALL_ANSWER), true);
            }
        });
    }
}

/// One request as `WorkerConns::send` makes it and the response path reads it: opened
/// (HEADERS and DATA queued together), the answer's head awaited, its body read to the
/// end through `H2Body`. Returns the bytes of the answer's body.
async fn call_gateway(
    send: &h2::client::SendRequest<Bytes>,
    parts: http::request::Parts,
    payload: Bytes,
) -> usize {
    let answer = h2_stream::open(send, parts, payload).expect("stream opened");
    let (head, recv) = answer.await.expect("answer head").into_parts();
    let mut body = H2Body::new(recv, &head.headers);
    let mut read = 0;
    while let Some(frame) = std::future::poll_fn(|cx| body.poll_frame(cx)).await {
        if let Ok(data) = frame.expect("answer body").into_data() {
            read += data.len();
        }
    }
    read
}

/// A small tools/call over the gateway's HTTP/2 connection, client and server in one
/// current-thread runtime over a memory pipe: what h2 costs the proxy per request (the
/// in-process server's share included; no TLS, no syscall). The request's head is made
/// outside the measure (the proxy rewrites the agent's).
fn bench_h2_gateway_stream(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let (client_io, server_io) = tokio::io::duplex(1 << 20);
    rt.spawn(serve_gateway(server_io));
    let send = rt.block_on(async {
        let (send, conn) = h2_stream::builder()
            .handshake::<_, Bytes>(client_io)
            .await
            .expect("client handshake");
        tokio::spawn(async move {
            let _ = conn.await;
        });
        send
    });
    let headers = gateway_head_template();
    let payload = Bytes::from(bodies()[2].1.clone());
    // The server's SETTINGS are in: every request below may open its stream at once.
    assert_eq!(
        rt.block_on(call_gateway(
            &send,
            gateway_parts(&headers),
            payload.clone()
        )),
        CALL_ANSWER.len()
    );

    let mut group = c.benchmark_group("h2_gateway_stream");
    group.throughput(Throughput::Elements(1));
    group.bench_function("tools_call_open_head_body", |b| {
        b.iter_batched(
            || gateway_parts(&headers),
            |parts| rt.block_on(call_gateway(&send, parts, black_box(payload.clone()))),
            BatchSize::SmallInput,
        )
    });
    const IN_FLIGHT: usize = 32;
    group.throughput(Throughput::Elements(IN_FLIGHT as u64));
    group.bench_function("tools_call_32_in_flight", |b| {
        b.iter_batched(
            || {
                (0..IN_FLIGHT)
                    .map(|_| gateway_parts(&headers))
                    .collect::<Vec<_>>()
            },
            |all| {
                rt.block_on(join_all(all.into_iter().map(|parts| {
                    call_gateway(&send, parts, black_box(payload.clone()))
                })))
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

/// Three routes as a configuration file declares them: the defaults (validation, the
/// gateway's throttles, coalescing and the cache on, no policy), a tool allow-list that
/// admits the call, and a deny-list that refuses it.
const LAYER_CONFIG: &str = r#"
[dns]
servers = ["127.0.0.1:9"]

[[route]]
path = "/default"
gateway = "https://bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"

[[route]]
path = "/allowed"
gateway = "https://bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"
[route.policy]
allow_tools = ["DemoTarget___*", "Docs___summarise"]
allow_methods = ["initialize", "notifications/*", "tools/*", "ping"]

[[route]]
path = "/denied"
gateway = "https://bench-gw-0123456789.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp"
[route.policy]
deny_tools = ["*___get_weather"]
"#;

/// The MCP layer's judgement of the bench's tools/call (`RouteLayer::on_request`, as
/// `forward` calls it) on routes built by `RouteTable::build`. The body's one parse
/// (`message::read`) is made outside the measure, as `post_body_read` has it.
fn bench_mcp_layer(c: &mut Criterion) {
    // Building the routes' pools and resolver wants a runtime around (nothing is dialed).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _entered = rt.enter();
    let config = Config::from_toml(LAYER_CONFIG, "bench").expect("valid configuration");
    let dns = Arc::new(Dns::new(&config.dns).expect("resolver"));
    let audit = AuditSink::default();
    let table = RouteTable::build(&config, &dns, &audit).expect("routes");
    let (_, tools_call) = &bodies()[2];
    let payload = Bytes::from(tools_call.clone());
    let headers = agent_headers();
    let (mut head, ()) = Request::post("/mcp").body(()).expect("valid").into_parts();
    head.headers = headers.clone();

    let mut group = c.benchmark_group("mcp_layer");
    for (name, path, forwarded) in [
        ("tools_call_default_route", "/default", true),
        ("tools_call_allowed_by_policy", "/allowed", true),
        ("tools_call_denied_by_policy", "/denied", false),
    ] {
        let route = table.get(path).expect("configured route");
        let mut context = RequestContext::new(&Method::POST, &headers, &audit);
        context.routed(&route.name, &route.metrics, route.layer.audit());
        let judge = |post: message::Post<'_>| {
            route.layer.on_request(
                &context,
                &head,
                payload.clone(),
                Some(post.body),
                black_box(&post.rpc),
            )
        };
        let verdict = judge(message::read(&payload));
        assert_eq!(
            matches!(verdict, Verdict::Forward { .. }),
            forwarded,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter_batched(
                || message::read(&payload),
                |post| judge(black_box(post)),
                BatchSize::SmallInput,
            )
        });
        context.finish(200, End::Complete);
    }
    group.finish();
}

/// The per-request bookkeeping of an agent connection's watchdog (`listener::watchdog`,
/// which keeps the request-head deadline), beside what hyper's own header timer cost per
/// request: a boxed `Sleep`, registered with the timer wheel on its first poll and
/// removed again.
fn bench_connection_watch(c: &mut Criterion) {
    let mut group = c.benchmark_group("connection_watch");
    let activity = Arc::new(Activity::from_first_byte());
    group.bench_function("watchdog_per_request", |b| {
        b.iter(|| drop(black_box(activity.start(http::Version::HTTP_11))))
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let mut cx = Context::from_waker(Waker::noop());
    group.bench_function("timer_per_request", |b| {
        b.iter(|| {
            let mut timer = Box::pin(tokio::time::sleep(std::time::Duration::from_secs(30)));
            let _ = std::future::Future::poll(timer.as_mut(), &mut cx);
            drop(black_box(timer));
        })
    });
    group.finish();
}

criterion_group!(
    benches,
    bench_peek,
    bench_read,
    bench_rewrite,
    bench_sse_scan,
    bench_request_context,
    bench_coalesce,
    bench_h2_gateway_stream,
    bench_mcp_layer,
    bench_connection_watch
);
criterion_main!(benches);
