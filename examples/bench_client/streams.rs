//! Many SSE streams at once through the forwarder: long ones that tick every interval
//! (how late each event arrives), and idle ones held open (what each costs in memory).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::ACCEPT;
use http::{HeaderValue, Method, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use serde_json::json;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::conn::{take_events, unix_nanos, Target, TargetArgs};
use crate::percentiles::summary_us;

#[derive(Debug, clap::Args)]
pub struct LongArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Streams open at once.
    #[arg(long, default_value_t = 256)]
    count: usize,
    /// How long each stream runs.
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    /// One event every this many milliseconds.
    #[arg(long, default_value_t = 100)]
    interval_ms: u64,
}

#[derive(Debug, clap::Args)]
pub struct IdleArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Streams to open and hold.
    #[arg(long, default_value_t = 10_000)]
    count: usize,
    /// How long to hold them once all are open.
    #[arg(long, default_value_t = 5)]
    hold_seconds: u64,
    /// Give up opening after this long (the check is bounded).
    #[arg(long, default_value_t = 60)]
    open_timeout_seconds: u64,
    /// Streams being opened at the same time.
    #[arg(long, default_value_t = 256)]
    parallel_opens: usize,
}

struct Stream {
    /// Keeps the connection's request side alive while the body is held.
    _sender: hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    body: Incoming,
}

/// Connects, asks for a stream, and waits for its first event.
async fn open(target: &Target, query: &str) -> Result<(Stream, Vec<u64>, Vec<u8>), String> {
    let mut sender = target.connect().await?;
    let mut req = target.request(Method::GET, query, Bytes::new());
    req.headers_mut()
        .insert(ACCEPT, HeaderValue::from_static("text/event-stream"));
    let response = sender.send_request(req).await.map_err(|e| e.to_string())?;
    if response.status() != StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let mut body = response.into_body();
    let mut buf = Vec::new();
    loop {
        let frame = body
            .frame()
            .await
            .ok_or("the stream ended before its first event")?
            .map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
            let stamps = take_events(&mut buf);
            if !stamps.is_empty() {
                let stream = Stream {
                    _sender: sender,
                    body,
                };
                return Ok((stream, stamps, buf));
            }
        }
    }
}

#[derive(Default)]
struct Tally {
    delays_ns: Vec<u64>,
    completed: u64,
    errors: u64,
    first_error: Option<String>,
}

pub async fn run_long(args: LongArgs) -> Result<String, String> {
    let target = Arc::new(Target::new(&args.target)?);
    let interval = args.interval_ms.max(1);
    let per_stream = (args.seconds * 1000).div_ceil(interval).max(1);
    let query = Arc::new(format!(
        "mode=stream&seconds={}&interval_ms={interval}",
        args.seconds
    ));
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.count {
        let (target, query) = (target.clone(), query.clone());
        tasks.spawn(async move { follow(&target, &query, per_stream).await });
    }
    let mut tally = Tally::default();
    let limit = Duration::from_secs(args.seconds + 30);
    let collect = async {
        while let Some(done) = tasks.join_next().await {
            match done.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok((delays, complete)) => {
                    tally.delays_ns.extend(delays);
                    tally.completed += u64::from(complete);
                }
                Err(e) => {
                    tally.errors += 1;
                    tally.first_error.get_or_insert(e);
                }
            }
        }
    };
    if tokio::time::timeout(limit, collect).await.is_err() {
        tally.errors += 1;
        tally
            .first_error
            .get_or_insert("streams did not end in time".into());
    }
    let streams_short = args.count as u64 - tally.completed;
    Ok(json!({
        "units": tally.delays_ns.len(),
        "unit": "event",
        "seconds": started.elapsed().as_secs_f64(),
        "concurrent": args.count,
        "streams_completed": tally.completed,
        "expected_events": per_stream * args.count as u64,
        "errors": tally.errors + streams_short,
        "first_error": tally.first_error,
        "latency_us": summary_us(tally.delays_ns),
    })
    .to_string())
}

