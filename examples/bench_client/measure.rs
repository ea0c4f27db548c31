//! Runs one load and accounts for it: the forwarder's CPU time and memory (sampled while
//! the load runs) and what the upstream saw, before and after.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Map, Value};

use crate::procfs;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The forwarder's main process (its children are counted too); none for direct.
    #[arg(long)]
    pid: Option<u32>,
    /// The upstream's process, to check it is not the bottleneck.
    #[arg(long)]
    upstream_pid: Option<u32>,
    /// The upstream's plain-HTTP stats address (`127.0.0.1:PORT`).
    #[arg(long)]
    stats: SocketAddr,
    /// Clock ticks per second of /proc/<pid>/stat (`getconf CLK_TCK`).
    #[arg(long, default_value_t = 100)]
    clk_tck: u64,
    /// Memory sampling period.
    #[arg(long, default_value_t = 100)]
    sample_ms: u64,
    /// Kill the load command after this long.
    #[arg(long, default_value_t = 600)]
    timeout_seconds: u64,
    /// The load command; it must print a JSON object as its last stdout line.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct MemoryArgs {
    /// The main process; its children are counted too.
    #[arg(long)]
    pid: u32,
}

pub fn memory(args: MemoryArgs) -> Result<String, String> {
    let pids = procfs::tree(args.pid);
    let m = procfs::memory(&pids);
    Ok(json!({
        "pids": pids,
        "rss_kib": m.rss_kib,
        "pss_kib": m.pss_kib,
        "anon_kib": m.anon_kib,
    })
    .to_string())
}

pub fn run(args: Args) -> Result<String, String> {
    if !args.stats.ip().is_loopback() {
        return Err(format!("--stats {}: loopback only", args.stats));
    }
    let forwarder = args.pid.map(procfs::tree).unwrap_or_default();
    let upstream = args.upstream_pid.map(procfs::tree).unwrap_or_default();
    let idle = procfs::memory(&forwarder);
    let cpu_before = procfs::cpu_ticks(&forwarder);
    let upstream_cpu_before = procfs::cpu_ticks(&upstream);
    let stats_before = upstream_stats(args.stats)?;

    let peak = Arc::new(Mutex::new(idle));
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, stop, pids) = (peak.clone(), stop.clone(), forwarder.clone());
        let period = Duration::from_millis(args.sample_ms.max(10));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) && !pids.is_empty() {
                let now = procfs::memory(&pids);
                let mut p = peak.lock().unwrap_or_else(|e| e.into_inner());
                *p = p.max(now);
                drop(p);
                std::thread::sleep(period);
            }
        })
    };

    let started = Instant::now();
    let output = run_bounded(&args.command, Duration::from_secs(args.timeout_seconds));
    let wall = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    let _ = sampler.join();
    let peak = *peak.lock().unwrap_or_else(|e| e.into_inner());
    let peak = peak.max(procfs::memory(&forwarder));
    let cpu = procfs::cpu_ticks(&forwarder).saturating_sub(cpu_before);
    let upstream_cpu = procfs::cpu_ticks(&upstream).saturating_sub(upstream_cpu_before);
    let stats_after = upstream_stats(args.stats)?;
    let stdout = output?;
    let load = last_json_line(&stdout).ok_or_else(|| {
        format!(
            "{:?} printed no JSON object; its output was:\n{stdout}",
            args.command
        )
    })?;

    let seconds = |ticks: u64| ticks as f64 / args.clk_tck as f64;
    eprintln!(
        "{}",
        one_line(&load, (!forwarder.is_empty()).then(|| seconds(cpu)))
    );
    let forwarder_json = (!forwarder.is_empty()).then(|| {
        json!({
            "pids": forwarder,
            "cpu_s": seconds(cpu),
            "rss_idle_kib": idle.rss_kib,
            "pss_idle_kib": idle.pss_kib,
            "rss_peak_kib": peak.rss_kib,
            "pss_peak_kib": peak.pss_kib,
        })
    });
    Ok(json!({
        "wall_s": wall.as_secs_f64(),
        "forwarder": forwarder_json,
        "upstream": {
            "cpu_s": (!upstream.is_empty()).then(|| seconds(upstream_cpu)),
            "stats": delta(&stats_before, &stats_after),
        },
        "load": load,
    })
    .to_string())
}

/// Runs the command with stdout captured and stderr passed through, killing it after
/// `limit`.
fn run_bounded(command: &[String], limit: Duration) -> Result<String, String> {
    let mut child = Command::new(&command[0])
        .args(&command[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run {}: {e}", command[0]))?;
    let mut pipe = child.stdout.take().ok_or("no stdout")?;
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = pipe.read_to_string(&mut text);
        text
    });
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{} ran longer than {limit:?}", command[0]));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(e.to_string()),
        }
    };
    let text = reader.join().unwrap_or_default();
    if !status.success() {
        return Err(format!("{} failed ({status}):\n{text}", command[0]));
    }
    Ok(text)
}

/// What a person watching the run wants to see of one cell (indented, for the script).
fn one_line(load: &Value, cpu_s: Option<f64>) -> String {
    let units = load["units"].as_f64().unwrap_or(0.0);
    let unit = load["unit"].as_str().unwrap_or("unit");
    let rate = units / load["seconds"].as_f64().unwrap_or(1.0).max(1e-9);
    let cpu = match cpu_s {
        Some(s) if units > 0.0 => format!("{:.1} µs CPU/{unit}", s * 1e6 / units),
        _ => "-".into(),
    };
    format!(
        "  {rate:.0} {unit}s/s  p50 {} µs  p99 {} µs  {cpu}  errors {}",
        load["latency_us"]["p50"], load["latency_us"]["p99"], load["errors"]
    )
}

fn last_json_line(text: &str) -> Option<Value> {
    text.lines()
        .rev()
        .filter(|l| l.trim_start().starts_with('{'))
        .find_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(Value::is_object)
}

/// `GET /stats` of the bench upstream.
pub fn upstream_stats(addr: SocketAddr) -> Result<Value, String> {
    let fail = |e: std::io::Error| format!("upstream stats at {addr}: {e}");
    let mut tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(fail)?;
    tcp.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(fail)?;
    tcp.write_all(b"GET /stats HTTP/1.0\r\nHost: stats\r\n\r\n")
        .map_err(fail)?;
    let mut text = String::new();
    tcp.read_to_string(&mut text).map_err(fail)?;
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str(body).map_err(|e| format!("upstream stats at {addr}: {e}: {body:?}"))
}

/// Counters as the difference; gauges (`open_*`) as their value afterwards.
fn delta(before: &Value, after: &Value) -> Value {
    let mut out = Map::new();
    if let Some(after) = after.as_object() {
        for (key, value) in after {
            let now = value.as_i64().unwrap_or(0);
            let then = before.get(key).and_then(Value::as_i64).unwrap_or(0);
            let v = if key.starts_with("open_") {
                now
            } else {
                now - then
            };
            out.insert(key.clone(), json!(v));
        }
    }
    Value::Object(out)
}
