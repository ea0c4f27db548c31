//! Micro-benchmarks of the pure functions every forwarded request runs through, so that a
//! regression shows without a full load run (`bench/run.sh`): the JSON-RPC peek and read,
//! the header rewrite, the SSE scan, the per-request context (made, routed, finished)
//! and the write coalescing of the gateway connection.
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast pass). Criterion keeps the
//! last run under `target/criterion/` and reports the change against it.

use std::hint::black_box;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::Method;
use mcp_vpce_proxy::exchange::context::{End, RequestContext};
use mcp_vpce_proxy::exchange::message;
use mcp_vpce_proxy::exchange::peek::peek;
use mcp_vpce_proxy::mcp::sse::{Collect, Field, Scanner, Sink};
use mcp_vpce_proxy::ops::audit::AuditSink;
use mcp_vpce_proxy::ops::metrics::RouteMetrics;
use mcp_vpce_proxy::proxy::forward::rewrite_request_headers;
use mcp_vpce_proxy::upstream::coalesce::Coalescing;
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

criterion_group!(
    benches,
    bench_peek,
    bench_read,
    bench_rewrite,
    bench_sse_scan,
    bench_request_context,
    bench_coalesce
);
criterion_main!(benches);
