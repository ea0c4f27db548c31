//! The `[route.traffic]` and `[route.shaping]` tables: how the route treats the gateway's
//! quota, which every agent behind the sidecar shares.
//!
//! ```toml
//! [route.traffic]
//! throttle = "answer"          # what the gateway throttled is answered here until its
//!                              # window ends; "hold": wait (up to throttle_hold_max) and
//!                              # send; "off": send everything
//! throttle_hold_max = "2s"
//! throttle_max_windows = 1024  # throttled tools/methods remembered at once
//! coalesce = true              # one upstream request for identical list calls in flight
//! cache = true                 # MCP 2026-07-28: keep list answers for their ttlMs
//! cache_max_entries = 256
//! cache_max_bytes = 16777216
//! share_max_bytes = 8388608    # the largest answer shared by coalescing or the cache
//! retry_reads = true           # a read whose connection failed before any answer: once more
//!
//! [route.shaping]              # the proxy's own quota, answered like the gateway's throttle
//! requests_per_second = 150.0  # every request sent to the gateway; 0 = no limit
//! burst = 150                  # default: one second's worth
//! tools = { "x_amz_bedrock_agentcore_search" = "25/min" }  # per glob: "<n>/s|min|h"
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

/// What the route does with a request for something the gateway throttled, until the
/// window the gateway gave (`retryAfter`, `Retry-After`) ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ThrottleMode {
    /// Answer it here with the gateway's throttle error and the time left.
    #[default]
    Answer,
    /// Wait for the window to end when it ends within `throttle_hold_max`, then send it;
    /// answer it like `answer` otherwise.
    Hold,
    /// Send it: the gateway answers (and counts it against the quota).
    Off,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficConfig {
    #[serde(default)]
    pub throttle: ThrottleMode,
    /// The longest a request waits in `hold` mode.
    #[serde(default = "default_hold_max", with = "humantime_serde")]
    pub throttle_hold_max: Duration,
    /// Throttle windows remembered at once; the oldest goes first.
    #[serde(default = "default_max_windows")]
    pub throttle_max_windows: usize,
    /// Identical list requests in flight share one upstream request.
    #[serde(default = "yes")]
    pub coalesce: bool,
    /// MCP 2026-07-28 list answers are kept for their `ttlMs`.
    #[serde(default = "yes")]
    pub cache: bool,
    #[serde(default = "default_cache_entries")]
    pub cache_max_entries: usize,
    #[serde(default = "default_cache_bytes")]
    pub cache_max_bytes: u64,
    /// The largest answer shared by coalescing or kept in the cache; a larger one is
    /// streamed to the request that asked and the others send their own.
    #[serde(default = "default_share_bytes")]
    pub share_max_bytes: u64,
    /// A read-only request whose connection failed before any byte of the answer is sent
    /// once more on a new connection.
    #[serde(default = "yes")]
    pub retry_reads: bool,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct ShapingConfig {
    /// Requests per second sent to the gateway by all agents of the route; 0 = none.
    #[serde(default)]
    pub requests_per_second: f64,
    /// Requests allowed at once above the rate; default one second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Per tool glob: `"<count>/s"`, `"/min"` or `"/h"`. One budget per entry, shared by
    /// every tool it matches; a tool matching several entries takes from each.
    #[serde(default)]
    pub tools: BTreeMap<String, String>,
}

fn yes() -> bool {
    true
}
fn default_hold_max() -> Duration {
    Duration::from_secs(2)
}
fn default_max_windows() -> usize {
    1024
}
fn default_cache_entries() -> usize {
    256
}
fn default_cache_bytes() -> u64 {
    16 * 1024 * 1024
}
fn default_share_bytes() -> u64 {
    8 * 1024 * 1024
}

impl Default for TrafficConfig {
    fn default() -> Self {
        TrafficConfig {
            throttle: ThrottleMode::Answer,
            throttle_hold_max: default_hold_max(),
            throttle_max_windows: default_max_windows(),
            coalesce: true,
            cache: true,
            cache_max_entries: default_cache_entries(),
            cache_max_bytes: default_cache_bytes(),
            share_max_bytes: default_share_bytes(),
            retry_reads: true,
        }
    }
}

/// The longest `throttle_hold_max`: a request held longer looks hung to its agent.
pub const MAX_HOLD: Duration = Duration::from_secs(60);

impl TrafficConfig {
    /// The first problem, as `"<key>: <problem>"` with the key under `[route]`.
    pub fn validate(&self) -> Result<(), String> {
        first(self.problems())
    }

    /// Every problem of the table, as `(key, problem)` with the key under `[route]`
    /// (`traffic.throttle_hold_max`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut push = |key: &str, problem: String| out.push((format!("traffic.{key}"), problem));
        if self.throttle_hold_max > MAX_HOLD {
            push(
                "throttle_hold_max",
                format!(
                    "at most {}, got {}",
                    humantime::format_duration(MAX_HOLD),
                    humantime::format_duration(self.throttle_hold_max)
                ),
            );
        } else if self.throttle == ThrottleMode::Hold && self.throttle_hold_max.is_zero() {
            push(
                "throttle_hold_max",
                "must be greater than 0 with throttle = \"hold\"".into(),
            );
        }
        if self.throttle_max_windows == 0 {
            push("throttle_max_windows", "must be at least 1".into());
        }
        if self.cache && self.cache_max_entries == 0 {
            push(
                "cache_max_entries",
                "must be at least 1 (or cache = false)".into(),
            );
        }
        if self.cache && self.cache_max_bytes == 0 {
            push(
                "cache_max_bytes",
                "must be greater than 0 (or cache = false)".into(),
            );
        }
        if self.share_max_bytes == 0 {
            push("share_max_bytes", "must be greater than 0".into());
        }
        out
    }
}

