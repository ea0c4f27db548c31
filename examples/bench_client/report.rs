//! Turns the records of one `bench/run.sh` run into the table and the results JSON:
//! per load and forwarder the median over rounds of each figure, the ratios to nginx and
//! to the upstream reached directly, and the targets of the performance issue.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::percentiles::round1;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The JSON-lines records written by bench/run.sh.
    #[arg(long)]
    records: PathBuf,
    /// Where to write the results JSON.
    #[arg(long)]
    out: PathBuf,
}

// "candidate" is another build of the proxy (BENCH_CANDIDATE_BIN), for A/B runs.
const FORWARDERS: [&str; 5] = ["proxy", "candidate", "nginx", "haproxy", "direct"];
const LOADS: [(&str, &str); 5] = [
    ("c1", "1 connection, POST /mcp JSON answers (latency)"),
    ("c32", "32 connections, POST /mcp JSON answers (throughput)"),
    (
        "sse_first",
        "1 connection, POST /mcp SSE answers: delay of the event",
    ),
    (
        "streams",
        "long SSE streams at once, one event per 100 ms: delay of each event",
    ),
    ("idle_streams", "idle SSE streams held open (bounded check)"),
];

pub fn run(args: Args) -> Result<String, String> {
    let text = std::fs::read_to_string(&args.records)
        .map_err(|e| format!("{}: {e}", args.records.display()))?;
    let records: Vec<Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).map_err(|e| format!("record {l:?}: {e}")))
        .collect::<Result<_, _>>()?;
    let by_kind = |kind: &'static str| records.iter().filter(move |r| r["kind"] == kind);

    let meta = by_kind("meta").next().cloned().unwrap_or(Value::Null);
    let mut startup = Map::new();
    for r in by_kind("startup") {
        startup.insert(label(r, "forwarder"), r["result"].clone());
    }
    let mut idle = Map::new();
    for r in by_kind("idle") {
        idle.insert(label(r, "forwarder"), r["result"].clone());
    }
    let mut burst = Map::new();
    for r in by_kind("burst") {
        burst.insert(label(r, "forwarder"), r["result"].clone());
    }
    let mut cells: BTreeMap<(String, String), Vec<&Value>> = BTreeMap::new();
    for r in by_kind("cell") {
        cells
            .entry((label(r, "load"), label(r, "forwarder")))
            .or_default()
            .push(r);
    }
    let mut loads = Map::new();
    for ((load, forwarder), runs) in &cells {
        let entry = loads
            .entry(load.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        entry[forwarder.as_str()] = aggregate(forwarder, runs);
    }
    let loads = Value::Object(loads);
    let ratios = ratios(&loads);
    let targets = targets(&loads, &ratios, &idle, &startup, &burst, &meta);
    let results = json!({
        "meta": meta,
        "startup": startup,
        "idle": idle,
        "burst": burst,
        "loads": loads,
        "ratios": ratios,
        "targets": targets,
        "records": records,
    });
    let pretty = serde_json::to_string_pretty(&results).map_err(|e| e.to_string())?;
    std::fs::write(&args.out, pretty + "\n").map_err(|e| format!("{}: {e}", args.out.display()))?;
    eprint!("{}", table(&results));
    Ok(json!({"written": args.out.display().to_string()}).to_string())
}

fn label(record: &Value, key: &str) -> String {
    record[key].as_str().unwrap_or("?").to_string()
}

