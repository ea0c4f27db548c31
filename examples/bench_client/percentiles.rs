//! Percentiles of a sample, as the JSON object every load reports.

use serde_json::{json, Value};

/// `{"p50","p90","p99","max","mean","n"}` in microseconds, from samples in nanoseconds.
pub fn summary_us(mut samples_ns: Vec<u64>) -> Value {
    if samples_ns.is_empty() {
        return json!({ "n": 0 });
    }
    samples_ns.sort_unstable();
    let at = |q: f64| {
        // Nearest rank: the smallest sample with at least q of the samples at or below it.
        let rank = ((q * samples_ns.len() as f64).ceil() as usize).clamp(1, samples_ns.len());
        samples_ns[rank - 1] as f64 / 1000.0
    };
    let mean = samples_ns.iter().map(|&s| s as f64).sum::<f64>() / samples_ns.len() as f64;
    json!({
        "p50": round1(at(0.50)),
        "p90": round1(at(0.90)),
        "p99": round1(at(0.99)),
        "max": round1(at(1.0)),
        "mean": round1(mean / 1000.0),
        "n": samples_ns.len(),
    })
}

pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}