fn first(problems: Vec<(String, String)>) -> Result<(), String> {
    match problems.into_iter().next() {
        Some((key, problem)) => Err(format!("{key}: {problem}")),
        None => Ok(()),
    }
}

/// A per-tool rate: `count` requests per `per`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ToolRate {
    pub count: u32,
    pub per: Duration,
}

impl ToolRate {
    /// Reads `"25/min"`, `"10/s"`, `"1000/h"` (also `sec`, `second`, `minute`, `hour`).
    pub fn parse(text: &str) -> Result<ToolRate, String> {
        let bad =
            || format!("{text:?} is not a rate like \"25/min\" (a whole count per s, min or h)");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let count: u32 = count.trim().parse().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        if count == 0 {
            return Err(format!(
                "{text:?}: a rate of 0 would refuse the tool; use policy.deny_tools"
            ));
        }
        Ok(ToolRate { count, per })
    }

    /// Requests per second.
    pub fn per_second(self) -> f64 {
        f64::from(self.count) / self.per.as_secs_f64()
    }
}

impl ShapingConfig {
    pub fn is_active(&self) -> bool {
        self.requests_per_second > 0.0 || !self.tools.is_empty()
    }

    /// The first problem, as `"<key>: <problem>"` with the key under `[route]`.
    pub fn validate(&self) -> Result<(), String> {
        first(self.problems())
    }

    /// Every problem of the table, as `(key, problem)` with the key under `[route]`
    /// (`shaping.tools."search*"`).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if !self.requests_per_second.is_finite() || self.requests_per_second < 0.0 {
            out.push((
                "shaping.requests_per_second".into(),
                format!("must be a number >= 0, got {}", self.requests_per_second),
            ));
        }
        if let Some(burst) = self.burst {
            if self.requests_per_second == 0.0 {
                out.push((
                    "shaping.burst".into(),
                    "needs shaping.requests_per_second".into(),
                ));
            } else if burst == 0 {
                out.push(("shaping.burst".into(), "must be at least 1".into()));
            }
        }
        for (glob, rate) in &self.tools {
            let key = format!("shaping.tools.{glob:?}");
            if let Err(problem) = super::glob::Glob::new(glob) {
                out.push((key.clone(), problem));
            }
            if let Err(problem) = ToolRate::parse(rate) {
                out.push((key, problem));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_on_and_valid() {
        let t: TrafficConfig = toml::from_str("").unwrap();
        assert_eq!(t, TrafficConfig::default());
        assert_eq!(t.throttle, ThrottleMode::Answer);
        assert!(t.coalesce && t.cache && t.retry_reads);
        t.validate().unwrap();
        let s: ShapingConfig = toml::from_str("").unwrap();
        assert!(!s.is_active());
        s.validate().unwrap();
    }

    #[test]
    fn rates_read_as_a_count_per_unit() {
        let r = ToolRate::parse("25/min").unwrap();
        assert_eq!((r.count, r.per), (25, Duration::from_secs(60)));
        assert!((r.per_second() - 25.0 / 60.0).abs() < 1e-9);
        assert_eq!(ToolRate::parse("10/s").unwrap().count, 10);
        assert_eq!(
            ToolRate::parse(" 1000 / h ").unwrap().per,
            Duration::from_secs(3600)
        );
        for bad in ["25", "x/min", "25/day", "-1/s", "2.5/s"] {
            assert!(
                ToolRate::parse(bad).unwrap_err().contains("is not a rate"),
                "{bad}"
            );
        }
        assert!(ToolRate::parse("0/s").unwrap_err().contains("deny_tools"));
    }

    #[test]
    fn errors_name_the_key() {
        let s: ShapingConfig =
            toml::from_str("tools = { \"search*\" = \"25/fortnight\" }").unwrap();
        assert!(s
            .validate()
            .unwrap_err()
            .starts_with("shaping.tools.\"search*\": "));
        let s: ShapingConfig = toml::from_str("burst = 3").unwrap();
        assert!(s.validate().unwrap_err().starts_with("shaping.burst: "));
        let t: TrafficConfig =
            toml::from_str("throttle = \"hold\"\nthrottle_hold_max = \"2m\"").unwrap();
        assert!(t
            .validate()
            .unwrap_err()
            .starts_with("traffic.throttle_hold_max: "));
        assert!(toml::from_str::<TrafficConfig>("throttle = \"later\"").is_err());
        assert!(toml::from_str::<TrafficConfig>("cache_ttl = 3").is_err());
    }
}