/// The figures of one cell, or why the cell does not count.
fn figures(forwarder: &str, cell: &Value) -> Result<Map<String, Value>, String> {
    if let Some(e) = cell["error"].as_str() {
        return Err(e.to_string());
    }
    let r = &cell["result"];
    let load = &r["load"];
    let stats = &r["upstream"]["stats"];
    let errors = load["errors"].as_u64().unwrap_or(0);
    if errors > 0 {
        return Err(format!(
            "{errors} errors (first: {})",
            load["first_error"].as_str().unwrap_or("-")
        ));
    }
    // The same job: the upstream refused nothing, and forwarders sent the gateway's SNI.
    // (wrk, used for direct, makes one throw-away connection that fails TLS and sends
    // the IP address as SNI: those two are checked for forwarders only.)
    let mut refusals = vec!["unauthorized", "wrong_host", "not_found"];
    if forwarder != "direct" {
        refusals.extend(["tls_failures", "sni_mismatches"]);
    }
    for key in refusals {
        if stats[key].as_i64().unwrap_or(0) != 0 {
            return Err(format!("the upstream counted {key} = {}", stats[key]));
        }
    }
    let units = load["units"].as_f64().unwrap_or(0.0);
    let seconds = load["seconds"].as_f64().unwrap_or(0.0);
    let mut f = Map::new();
    let mut put = |k: &str, v: Option<f64>| {
        if let Some(v) = v.filter(|v| v.is_finite()) {
            f.insert(k.to_string(), json!(v));
        }
    };
    put("units", Some(units));
    put("per_second", (seconds > 0.0).then(|| units / seconds));
    for p in ["p50", "p90", "p99", "max"] {
        put(&format!("{p}_us"), load["latency_us"][p].as_f64());
    }
    let per_unit = |cpu: Option<f64>| cpu.filter(|_| units > 0.0).map(|s| s * 1e6 / units);
    let fwd = &r["forwarder"];
    put("cpu_us_per_unit", per_unit(fwd["cpu_s"].as_f64()));
    put(
        "upstream_cpu_us_per_unit",
        per_unit(r["upstream"]["cpu_s"].as_f64()),
    );
    for k in [
        "rss_idle_kib",
        "rss_peak_kib",
        "pss_idle_kib",
        "pss_peak_kib",
    ] {
        put(k, fwd[k].as_f64());
    }
    put("upstream_connections", stats["connections"].as_f64());
    put("upstream_h2_connections", stats["h2_connections"].as_f64());
    if let (Some(n), Some(idle), Some(peak)) = (
        load["concurrent"].as_f64(),
        fwd["rss_idle_kib"].as_f64(),
        fwd["rss_peak_kib"].as_f64(),
    ) {
        put("memory_per_stream_bytes", Some((peak - idle) * 1024.0 / n));
    }
    Ok(f)
}

/// The median of each figure over the rounds that counted.
fn aggregate(forwarder: &str, runs: &[&Value]) -> Value {
    let mut valid = Vec::new();
    let mut problems = Vec::new();
    for cell in runs {
        match figures(forwarder, cell) {
            Ok(f) => valid.push(f),
            Err(e) => problems.push(format!("round {}: {e}", cell["round"])),
        }
    }
    let mut out = Map::new();
    let keys: Vec<String> = valid
        .iter()
        .flat_map(|f| f.keys().cloned())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    for key in keys {
        let mut values: Vec<f64> = valid.iter().filter_map(|f| f.get(&key)?.as_f64()).collect();
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len() % 2 == 1 {
            values[mid]
        } else {
            (values[mid - 1] + values[mid]) / 2.0
        };
        out.insert(key, json!(round1(median)));
    }
    out.insert("rounds".into(), json!(runs.len()));
    out.insert("valid_rounds".into(), json!(valid.len()));
    if !problems.is_empty() {
        out.insert("problems".into(), json!(problems));
    }
    Value::Object(out)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b != 0.0 => Some((a / b * 1000.0).round() / 1000.0),
        _ => None,
    }
}

/// Per load, each forwarder against nginx and against the upstream reached directly.
fn ratios(loads: &Value) -> Value {
    let mut out = Map::new();
    for (load, _) in LOADS {
        let get = |f: &str, k: &str| loads[load][f][k].as_f64();
        let added = |f: &str, p: &str| Some(get(f, p)? - get("direct", p)?);
        let mut per = Map::new();
        for f in ["proxy", "candidate", "haproxy"] {
            if loads[load][f].is_null() {
                continue;
            }
            let v = json!({
                "vs_nginx": {
                    "per_second": ratio(get(f, "per_second"), get("nginx", "per_second")),
                    "cpu_us_per_unit": ratio(get(f, "cpu_us_per_unit"), get("nginx", "cpu_us_per_unit")),
                    "p50_us": ratio(get(f, "p50_us"), get("nginx", "p50_us")),
                    "p99_us": ratio(get(f, "p99_us"), get("nginx", "p99_us")),
                    "added_p50_us": ratio(added(f, "p50_us"), added("nginx", "p50_us")),
                    "added_p99_us": ratio(added(f, "p99_us"), added("nginx", "p99_us")),
                    "memory_per_stream_bytes": ratio(get(f, "memory_per_stream_bytes"), get("nginx", "memory_per_stream_bytes")),
                    "rss_peak_kib": ratio(get(f, "rss_peak_kib"), get("nginx", "rss_peak_kib")),
                },
                "vs_direct": {
                    "per_second": ratio(get(f, "per_second"), get("direct", "per_second")),
                    "p50_us": ratio(get(f, "p50_us"), get("direct", "p50_us")),
                },
                "added_p50_us": added(f, "p50_us").map(round1),
                "added_p99_us": added(f, "p99_us").map(round1),
            });
            per.insert(f.to_string(), v);
        }
        per.insert(
            "nginx".into(),
            json!({
                "vs_direct": {
                    "per_second": ratio(get("nginx", "per_second"), get("direct", "per_second")),
                    "p50_us": ratio(get("nginx", "p50_us"), get("direct", "p50_us")),
                },
                "added_p50_us": added("nginx", "p50_us").map(round1),
                "added_p99_us": added("nginx", "p99_us").map(round1),
            }),
        );
        out.insert(load.to_string(), Value::Object(per));
    }
    Value::Object(out)
}