/// Follows one stream to its end: the delay of every event, and whether all came.
async fn follow(target: &Target, query: &str, expected: u64) -> Result<(Vec<u64>, bool), String> {
    let (mut stream, first, mut buf) = open(target, query).await?;
    let arrival = |stamps: Vec<u64>, delays: &mut Vec<u64>| {
        let now = unix_nanos();
        delays.extend(stamps.into_iter().map(|s| now.saturating_sub(s)));
    };
    let mut delays = Vec::with_capacity(expected as usize);
    arrival(first, &mut delays);
    while let Some(frame) = stream.body.frame().await {
        let frame = frame.map_err(|e| e.to_string())?;
        if let Some(data) = frame.data_ref() {
            buf.extend_from_slice(data);
            arrival(take_events(&mut buf), &mut delays);
        }
    }
    let complete = delays.len() as u64 == expected;
    Ok((delays, complete))
}

pub async fn run_idle(args: IdleArgs) -> Result<String, String> {
    let target = Arc::new(Target::new(&args.target)?);
    // The first event comes at once, the next only after an hour: the stream stays quiet.
    let query = Arc::new("mode=stream&seconds=7200&interval_ms=3600000".to_string());
    let opened = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let ended_early = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(Semaphore::new(args.parallel_opens.max(1)));
    let (close, closed) = watch::channel(false);
    let started = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..args.count {
        let (target, query, gate) = (target.clone(), query.clone(), gate.clone());
        let (opened, failed, ended_early) = (opened.clone(), failed.clone(), ended_early.clone());
        let mut closed = closed.clone();
        tasks.spawn(async move {
            let permit = gate.acquire_owned().await;
            let t0 = Instant::now();
            let result = open(&target, &query).await;
            drop(permit);
            let (mut stream, _, _) = match result {
                Ok(held) => held,
                Err(e) => {
                    failed.fetch_add(1, Ordering::Relaxed);
                    return Err(e);
                }
            };
            let latency = t0.elapsed().as_nanos() as u64;
            opened.fetch_add(1, Ordering::Relaxed);
            loop {
                tokio::select! {
                    _ = closed.changed() => break,
                    frame = stream.body.frame() => match frame {
                        Some(Ok(_)) => continue,
                        _ => {
                            ended_early.fetch_add(1, Ordering::Relaxed);
                            break;
                        }
                    },
                }
            }
            Ok(latency)
        });
    }
    let open_deadline = started + Duration::from_secs(args.open_timeout_seconds);
    while opened.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < args.count as u64
        && Instant::now() < open_deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_seconds = started.elapsed().as_secs_f64();
    let now_open = opened.load(Ordering::Relaxed);
    eprintln!(
        "bench_client: {now_open} of {} idle streams open after {open_seconds:.1}s; holding {}s",
        args.count, args.hold_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    let _ = close.send(true);
    let mut latencies = Vec::new();
    let mut first_error = None;
    let drain = async {
        while let Some(done) = tasks.join_next().await {
            match done.map_err(|e| e.to_string()).and_then(|r| r) {
                Ok(l) => latencies.push(l),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
    };
    if tokio::time::timeout(Duration::from_secs(30), drain)
        .await
        .is_err()
    {
        tasks.abort_all();
    }
    let failed = failed.load(Ordering::Relaxed);
    let ended_early = ended_early.load(Ordering::Relaxed);
    Ok(json!({
        "units": now_open,
        "unit": "stream",
        "seconds": started.elapsed().as_secs_f64(),
        "concurrent": args.count,
        "opened": now_open,
        "failed": failed,
        "ended_early": ended_early,
        "open_seconds": open_seconds,
        "hold_seconds": args.hold_seconds,
        "errors": failed + ended_early + (args.count as u64 - now_open - failed),
        "first_error": first_error,
        "latency_us": summary_us(latencies),
    })
    .to_string())
}
