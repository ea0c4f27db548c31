//! The memory soak: minutes of mixed MCP traffic through the proxy binary, with
//! connection churn, sampling the proxy's resident set every few seconds. It prints the
//! curve and fails if the resident set grew more than 10% after the warm-up, or if any
//! call failed.
//!
//! Not part of `cargo test` (`test = false` in Cargo.toml): run `bash bench/soak.sh`,
//! or `cargo test --release --test soak -- --nocapture` with
//! - `SOAK_SECONDS` (default 300): how long the load runs;
//! - `SOAK_AGENTS` (default 8): agents of each kind at once;
//! - `SOAK_SAMPLE_SECONDS` (default 5): the sampling interval.
//!
//! The load, on loopback against the rmcp gateway fixture:
//! - SSE agents: an rmcp client session each round (initialize, the standalone GET
//!   stream, tools/list, five tools/call answered as SSE, DELETE), a new session and new
//!   connections every round;
//! - JSON agents: single POSTs to a stateless route answered with `application/json`,
//!   each from a new agent connection.

// The integration tests' fixtures (tests/it/common), of which the soak uses a part.
#[path = "../it/common/mod.rs"]
#[allow(dead_code)]
mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::client;
use common::dns::DnsServer;
use common::http::post_rpc;
use common::proxy::head;
use common::proxy_process::ProxyProcess;
use common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::json;

/// Growth of the resident set allowed between the end of the warm-up and the end.
const MAX_GROWTH: f64 = 0.10;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[derive(Default)]
struct Tally {
    sse_sessions: AtomicUsize,
    sse_calls: AtomicUsize,
    json_calls: AtomicUsize,
    failures: Mutex<Vec<String>>,
}

impl Tally {
    fn fail(&self, what: String) {
        let mut failures = self.failures.lock().unwrap();
        if failures.len() < 20 {
            failures.push(what);
        }
    }

    fn total(&self) -> usize {
        self.sse_calls.load(Ordering::Relaxed) + self.json_calls.load(Ordering::Relaxed)
    }
}

fn route(path: &str, upstream: &Upstream) -> String {
    format!(
        "\n[[route]]\npath = \"{path}\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n",
        upstream.port(),
        upstream.ca_file().display()
    )
}

async fn sse_agent(url: String, until: Instant, tally: Arc<Tally>) {
    while Instant::now() < until {
        let config = StreamableHttpClientTransportConfig::with_uri(url.as_str());
        let session = match client::try_connect_with(config).await {
            Ok(session) => session,
            Err(e) => {
                tally.fail(format!("initialize: {e}"));
                continue;
            }
        };
        if let Err(e) = session.list_all_tools().await {
            tally.fail(format!("tools/list: {e}"));
        }
        for i in 0..5 {
            let text = format!("soak {i}");
            match client::try_call_tool(&session, "DemoTarget___echo", json!({ "text": text }))
                .await
            {
                Ok(result) if client::first_text(&result) == Some(text.as_str()) => {
                    tally.sse_calls.fetch_add(1, Ordering::Relaxed);
                }
                Ok(result) => tally.fail(format!("tools/call answered {result:?}")),
                Err(e) => tally.fail(format!("tools/call: {e}")),
            }
        }
        if let Err(e) = session.cancel().await {
            tally.fail(format!("DELETE: {e}"));
        }
        tally.sse_sessions.fetch_add(1, Ordering::Relaxed);
    }
}

async fn json_agent(url: String, until: Instant, tally: Arc<Tally>) {
    let mut id = 0u64;
    while Instant::now() < until {
        id += 1;
        let answer = post_rpc(
            &url,
            &format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#),
        )
        .await;
        if answer.status == 200 && answer.body.contains("DemoTarget___echo") {
            tally.json_calls.fetch_add(1, Ordering::Relaxed);
        } else {
            tally.fail(format!("JSON POST: {} {}", answer.status, answer.body));
        }
    }
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn median(values: &[u64]) -> u64 {
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    sorted[sorted.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resident_memory_stays_flat_under_mixed_load_with_churn() {
    let seconds = setting("SOAK_SECONDS", 300);
    let agents = setting("SOAK_AGENTS", 8) as usize;
    let every = Duration::from_secs(setting("SOAK_SAMPLE_SECONDS", 5).max(1));
    // The first fifth (at least 10 s) fills pools, caches and allocator arenas.
    let warm_up = Duration::from_secs((seconds / 5).max(10));
    assert!(
        warm_up + every * 3 < Duration::from_secs(seconds),
        "SOAK_SECONDS is too short to measure anything"
    );

    let sse = Upstream::start().await;
    let json = Upstream::start_with(UpstreamOptions {
        json_response: true,
        ..UpstreamOptions::default()
    })
    .await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let proxy = ProxyProcess::start(&format!(
        "{}{}{}",
        head(&dns),
        route("/sse", &sse),
        route("/json", &json)
    ))
    .await;
    let base = format!("http://127.0.0.1:{}", proxy.port);

    let started = Instant::now();
    let until = started + Duration::from_secs(seconds);
    let tally = Arc::new(Tally::default());
    let mut load = Vec::new();
    for _ in 0..agents {
        load.push(tokio::spawn(sse_agent(
            format!("{base}/sse"),
            until,
            tally.clone(),
        )));
        load.push(tokio::spawn(json_agent(
            format!("{base}/json"),
            until,
            tally.clone(),
        )));
    }

    println!(
        "soak: {seconds} s, {agents} SSE + {agents} JSON agents, warm-up {} s",
        warm_up.as_secs()
    );
    println!("{:>6}  {:>9}  {:>9}", "t (s)", "RSS (MiB)", "calls");
    let mut samples: Vec<(Duration, u64)> = Vec::new();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        let at = started.elapsed();
        let rss = proxy.rss_kib();
        samples.push((at, rss));
        println!(
            "{:>6.0}  {:>9.1}  {:>9}",
            at.as_secs_f64(),
            mib(rss),
            tally.total()
        );
        if Instant::now() >= until {
            break;
        }
    }
    for agent in load {
        agent.await.unwrap();
    }

    let failures = tally.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "calls failed: {failures:#?}");
    let after_warm_up: Vec<u64> = samples
        .iter()
        .filter(|(at, _)| *at >= warm_up)
        .map(|(_, rss)| *rss)
        .collect();
    let baseline = median(&after_warm_up[..3]);
    let end = median(&after_warm_up[after_warm_up.len() - 3..]);
    let growth = end as f64 / baseline as f64 - 1.0;
    println!(
        "soak: {} SSE sessions, {} SSE calls, {} JSON calls; RSS {:.1} MiB after warm-up, \
         {:.1} MiB at the end ({:+.1}%), peak {:.1} MiB",
        tally.sse_sessions.load(Ordering::Relaxed),
        tally.sse_calls.load(Ordering::Relaxed),
        tally.json_calls.load(Ordering::Relaxed),
        mib(baseline),
        mib(end),
        growth * 100.0,
        mib(samples.iter().map(|(_, rss)| *rss).max().unwrap_or(0)),
    );
    assert!(
        growth <= MAX_GROWTH,
        "the proxy's resident set grew {:.1}% after the warm-up (limit {:.0}%)",
        growth * 100.0,
        MAX_GROWTH * 100.0
    );
}
