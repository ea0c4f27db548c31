//! The training load of the profile-guided release build (`build/release.sh`): the MCP
//! traffic an agent fleet sends through the proxy, so that the profile the compiler
//! optimises for is the one production runs, not one request shape.
//!
//! Three loads run one after the other, each for its share of `--seconds`:
//! - 32 agents at once (half the time), each looping over a session's requests:
//!   `tools/call` with JSON answers most of the time, and now and then `initialize`, the
//!   `initialized` notification, `tools/list`, `ping`, a batch of two calls, a call the
//!   policy refuses, a call answered as an SSE stream, and the session's `DELETE`;
//! - one agent alone (a quarter), the same loop back to back: the latency path, where
//!   each request finds the proxy idle;
//! - 8 agents holding `GET` event streams of ~100 events each while 8 others call tools
//!   (a quarter).
//!
//! With `--sigv4-url`, every fourth agent sends its requests to a route that signs them
//! with SigV4 instead of adding a bearer token.
//!
//! Every answer must be what the proxy gives a well-behaved agent (2xx; the refused call
//! a JSON-RPC error inside a 200): anything else fails the run, because a profile of
//! error paths would optimise the wrong code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderName, HeaderValue, Method};
use http_body_util::BodyExt;
use http_body_util::Full;
use hyper::client::conn::http1::SendRequest;
use serde_json::json;
use tokio::task::JoinSet;

use crate::conn::{Target, TargetArgs};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Total length of the three loads.
    #[arg(long, default_value_t = 20.0)]
    seconds: f64,
    /// A tool name the route's policy refuses (its call must come back refused).
    #[arg(long, default_value = "Admin___delete_everything")]
    denied_tool: String,
    /// A second route of the same proxy (`http://127.0.0.1:PORT/PATH`) that signs with
    /// SigV4: every fourth agent uses it.
    #[arg(long)]
    sigv4_url: Option<String>,
}

/// What one agent's loop has done, summed over the agents of a load.
#[derive(Default)]
struct Tally {
    requests: u64,
    events: u64,
}

pub async fn run(args: Args) -> Result<String, String> {
    let target = Arc::new(Target::new(&args.target)?);
    let signed = match &args.sigv4_url {
        Some(url) => Arc::new(Target::new(&TargetArgs {
            url: url.clone(),
            ..args.target.clone()
        })?),
        None => target.clone(),
    };
    let targets = [target, signed];
    let denied: Arc<str> = args.denied_tool.into();
    let total = Duration::from_secs_f64(args.seconds.max(0.4));
    let mut report = serde_json::Map::new();
    let started = Instant::now();

    let (burst, alone, streams) = (total / 2, total / 4, total / 4);
    report.insert(
        "agents_32".into(),
        tally_json(load(&targets, &denied, 32, 0, burst).await?),
    );
    report.insert(
        "agent_1".into(),
        tally_json(load(&targets, &denied, 1, 0, alone).await?),
    );
    report.insert(
        "agents_8_streams_8".into(),
        tally_json(load(&targets, &denied, 8, 8, streams).await?),
    );
    report.insert("seconds".into(), json!(started.elapsed().as_secs_f64()));
    Ok(serde_json::Value::Object(report).to_string())
}

fn tally_json(t: Tally) -> serde_json::Value {
    json!({"requests": t.requests, "events": t.events})
}

/// `agents` looping over a session's requests and `streamers` holding event streams,
/// all until `length` has passed.
async fn load(
    targets: &[Arc<Target>; 2],
    denied: &Arc<str>,
    agents: usize,
    streamers: usize,
    length: Duration,
) -> Result<Tally, String> {
    let until = Instant::now() + length;
    let mut tasks = JoinSet::new();
    for n in 0..agents {
        let target = targets[usize::from(n % 4 == 3)].clone();
        let denied = denied.clone();
        tasks.spawn(async move { agent(&target, &denied, n, until).await });
    }
    for _ in 0..streamers {
        let target = targets[0].clone();
        tasks.spawn(async move { streamer(&target, until).await });
    }
    let mut tally = Tally::default();
    while let Some(done) = tasks.join_next().await {
        let t = done.map_err(|e| e.to_string())??;
        tally.requests += t.requests;
        tally.events += t.events;
    }
    if tally.requests == 0 {
        return Err("no request was answered".into());
    }
    Ok(tally)
}

