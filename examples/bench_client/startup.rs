//! Start-up to ready: the time from exec until the program answers HTTP on its port
//! (listener bound, configuration and routes built), over several starts.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::percentiles::round1;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The port on 127.0.0.1 the program serves HTTP on.
    #[arg(long)]
    port: u16,
    /// Starts to time.
    #[arg(long, default_value_t = 10)]
    runs: usize,
    /// A start that is not ready after this long counts as failed.
    #[arg(long, default_value_t = 5000)]
    timeout_ms: u64,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

pub fn run(args: Args) -> Result<String, String> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, args.port));
    if answers_http(addr) {
        return Err(format!("{addr} is already in use"));
    }
    let mut times_ms = Vec::new();
    let mut failures = 0;
    for _ in 0..args.runs {
        let started = Instant::now();
        let mut child = Command::new(&args.command[0])
            .args(&args.command[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run {}: {e}", args.command[0]))?;
        let limit = Duration::from_millis(args.timeout_ms);
        let ready = loop {
            if answers_http(addr) {
                break true;
            }
            if started.elapsed() > limit || matches!(child.try_wait(), Ok(Some(_))) {
                break false;
            }
            std::thread::sleep(Duration::from_micros(200));
        };
        let elapsed = started.elapsed();
        stop(&mut child);
        if ready {
            times_ms.push(elapsed.as_secs_f64() * 1000.0);
        } else {
            failures += 1;
        }
        // The port must be free again before the next start is timed.
        let freed = Instant::now();
        while answers_http(addr) && freed.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let mut sorted = times_ms.clone();
    sorted.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        (!sorted.is_empty())
            .then(|| round1(sorted[((q * sorted.len() as f64) as usize).min(sorted.len() - 1)]))
    };
    Ok(json!({
        "runs_ms": times_ms.iter().map(|t| round1(*t)).collect::<Vec<_>>(),
        "p50_ms": pick(0.5),
        "min_ms": sorted.first().map(|t| round1(*t)),
        "max_ms": sorted.last().map(|t| round1(*t)),
        "failures": failures,
    })
    .to_string())
}

/// Whether something on `addr` answers an HTTP request with a status line.
fn answers_http(addr: SocketAddr) -> bool {
    let Ok(mut tcp) = TcpStream::connect_timeout(&addr, Duration::from_millis(100)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_millis(500)));
    if tcp
        .write_all(b"GET /bench-ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    let mut got = 0;
    while got < head.len() {
        match tcp.read(&mut head[got..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    head[..got].starts_with(b"HTTP/1.")
}

/// SIGTERM (so that a master process takes its workers down), SIGKILL if it lingers.
fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let _ = child.kill();
    let _ = child.wait();
}