/// The targets of the performance issue, each with what was measured.
fn targets(
    loads: &Value,
    ratios: &Value,
    idle: &Map<String, Value>,
    startup: &Map<String, Value>,
    burst: &Map<String, Value>,
    meta: &Value,
) -> Value {
    let check = |name: &str, measured: Option<f64>, unit: &str, pass: fn(f64) -> bool| {
        json!({
            "target": name,
            "measured": measured,
            "unit": unit,
            "pass": measured.map(pass),
        })
    };
    let idle_ok = loads["idle_streams"]["proxy"]["valid_rounds"]
        .as_u64()
        .unwrap_or(0)
        > 0;
    let workers = meta["workers"].as_f64().unwrap_or(1.0);
    let burst_opened = burst
        .get("proxy")
        .filter(|b| b["errors"].as_u64() == Some(0))
        .and_then(|b| b["upstream_connections"].as_f64());
    json!([
        check(
            "issue 19: CPU per request at 32 connections <= 1.0x nginx",
            ratios["c32"]["proxy"]["vs_nginx"]["cpu_us_per_unit"].as_f64(),
            "x nginx",
            |r| r <= 1.0
        ),
        check(
            "issue 19: throughput at 32 connections >= 1.0x nginx",
            ratios["c32"]["proxy"]["vs_nginx"]["per_second"].as_f64(),
            "x nginx",
            |r| r >= 1.0
        ),
        check(
            "issue 19: added p50 latency at 1 connection <= nginx's",
            ratios["c1"]["proxy"]["vs_nginx"]["added_p50_us"].as_f64(),
            "x nginx",
            |r| r <= 1.0
        ),
        json!({
            "target": "issue 19: a cold burst opens at most one upstream connection per worker",
            "measured": burst_opened,
            "unit": "connections",
            "pass": burst_opened.map(|n| n <= workers),
        }),
        check(
            "issue 19: idle anonymous (private) memory <= 2 MiB",
            idle.get("proxy")
                .and_then(|m| m["anon_kib"].as_f64())
                .map(|k| k / 1024.0),
            "MiB",
            |m| m <= 2.0
        ),
        check(
            "CPU per request at 32 connections <= 0.6x nginx",
            ratios["c32"]["proxy"]["vs_nginx"]["cpu_us_per_unit"].as_f64(),
            "x nginx",
            |r| r <= 0.6
        ),
        check(
            "throughput at 32 connections >= 1.3x nginx",
            ratios["c32"]["proxy"]["vs_nginx"]["per_second"].as_f64(),
            "x nginx",
            |r| r >= 1.3
        ),
        check(
            "added p50 latency at 1 connection <= 0.5x nginx's added latency",
            ratios["c1"]["proxy"]["vs_nginx"]["added_p50_us"].as_f64(),
            "x nginx",
            |r| r <= 0.5
        ),
        check(
            "idle RSS <= 8 MiB",
            idle.get("proxy")
                .and_then(|m| m["rss_kib"].as_f64())
                .map(|k| k / 1024.0),
            "MiB",
            |m| m <= 8.0
        ),
        check(
            "memory per open SSE stream <= 0.5x nginx",
            ratios["streams"]["proxy"]["vs_nginx"]["memory_per_stream_bytes"].as_f64(),
            "x nginx",
            |r| r <= 0.5
        ),
        check(
            "idle SSE streams (all opened) within 256 MiB RSS",
            loads["idle_streams"]["proxy"]["rss_peak_kib"]
                .as_f64()
                .filter(|_| idle_ok)
                .map(|k| k / 1024.0),
            "MiB",
            |m| m <= 256.0
        ),
        check(
            "SSE first event added delay at p99 < 1 ms",
            ratios["sse_first"]["proxy"]["added_p99_us"]
                .as_f64()
                .map(|u| u / 1000.0),
            "ms",
            |m| m < 1.0
        ),
        check(
            "startup to ready <= 50 ms",
            startup.get("proxy").and_then(|s| s["p50_ms"].as_f64()),
            "ms",
            |m| m <= 50.0
        ),
    ])
}

