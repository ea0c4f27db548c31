//! Micro-benchmarks of the pure functions every forwarded request runs through, so that a
//! regression shows without a full load run (`bench/run.sh`).
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a fast pass). Criterion keeps the
//! last run under `target/criterion/` and reports the change against it.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use http::header::{HeaderMap, HeaderName, HeaderValue};
use mcp_vpce_proxy::mcp::peek::peek;
use mcp_vpce_proxy::proxy::rewrite_request_headers;

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

criterion_group!(benches, bench_peek, bench_rewrite);
criterion_main!(benches);
