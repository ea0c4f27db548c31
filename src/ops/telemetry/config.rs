//! The `[telemetry]` table: where spans are exported and how they are sampled. Every key
//! is optional; the standard `OTEL_*` environment variables override it (see
//! [`super::settings`]), and without an endpoint from either, export stays off.
//!
//! ```toml
//! [telemetry]
//! endpoint = "http://127.0.0.1:4318"   # the collector's OTLP/HTTP base; /v1/traces is added
//! service_name = "mcp-vpce-proxy"      # the `service.name` resource attribute
//! sampler = "parentbased_always_on"    # or always_on, always_off, traceidratio,
//!                                      # parentbased_always_off, parentbased_traceidratio
//! sampler_arg = 1.0                    # the ratio of the *traceidratio samplers
//! resource_attributes = { "deployment.environment.name" = "prod" }
//! queue = 2048                         # finished spans waiting for export before drops start
//! max_batch = 512                      # spans per export request
//! schedule_delay = "5s"                # how long a span may wait for a batch to fill
//! export_timeout = "10s"               # one export request, retries included
//! # enabled = false                    # off whatever the environment says
//! ```

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// `false` keeps export off even when the environment names a collector; `true`
    /// without an endpoint exports to the OTLP default, `http://localhost:4318`.
    #[serde(default)]
    pub enabled: Option<bool>,
    /// The collector's OTLP/HTTP base URL (`/v1/traces` is appended).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub service_name: Option<String>,
    #[serde(default)]
    pub sampler: Option<String>,
    #[serde(default)]
    pub sampler_arg: Option<f64>,
    #[serde(default)]
    pub resource_attributes: BTreeMap<String, String>,
    #[serde(default = "default_queue")]
    pub queue: usize,
    #[serde(default = "default_max_batch")]
    pub max_batch: usize,
    #[serde(default = "default_schedule_delay", with = "humantime_serde")]
    pub schedule_delay: Duration,
    #[serde(default = "default_export_timeout", with = "humantime_serde")]
    pub export_timeout: Duration,
}

fn default_queue() -> usize {
    2048
}
fn default_max_batch() -> usize {
    512
}
fn default_schedule_delay() -> Duration {
    Duration::from_secs(5)
}
fn default_export_timeout() -> Duration {
    Duration::from_secs(10)
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        TelemetryConfig {
            enabled: None,
            endpoint: None,
            service_name: None,
            sampler: None,
            sampler_arg: None,
            resource_attributes: BTreeMap::new(),
            queue: default_queue(),
            max_batch: default_max_batch(),
            schedule_delay: default_schedule_delay(),
            export_timeout: default_export_timeout(),
        }
    }
}

/// The samplers of the OpenTelemetry specification that need no remote service.
pub const SAMPLERS: &[&str] = &[
    "always_on",
    "always_off",
    "traceidratio",
    "parentbased_always_on",
    "parentbased_always_off",
    "parentbased_traceidratio",
];

impl TelemetryConfig {
    /// Every problem of the table, as `(key, problem)`.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |key: &str, problem: String| out.push((format!("telemetry.{key}"), problem));
        if let Some(endpoint) = &self.endpoint {
            if let Err(e) = check_endpoint(endpoint) {
                push("endpoint", e);
            }
        }
        if self
            .service_name
            .as_ref()
            .is_some_and(|n| n.trim().is_empty())
        {
            push("service_name", "must not be empty".into());
        }
        if let Some(sampler) = &self.sampler {
            if let Err(e) = check_sampler(sampler) {
                push("sampler", e);
            }
        }
        if let Some(arg) = self.sampler_arg {
            if let Err(e) = check_ratio(arg) {
                push("sampler_arg", e);
            }
        }
        if self.resource_attributes.keys().any(|k| k.trim().is_empty()) {
            push("resource_attributes", "a key is empty".into());
        }
        if self.queue == 0 {
            push("queue", "must be at least 1".into());
        } else if self.max_batch == 0 || self.max_batch > self.queue {
            push(
                "max_batch",
                format!("must be between 1 and telemetry.queue ({})", self.queue),
            );
        }
        if self.schedule_delay.is_zero() {
            push("schedule_delay", "must be greater than 0".into());
        }
        if self.export_timeout.is_zero() {
            push("export_timeout", "must be greater than 0".into());
        }
        out
    }
}

