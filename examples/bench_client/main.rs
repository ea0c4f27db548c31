//! The measuring side of `bench/run.sh`: load generators that wrk cannot do (SSE first
//! event delay, long and idle SSE streams), the /proc accounting around a load, the
//! start-up timer, the report that turns the recorded runs into a table and JSON, and the
//! training load of the profile-guided release build.
//!
//! Every subcommand prints one JSON object on stdout. It dials loopback addresses only.
//!
//! ```sh
//! cargo run --release --example bench_client -- sse-first --url http://127.0.0.1:18410/mcp --seconds 5
//! cargo run --release --example bench_client -- measure --pid 1234 --stats 127.0.0.1:18401 -- wrk ...
//! cargo run --release --example bench_client -- report --records bench/results/x.jsonl --out x.json
//! cargo run --release --example bench_client -- train --url http://127.0.0.1:18610/mcp --seconds 20
//! ```

mod burst;
mod conn;
mod measure;
mod percentiles;
mod procfs;
mod report;
mod sse_first;
mod startup;
mod streams;
mod train;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Load generator, /proc accounting and report for bench/run.sh")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// POST `?mode=sse` requests back to back; the delay of each answer's one event.
    SseFirst(sse_first::Args),
    /// N concurrent long SSE streams (`GET ?mode=stream`); the delay of every event.
    Streams(streams::LongArgs),
    /// N SSE streams held open and quiet for a while (memory per stream).
    IdleStreams(streams::IdleArgs),
    /// N agents send one request each at the same moment to a cold forwarder: the
    /// upstream connections it opened for them.
    Burst(burst::Args),
    /// Runs a load command and records the forwarder's CPU and memory around it.
    Measure(measure::Args),
    /// The memory of a process tree now.
    Memory(measure::MemoryArgs),
    /// Time from exec to the first HTTP answer on a port, over several starts.
    Startup(startup::Args),
    /// Turns the recorded runs into the table and the results JSON.
    Report(report::Args),
    /// The training load of the profile-guided release build (build/release.sh).
    Train(train::Args),
}

fn main() -> std::process::ExitCode {
    let result = match Cli::parse().command {
        Command::SseFirst(args) => runtime().and_then(|rt| rt.block_on(sse_first::run(args))),
        Command::Streams(args) => runtime().and_then(|rt| rt.block_on(streams::run_long(args))),
        Command::IdleStreams(args) => runtime().and_then(|rt| rt.block_on(streams::run_idle(args))),
        Command::Burst(args) => runtime().and_then(|rt| rt.block_on(burst::run(args))),
        Command::Measure(args) => measure::run(args),
        Command::Memory(args) => measure::memory(args),
        Command::Startup(args) => startup::run(args),
        Command::Report(args) => report::run(args),
        Command::Train(args) => runtime().and_then(|rt| rt.block_on(train::run(args))),
    };
    match result {
        Ok(json) => {
            println!("{json}");
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench_client: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// One thread is enough to drive the loads and leaves the cores to the forwarders.
fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("runtime: {e}"))
}