fn table(results: &Value) -> String {
    let mut t = String::new();
    let meta = &results["meta"];
    let _ = writeln!(
        t,
        "\nmcp-vpce-proxy benchmark  {}  host {}  ({} CPUs, {})\nrounds {}, {} s per cell, forwarder workers {}, upstream ALPN {}",
        meta["date"].as_str().unwrap_or("?"),
        meta["host"].as_str().unwrap_or("?"),
        meta["cpus"],
        meta["cpu_model"].as_str().unwrap_or("?"),
        meta["rounds"],
        meta["duration_s"],
        meta["workers"],
        meta["upstream_alpn"].as_str().unwrap_or("?"),
    );
    let num = |v: &Value, digits: usize| match v.as_f64() {
        Some(x) => format!("{x:.digits$}"),
        None => "-".to_string(),
    };
    let mib = |v: &Value| match v.as_f64() {
        Some(k) => format!("{:.1}", k / 1024.0),
        None => "-".into(),
    };
    for (load, about) in LOADS {
        let Some(rows) = results["loads"][load].as_object() else {
            continue;
        };
        let _ = writeln!(t, "\n[{load}] {about}");
        let _ = writeln!(
            t,
            "{:<9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6} {:>9} {:>8} {:>8} {:>9}",
            "",
            "units/s",
            "p50 µs",
            "p90 µs",
            "p99 µs",
            "CPU µs/u",
            "RSS idle",
            "RSS peak",
            "conns",
            "B/stream",
            "×nginx/s",
            "×ng CPU",
            "+p50 µs"
        );
        for f in FORWARDERS {
            let Some(row) = rows.get(f) else { continue };
            let ratio = &results["ratios"][load][f];
            let _ = writeln!(
                t,
                "{:<9} {:>9} {:>8} {:>8} {:>8} {:>9} {:>8} {:>8} {:>6} {:>9} {:>8} {:>8} {:>9}{}",
                f,
                num(&row["per_second"], 0),
                num(&row["p50_us"], 0),
                num(&row["p90_us"], 0),
                num(&row["p99_us"], 0),
                num(&row["cpu_us_per_unit"], 1),
                mib(&row["rss_idle_kib"]),
                mib(&row["rss_peak_kib"]),
                num(&row["upstream_connections"], 0),
                num(&row["memory_per_stream_bytes"], 0),
                num(&ratio["vs_nginx"]["per_second"], 2),
                num(&ratio["vs_nginx"]["cpu_us_per_unit"], 2),
                num(&ratio["added_p50_us"], 0),
                match row["valid_rounds"].as_u64() {
                    Some(v) if Some(v) != row["rounds"].as_u64() => format!(
                        "  ({v}/{} rounds valid: {})",
                        row["rounds"],
                        row["problems"][0].as_str().unwrap_or("")
                    ),
                    _ if load == "idle_streams" => {
                        format!("  ({} streams held)", num(&row["units"], 0))
                    }
                    _ => String::new(),
                },
            );
        }
    }
    if let Some(burst) = results["burst"].as_object().filter(|b| !b.is_empty()) {
        let _ = writeln!(
            t,
            "\ncold burst (concurrent requests to a forwarder with no upstream connection yet):"
        );
        for f in ["proxy", "candidate", "nginx", "haproxy"] {
            let Some(b) = burst.get(f) else { continue };
            let _ = writeln!(
                t,
                "  {f:<9} {} requests: {} upstream connections opened{}  errors {}",
                b["requests"],
                b["upstream_connections"],
                match b["upstream_connections_opened_total"].as_f64() {
                    Some(n) => format!(" (its metric: {n})"),
                    None => String::new(),
                },
                b["errors"],
            );
        }
    }
    let _ = writeln!(
        t,
        "\nidle memory after start (MiB; anon = anonymous, the process's own) and startup to ready (ms, median):"
    );
    for f in ["proxy", "candidate", "nginx", "haproxy"] {
        if results["idle"][f].is_null() {
            continue;
        }
        let _ = writeln!(
            t,
            "  {f:<9} RSS {:>6}  PSS {:>6}  anon {:>6}  startup {:>6} ms",
            mib(&results["idle"][f]["rss_kib"]),
            mib(&results["idle"][f]["pss_kib"]),
            mib(&results["idle"][f]["anon_kib"]),
            num(&results["startup"][f]["p50_ms"], 1),
        );
    }
    let _ = writeln!(
        t,
        "  proxy binary {} bytes ({:.1} MiB)",
        meta["binary_bytes"],
        meta["binary_bytes"].as_f64().unwrap_or(0.0) / 1048576.0
    );
    let _ = writeln!(t, "\ntargets (the performance issues, 6 and 19):");
    for target in results["targets"].as_array().into_iter().flatten() {
        let verdict = match target["pass"].as_bool() {
            Some(true) => "pass",
            Some(false) => "MISS",
            None => "n/a ",
        };
        let _ = writeln!(
            t,
            "  [{verdict}] {:<74} measured {} {}",
            target["target"].as_str().unwrap_or(""),
            num(&target["measured"], 2),
            target["unit"].as_str().unwrap_or(""),
        );
    }
    t
}