/// An OTLP/HTTP URL the exporter can reach: plain `http://` with a host. The collector
/// runs beside the proxy (an ECS sidecar, an EKS DaemonSet or Service), so TLS to it is
/// not offered; nor is gRPC.
pub fn check_endpoint(endpoint: &str) -> Result<(), String> {
    let uri: http::Uri = endpoint
        .parse()
        .map_err(|_| format!("{endpoint:?} is not a URL like \"http://127.0.0.1:4318\""))?;
    match uri.scheme_str() {
        Some("http") => {}
        Some("https") => {
            return Err(format!(
                "{endpoint:?}: https is not supported; send OTLP/HTTP to a collector beside \
                 the proxy over http (port 4318)"
            ))
        }
        _ => {
            return Err(format!(
                "{endpoint:?} is not a URL like \"http://127.0.0.1:4318\""
            ))
        }
    }
    if uri.host().is_none_or(str::is_empty) {
        return Err(format!("{endpoint:?} has no host"));
    }
    if uri.query().is_some() {
        return Err(format!("{endpoint:?} has a query"));
    }
    Ok(())
}

pub fn check_sampler(sampler: &str) -> Result<(), String> {
    if SAMPLERS.contains(&sampler) {
        Ok(())
    } else {
        Err(format!("{sampler:?} is not one of {}", SAMPLERS.join(", ")))
    }
}

pub fn check_ratio(ratio: f64) -> Result<(), String> {
    if (0.0..=1.0).contains(&ratio) {
        Ok(())
    } else {
        Err(format!("{ratio} is not a ratio between 0 and 1"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<TelemetryConfig, String> {
        toml::from_str::<TelemetryConfig>(text).map_err(|e| e.message().to_string())
    }

    #[test]
    fn the_empty_table_is_valid_and_exports_nothing_by_itself() {
        let config = parse("").unwrap();
        assert_eq!(config, TelemetryConfig::default());
        assert!(config.problems().is_empty());
    }

    #[test]
    fn each_bad_key_is_named() {
        let cases = [
            (
                "endpoint = \"https://collector:4318\"",
                "telemetry.endpoint: \"https://collector:4318\": https is not supported; send \
                 OTLP/HTTP to a collector beside the proxy over http (port 4318)",
            ),
            (
                "endpoint = \"collector:4318\"",
                "telemetry.endpoint: \"collector:4318\" is not a URL like \"http://127.0.0.1:4318\"",
            ),
            (
                "sampler = \"xray\"",
                "telemetry.sampler: \"xray\" is not one of always_on, always_off, traceidratio, \
                 parentbased_always_on, parentbased_always_off, parentbased_traceidratio",
            ),
            (
                "sampler_arg = 1.5",
                "telemetry.sampler_arg: 1.5 is not a ratio between 0 and 1",
            ),
            ("queue = 0", "telemetry.queue: must be at least 1"),
            (
                "queue = 10\nmax_batch = 11",
                "telemetry.max_batch: must be between 1 and telemetry.queue (10)",
            ),
            (
                "schedule_delay = \"0s\"",
                "telemetry.schedule_delay: must be greater than 0",
            ),
            ("service_name = \" \"", "telemetry.service_name: must not be empty"),
        ];
        for (text, expected) in cases {
            let problems: Vec<String> = parse(text)
                .unwrap()
                .problems()
                .into_iter()
                .map(|(key, problem)| format!("{key}: {problem}"))
                .collect();
            assert_eq!(problems, [expected], "{text}");
        }
    }

    #[test]
    fn an_unknown_key_is_refused() {
        let e = parse("endpoints = \"http://x:4318\"").unwrap_err();
        assert!(e.contains("unknown field `endpoints`"), "{e}");
    }
}