/// One agent: a session's requests over one connection, mostly tool calls.
async fn agent(target: &Target, denied: &str, n: usize, until: Instant) -> Result<Tally, String> {
    let mut sender = target.connect().await?;
    let session = format!("train-session-{n:04}");
    let mut tally = Tally::default();
    let mut step: u64 = 0;
    while Instant::now() < until {
        step += 1;
        let id = step + (n as u64) * 1_000_000;
        let (method, query, body, want) = match step % 40 {
            1 => (Method::POST, "", initialize(id), Want::Json),
            2 => (Method::POST, "", notification(), Want::Accepted),
            3 => (
                Method::POST,
                "",
                request(id, "tools/list", json!({})),
                Want::Json,
            ),
            10 | 30 => (Method::POST, "", request(id, "ping", json!({})), Want::Json),
            15 => (Method::POST, "", batch(id), Want::Json),
            20 => (Method::POST, "", call(id, denied, step), Want::Refused),
            25 | 35 => (
                Method::POST,
                "mode=sse",
                call(id, tool(step), step),
                Want::Sse,
            ),
            39 => (Method::DELETE, "", Bytes::new(), Want::Any),
            _ => (Method::POST, "", call(id, tool(step), step), Want::Json),
        };
        let mut req = target.request(method, query, body);
        let headers = req.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        headers.insert(
            HeaderName::from_static("mcp-protocol-version"),
            HeaderValue::from_static("2025-06-18"),
        );
        if step % 40 != 1 {
            headers.insert(
                HeaderName::from_static("mcp-session-id"),
                HeaderValue::from_str(&session).map_err(|e| e.to_string())?,
            );
        }
        exchange(&mut sender, req, want).await?;
        tally.requests += 1;
    }
    Ok(tally)
}

/// What an answer must look like.
#[derive(Clone, Copy)]
enum Want {
    Json,
    Sse,
    Accepted,
    Refused,
    Any,
}

async fn exchange(
    sender: &mut SendRequest<Full<Bytes>>,
    req: http::Request<Full<Bytes>>,
    want: Want,
) -> Result<(), String> {
    let what = format!("{} {}", req.method(), req.uri());
    let response = sender
        .send_request(req)
        .await
        .map_err(|e| format!("{what}: {e}"))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{what}: {e}"))?
        .to_bytes();
    let fail = |why: &str| {
        Err(format!(
            "{what}: {why}: HTTP {status} {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        ))
    };
    if !status.is_success() {
        return fail("not a success");
    }
    let has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    match want {
        Want::Json if !has(b"\"result\"") => fail("no JSON-RPC result"),
        Want::Sse if !has(b"event: message") => fail("no SSE message"),
        Want::Refused if !has(b"\"error\"") => fail("the denied tool was not refused"),
        _ => Ok(()),
    }
}

/// One `GET` event stream after another until `until`: ~100 events of 10 ms each.
async fn streamer(target: &Target, until: Instant) -> Result<Tally, String> {
    let mut tally = Tally::default();
    let mut sender = target.connect().await?;
    while Instant::now() < until {
        let mut req = target.request(
            Method::GET,
            "mode=stream&seconds=1&interval_ms=10",
            Bytes::new(),
        );
        req.headers_mut()
            .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
        let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
        if !response.status().is_success() {
            return Err(format!("GET stream: HTTP {}", response.status()));
        }
        let mut body = response.into_body();
        let mut buf = Vec::new();
        while let Some(frame) = body.frame().await {
            if let Ok(data) = frame.map_err(|e| e.to_string())?.into_data() {
                buf.extend_from_slice(&data);
                tally.events += crate::conn::take_events(&mut buf).len() as u64;
            }
        }
        tally.requests += 1;
    }
    Ok(tally)
}

/// A tool the policy allows; names vary as an agent's do.
fn tool(step: u64) -> &'static str {
    const TOOLS: [&str; 4] = [
        "DemoTarget___get_weather",
        "DemoTarget___get_time",
        "Search___query",
        "DemoTarget___convert_currency",
    ];
    TOOLS[(step % 4) as usize]
}

fn call(id: u64, tool: &str, step: u64) -> Bytes {
    // Arguments of a few sizes, a string id now and then (agents use both).
    let arguments = match step % 3 {
        0 => json!({"city": "Seattle"}),
        1 => {
            json!({"query": "quarterly revenue by region", "limit": 20, "filters": {"year": 2026, "tags": ["a", "b", "c"]}})
        }
        _ => json!({"text": "x".repeat(600)}),
    };
    let id = if step.is_multiple_of(5) {
        json!(format!("call-{id}"))
    } else {
        json!(id)
    };
    body(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
        "params": {"name": tool, "arguments": arguments}}))
}

fn request(id: u64, method: &str, params: serde_json::Value) -> Bytes {
    body(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
}

fn initialize(id: u64) -> Bytes {
    request(
        id,
        "initialize",
        json!({"protocolVersion": "2025-06-18", "capabilities": {},
            "clientInfo": {"name": "pgo-training", "version": "1"}}),
    )
}

fn notification() -> Bytes {
    body(json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
}

fn batch(id: u64) -> Bytes {
    body(json!([
        {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": tool(id), "arguments": {"city": "Oslo"}}},
        {"jsonrpc": "2.0", "id": id + 500_000, "method": "tools/call",
            "params": {"name": tool(id + 1), "arguments": {"city": "Lima"}}},
    ]))
}

fn body(value: serde_json::Value) -> Bytes {
    Bytes::from(value.to_string())
}
