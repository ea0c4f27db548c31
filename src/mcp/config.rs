//! The `[route.policy]` table: what this route's agents may do.
//!
//! ```toml
//! [route.policy]
//! allow_tools = ["DemoTarget___*"]      # globs over tool names; empty = every tool
//! deny_tools = ["*___delete_*"]         # wins over allow_tools
//! allow_methods = ["initialize", "notifications/*", "tools/*", "ping"]  # empty = every method
//! max_in_flight = 16                    # POSTs in flight at once; 0 = no limit
//! requests_per_second = 20.0            # sustained rate; 0 = no limit
//! burst = 40                            # requests allowed at once above the rate
//! validate = true                       # refuse non-JSON-RPC POSTs before forwarding
//! log_arguments = false                 # put tools/call arguments in audit records
//! max_filter_bytes = 8388608            # largest tools/list answer the policy filters
//! max_batch = 64                        # most messages in one JSON-RPC batch
//! ```

use serde::Deserialize;

/// The largest tools/list (or search) answer the tool policy buffers to filter.
pub const DEFAULT_MAX_FILTER_BYTES: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PolicyConfig {
    /// Tools the agent may see and call (globs); empty allows every tool.
    #[serde(default)]
    pub allow_tools: Vec<String>,
    /// Tools the agent may never see or call (globs); wins over `allow_tools`.
    #[serde(default)]
    pub deny_tools: Vec<String>,
    /// JSON-RPC methods the agent may send (globs); empty allows every method.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// POST requests in flight at once; 0 = unlimited.
    #[serde(default)]
    pub max_in_flight: usize,
    /// Sustained requests per second; 0 = unlimited.
    #[serde(default)]
    pub requests_per_second: f64,
    /// Requests allowed in a burst above the rate; default: one second's worth (at least 1).
    #[serde(default)]
    pub burst: Option<u32>,
    /// Check that POSTs are JSON-RPC before forwarding (415 / -32700 / -32600).
    #[serde(default = "yes")]
    pub validate: bool,
    /// Put `tools/call` arguments in audit records (they may hold data; off by default).
    #[serde(default)]
    pub log_arguments: bool,
    /// The largest tools/list or tool-search answer the tool policy filters; a larger one
    /// is refused (fail closed) rather than passed on unfiltered.
    #[serde(default = "default_max_filter_bytes")]
    pub max_filter_bytes: u64,
    /// The most messages one JSON-RPC batch may hold; a larger batch is refused whole
    /// (-32600). Every element costs a policy decision, an audit record and a rate token.
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
}

/// MCP clients send one message per POST (batches were dropped in 2025-06-18); a few
/// dozen covers every client that still batches.
pub const DEFAULT_MAX_BATCH: usize = 64;

fn default_max_batch() -> usize {
    DEFAULT_MAX_BATCH
}

fn yes() -> bool {
    true
}

fn default_max_filter_bytes() -> u64 {
    DEFAULT_MAX_FILTER_BYTES
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            allow_tools: Vec::new(),
            deny_tools: Vec::new(),
            allow_methods: Vec::new(),
            max_in_flight: 0,
            requests_per_second: 0.0,
            burst: None,
            validate: true,
            log_arguments: false,
            max_filter_bytes: DEFAULT_MAX_FILTER_BYTES,
            max_batch: DEFAULT_MAX_BATCH,
        }
    }
}

impl PolicyConfig {
    /// True when tools are restricted (and tools/list answers must be filtered).
    pub fn restricts_tools(&self) -> bool {
        !self.allow_tools.is_empty() || !self.deny_tools.is_empty()
    }

    /// The burst in force: `burst`, or one second's worth of the rate (at least 1).
    pub fn burst_or_default(&self) -> u32 {
        self.burst
            .unwrap_or_else(|| self.requests_per_second.ceil().max(1.0) as u32)
    }

    /// Checks the values; the error is the first problem, `"<key>: <problem>"` with the key
    /// under `[route.policy]`.
    pub fn validate(&self) -> Result<(), String> {
        match self.problems().into_iter().next() {
            Some((key, problem)) => Err(format!("{key}: {problem}")),
            None => Ok(()),
        }
    }

    /// Every problem of the table, in the order of its keys, as `(key, problem)` with the
    /// key under `[route.policy]` (`policy.allow_tools[1]`).
    pub fn problems(&self) -> Vec<(String, String)> {
        use super::glob::Glob;
        let mut out = Vec::new();
        for (key, patterns) in [
            ("policy.allow_tools", &self.allow_tools),
            ("policy.deny_tools", &self.deny_tools),
            ("policy.allow_methods", &self.allow_methods),
        ] {
            for (i, pattern) in patterns.iter().enumerate() {
                if let Err(problem) = Glob::new(pattern) {
                    out.push((format!("{key}[{i}]"), problem));
                }
            }
        }
        if !self.requests_per_second.is_finite() || self.requests_per_second < 0.0 {
            out.push((
                "policy.requests_per_second".into(),
                format!("must be a number >= 0, got {}", self.requests_per_second),
            ));
        }
        if let Some(burst) = self.burst {
            if self.requests_per_second == 0.0 {
                out.push((
                    "policy.burst".into(),
                    "needs policy.requests_per_second".into(),
                ));
            } else if burst == 0 {
                out.push(("policy.burst".into(), "must be at least 1".into()));
            }
        }
        if self.max_filter_bytes == 0 {
            out.push((
                "policy.max_filter_bytes".into(),
                "must be greater than 0".into(),
            ));
        }
        if self.max_batch == 0 {
            out.push(("policy.max_batch".into(), "must be at least 1".into()));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_allow_everything() {
        let p: PolicyConfig = toml::from_str("").unwrap();
        assert_eq!(p, PolicyConfig::default());
        assert!(p.validate);
        assert!(!p.restricts_tools());
        p.validate().unwrap();
    }

    #[test]
    fn errors_name_the_key() {
        let p: PolicyConfig = toml::from_str("allow_tools = [\"\"]").unwrap();
        assert!(p
            .validate()
            .unwrap_err()
            .starts_with("policy.allow_tools[0]: "));
        let p: PolicyConfig = toml::from_str("burst = 3").unwrap();
        assert!(p.validate().unwrap_err().starts_with("policy.burst: "));
        let p: PolicyConfig = toml::from_str("requests_per_second = -1.0").unwrap();
        assert!(p
            .validate()
            .unwrap_err()
            .starts_with("policy.requests_per_second: "));
        assert!(toml::from_str::<PolicyConfig>("allow_tool = []").is_err());
    }

    #[test]
    fn every_problem_is_listed() {
        let p: PolicyConfig = toml::from_str(
            "allow_tools = [\"\", \"ok\"]\ndeny_tools = [\"\"]\nrequests_per_second = -1.0\nmax_batch = 0",
        )
        .unwrap();
        let keys: Vec<String> = p.problems().into_iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "policy.allow_tools[0]",
                "policy.deny_tools[0]",
                "policy.requests_per_second",
                "policy.max_batch"
            ]
        );
    }
}
