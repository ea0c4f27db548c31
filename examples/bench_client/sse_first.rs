//! SSE answers back to back on a few connections: for each, how long the forwarder held
//! the one event (arrival time minus the upstream's `sent_ns` stamp) and how long the
//! whole exchange took until that event arrived.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE};
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use serde_json::json;
use tokio::task::JoinSet;

use crate::conn::{take_events, unix_nanos, Target, TargetArgs};
use crate::percentiles::summary_us;

const REQUEST: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"DemoTarget___get_weather","arguments":{"city":"Seattle"}}}"#;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    target: TargetArgs,
    /// How long to keep sending.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// Connections, each with one request in flight.
    #[arg(long, default_value_t = 1)]
    connections: usize,
}

#[derive(Default)]
struct Outcome {
    event_delays_ns: Vec<u64>,
    latencies_ns: Vec<u64>,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run(args: Args) -> Result<String, String> {
    let target = Arc::new(Target::new(&args.target)?);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.seconds);
    let mut tasks = JoinSet::new();
    for _ in 0..args.connections.max(1) {
        tasks.spawn(one_connection(target.clone(), deadline));
    }
    let mut all = Outcome::default();
    while let Some(done) = tasks.join_next().await {
        let o = done.map_err(|e| e.to_string())?;
        all.event_delays_ns.extend(o.event_delays_ns);
        all.latencies_ns.extend(o.latencies_ns);
        all.errors += o.errors;
        all.first_error = all.first_error.or(o.first_error);
    }
    Ok(json!({
        "units": all.latencies_ns.len(),
        "unit": "request",
        "seconds": started.elapsed().as_secs_f64(),
        "connections": args.connections,
        "errors": all.errors,
        "first_error": all.first_error,
        "latency_us": summary_us(all.event_delays_ns),
        "request_latency_us": summary_us(all.latencies_ns),
    })
    .to_string())
}

async fn one_connection(target: Arc<Target>, deadline: Instant) -> Outcome {
    let mut out = Outcome::default();
    let mut sender = None;
    while Instant::now() < deadline {
        let s = match &mut sender {
            Some(s) => s,
            None => match target.connect().await {
                Ok(s) => sender.insert(s),
                Err(e) => {
                    out.fail(e);
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        if s.ready().await.is_err() {
            sender = None;
            continue;
        }
        let mut req = target.request(Method::POST, "mode=sse", Bytes::from_static(REQUEST));
        req.headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        req.headers_mut().insert(
            ACCEPT,
            HeaderValue::from_static("application/json, text/event-stream"),
        );
        let sent = Instant::now();
        let exchange = async {
            let response = s.send_request(req).await.map_err(|e| e.to_string())?;
            if response.status() != StatusCode::OK {
                return Err(format!("status {}", response.status()));
            }
            let mut body = response.into_body();
            let mut buf = Vec::new();
            let mut first = None;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let (Some(data), None) = (frame.data_ref(), first) {
                    buf.extend_from_slice(data);
                    if let Some(&stamp) = take_events(&mut buf).first() {
                        let delay = unix_nanos().saturating_sub(stamp);
                        first = Some((delay, sent.elapsed().as_nanos() as u64));
                    }
                }
            }
            first.ok_or_else(|| "the answer held no event".to_string())
        };
        match exchange.await {
            Ok((delay, latency)) => {
                out.event_delays_ns.push(delay);
                out.latencies_ns.push(latency);
            }
            Err(e) => {
                out.fail(e);
                sender = None;
            }
        }
    }
    out
}

impl Outcome {
    fn fail(&mut self, e: String) {
        self.errors += 1;
        self.first_error.get_or_insert(e);
    }
}
