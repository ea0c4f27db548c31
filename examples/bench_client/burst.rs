//! A cold burst: N agents that each open a connection and send one tools/call at the same
//! moment to a forwarder that has no upstream connection yet (a fleet restarting
//! together, an agent fanning out). What counts is how many upstream connections the
//! forwarder opened for it: the upstream's own count (`/stats`), and for the proxy its
//! `upstream_connections_opened_total` on the admin listener.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method};
use http_body_util::BodyExt;
use serde_json::{json, Value};
use tokio::sync::Barrier;
use tokio::task::JoinSet;

use crate::conn::{Target, TargetArgs};
use crate::measure::upstream_stats;

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DemoTarget___get_weather","arguments":{"city":"Seattle"}}}"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// Agents, each with its own connection and one request.
    #[arg(long, default_value_t = 100)]
    count: usize,
    /// The upstream's plain-HTTP stats address (`127.0.0.1:PORT`).
    #[arg(long)]
    stats: SocketAddr,
    /// The proxy's admin listener (`127.0.0.1:PORT`), to read its connection metric.
    #[arg(long)]
    admin: Option<SocketAddr>,
}

pub async fn run(args: Args) -> Result<String, String> {
    for addr in std::iter::once(&args.stats).chain(args.admin.as_ref()) {
        if !addr.ip().is_loopback() {
            return Err(format!("{addr}: loopback only"));
        }
    }
    let target = Arc::new(Target::new(&args.target)?);
    let before = upstream_stats(args.stats)?;
    let count = args.count.max(1);
    // Every agent connects first; then all send at once.
    let barrier = Arc::new(Barrier::new(count));
    let started = Instant::now();
    let mut agents = JoinSet::new();
    for _ in 0..count {
        let (target, barrier) = (target.clone(), barrier.clone());
        agents.spawn(async move {
            let connected = target.connect().await;
            barrier.wait().await;
            let mut sender = connected?;
            let mut request = target.request(Method::POST, "", Bytes::from_static(REQUEST));
            let headers = request.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            headers.insert(
                ACCEPT,
                HeaderValue::from_static("application/json, text/event-stream"),
            );
            let response = sender
                .send_request(request)
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status();
            response
                .into_body()
                .collect()
                .await
                .map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(())
            } else {
                Err(format!("HTTP {status}"))
            }
        });
    }
    let (mut errors, mut first_error) = (0u64, None);
    while let Some(done) = agents.join_next().await {
        if let Err(e) = done.map_err(|e| e.to_string()).and_then(|r| r) {
            errors += 1;
            first_error.get_or_insert(e);
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let after = upstream_stats(args.stats)?;
    let opened = |stats: &Value| stats["connections"].as_i64().unwrap_or(0);
    let admin_opened = match args.admin {
        Some(admin) => Some(connections_opened(admin)?),
        None => None,
    };
    Ok(json!({
        "requests": count,
        "seconds": seconds,
        "errors": errors,
        "first_error": first_error,
        "upstream_connections": opened(&after) - opened(&before),
        "upstream_connections_opened_total": admin_opened,
    })
    .to_string())
}

/// The sum of `upstream_connections_opened_total` over the proxy's routes.
fn connections_opened(admin: SocketAddr) -> Result<f64, String> {
    let fail = |e: std::io::Error| format!("admin metrics at {admin}: {e}");
    let mut tcp = TcpStream::connect_timeout(&admin, Duration::from_secs(2)).map_err(fail)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    tcp.write_all(b"GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .map_err(fail)?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).map_err(fail)?;
    let series: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with("mcp_vpce_proxy_upstream_connections_opened_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    if series.is_empty() {
        return Err(format!(
            "admin metrics at {admin}: no upstream_connections_opened_total"
        ));
    }
    Ok(series.iter().sum())
}
