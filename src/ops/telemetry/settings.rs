//! What export will do, from the `[telemetry]` table and the standard environment
//! (the OpenTelemetry SDK environment variables; they win over the file, as flags and
//! `MCP_VPCE_PROXY_*` variables do elsewhere):
//!
//! | variable | effect |
//! | --- | --- |
//! | `OTEL_SDK_DISABLED=true` | export off |
//! | `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` | the full URL spans are POSTed to; turns export on |
//! | `OTEL_EXPORTER_OTLP_ENDPOINT` | the collector's base URL (`/v1/traces` added); turns export on |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)PROTOCOL` | `http/protobuf` only (the default) |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)TIMEOUT` | one export request, in ms (10 s by default) |
//! | `OTEL_EXPORTER_OTLP_(TRACES_)HEADERS` | read by the OTLP exporter itself |
//! | `OTEL_SERVICE_NAME` | `service.name` |
//! | `OTEL_RESOURCE_ATTRIBUTES` | `key=value,…` resource attributes |
//! | `OTEL_TRACES_SAMPLER`, `OTEL_TRACES_SAMPLER_ARG` | the sampler; parent-based always-on by default |
//! | `OTEL_BSP_MAX_QUEUE_SIZE`, `OTEL_BSP_MAX_EXPORT_BATCH_SIZE`, `OTEL_BSP_SCHEDULE_DELAY` | the queue, the batch, the delay (ms) |
//! | `ECS_CONTAINER_METADATA_URI_V4` | set by ECS: the task's metadata is read once, in the background |
//! | `POD_NAME`, `POD_NAMESPACE`, `POD_UID`, `NODE_NAME` | set from the Kubernetes downward API: the pod |
//!
//! Resolution is a pure function of the table and an environment lookup, so it is tested
//! without touching the process environment.

use std::collections::BTreeMap;
use std::time::Duration;

use super::config::{check_endpoint, check_ratio, check_sampler, TelemetryConfig};

/// The OTLP default endpoint, for `enabled = true` without an endpoint.
pub const DEFAULT_ENDPOINT: &str = "http://localhost:4318";
pub const DEFAULT_SERVICE_NAME: &str = "mcp-vpce-proxy";

/// Export as configured: present only when export is on.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The URL spans are POSTed to (`…/v1/traces`).
    pub traces_url: String,
    pub sampler: Sampler,
    pub service_name: String,
    /// From the file and `OTEL_RESOURCE_ATTRIBUTES` (which wins), without `service.name`.
    pub resource_attributes: BTreeMap<String, String>,
    /// The pod, from the downward API variables that are set.
    pub pod: BTreeMap<&'static str, String>,
    /// The ECS task metadata endpoint, when ECS set one.
    pub ecs_metadata_uri: Option<String>,
    pub queue: usize,
    pub max_batch: usize,
    pub schedule_delay: Duration,
    pub export_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampler {
    AlwaysOn,
    AlwaysOff,
    Ratio(f64),
    ParentBasedAlwaysOn,
    ParentBasedAlwaysOff,
    ParentBasedRatio(f64),
}

impl Sampler {
    fn parse(name: &str, arg: Option<f64>) -> Sampler {
        let ratio = arg.unwrap_or(1.0);
        match name {
            "always_on" => Sampler::AlwaysOn,
            "always_off" => Sampler::AlwaysOff,
            "traceidratio" => Sampler::Ratio(ratio),
            "parentbased_always_off" => Sampler::ParentBasedAlwaysOff,
            "parentbased_traceidratio" => Sampler::ParentBasedRatio(ratio),
            _ => Sampler::ParentBasedAlwaysOn,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Sampler::AlwaysOn => "always_on".into(),
            Sampler::AlwaysOff => "always_off".into(),
            Sampler::Ratio(r) => format!("traceidratio {r}"),
            Sampler::ParentBasedAlwaysOn => "parentbased_always_on".into(),
            Sampler::ParentBasedAlwaysOff => "parentbased_always_off".into(),
            Sampler::ParentBasedRatio(r) => format!("parentbased_traceidratio {r}"),
        }
    }
}

/// The downward API variables the Kubernetes manifests set, and the resource attribute
/// each one gives.
pub const POD_VARIABLES: &[(&str, &str)] = &[
    ("POD_NAME", "k8s.pod.name"),
    ("POD_NAMESPACE", "k8s.namespace.name"),
    ("POD_UID", "k8s.pod.uid"),
    ("NODE_NAME", "k8s.node.name"),
];

impl Settings {
    /// Export settings when export is on, `None` when it is off; an error names the
    /// variable or key that cannot be used.
    pub fn resolve(
        file: &TelemetryConfig,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Option<Settings>, String> {
        let var = |name: &str| env(name).filter(|v| !v.trim().is_empty());
        if var("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
            || file.enabled == Some(false)
        {
            return Ok(None);
        }
        let traces_url = if let Some(url) = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
            check_endpoint(&url).map_err(|e| format!("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: {e}"))?;
            url
        } else if let Some(base) = var("OTEL_EXPORTER_OTLP_ENDPOINT") {
            check_endpoint(&base).map_err(|e| format!("OTEL_EXPORTER_OTLP_ENDPOINT: {e}"))?;
            traces_url(&base)
        } else if let Some(base) = &file.endpoint {
            traces_url(base)
        } else if file.enabled == Some(true) {
            traces_url(DEFAULT_ENDPOINT)
        } else {
            return Ok(None);
        };
        for name in [
            "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
            "OTEL_EXPORTER_OTLP_PROTOCOL",
        ] {
            if let Some(protocol) = var(name) {
                if protocol.trim() != "http/protobuf" {
                    return Err(format!(
                        "{name}: {protocol:?} is not supported; use http/protobuf (the \
                         collector's OTLP/HTTP port, 4318)"
                    ));
                }
                break;
            }
        }

        let sampler_arg = match var("OTEL_TRACES_SAMPLER_ARG") {
            Some(text) => {
                let ratio: f64 = text.trim().parse().map_err(|_| {
                    format!("OTEL_TRACES_SAMPLER_ARG: {text:?} is not a ratio between 0 and 1")
                })?;
                check_ratio(ratio).map_err(|e| format!("OTEL_TRACES_SAMPLER_ARG: {e}"))?;
                Some(ratio)
            }
            None => file.sampler_arg,
        };
        let sampler = match var("OTEL_TRACES_SAMPLER") {
            Some(name) => {
                let name = name.trim().to_string();
                check_sampler(&name).map_err(|e| format!("OTEL_TRACES_SAMPLER: {e}"))?;
                name
            }
            None => file
                .sampler
                .clone()
                .unwrap_or_else(|| "parentbased_always_on".into()),
        };

        let mut resource_attributes = file.resource_attributes.clone();
        if let Some(text) = var("OTEL_RESOURCE_ATTRIBUTES") {
            for (key, value) in parse_resource_attributes(&text)
                .map_err(|e| format!("OTEL_RESOURCE_ATTRIBUTES: {e}"))?
            {
                resource_attributes.insert(key, value);
            }
        }
        let from_attributes = resource_attributes.remove("service.name");
        let service_name = var("OTEL_SERVICE_NAME")
            .map(|s| s.trim().to_string())
            .or(from_attributes)
            .or_else(|| file.service_name.clone())
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.into());

        let pod = POD_VARIABLES
            .iter()
            .filter_map(|(name, key)| var(name).map(|v| (*key, v.trim().to_string())))
            .collect();
        let ecs_metadata_uri = match var("ECS_CONTAINER_METADATA_URI_V4") {
            Some(uri) => {
                check_endpoint(&uri).map_err(|e| format!("ECS_CONTAINER_METADATA_URI_V4: {e}"))?;
                Some(uri.trim_end_matches('/').to_string())
            }
            None => None,
        };

        let number = |name: &str, default: usize| -> Result<usize, String> {
            match var(name) {
                Some(text) => text
                    .trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| format!("{name}: {text:?} is not a positive number")),
                None => Ok(default),
            }
        };
        let queue = number("OTEL_BSP_MAX_QUEUE_SIZE", file.queue)?;
        let max_batch = number("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", file.max_batch.min(queue))?;
        if max_batch > queue {
            return Err(format!(
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: {max_batch} is more than the queue ({queue})"
            ));
        }
        let delay_ms = number(
            "OTEL_BSP_SCHEDULE_DELAY",
            file.schedule_delay.as_millis().max(1) as usize,
        )?;
        let timeout_ms = number(
            "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
            number(
                "OTEL_EXPORTER_OTLP_TIMEOUT",
                file.export_timeout.as_millis().max(1) as usize,
            )?,
        )?;

        Ok(Some(Settings {
            traces_url,
            sampler: Sampler::parse(&sampler, sampler_arg),
            service_name,
            resource_attributes,
            pod,
            ecs_metadata_uri,
            queue,
            max_batch,
            schedule_delay: Duration::from_millis(delay_ms as u64),
            export_timeout: Duration::from_millis(timeout_ms as u64),
        }))
    }

    /// One line for `check` and the start-up log.
    pub fn describe(&self) -> String {
        format!(
            "OTLP/HTTP to {} (service {}, sampler {}, queue {})",
            self.traces_url,
            self.service_name,
            self.sampler.describe(),
            self.queue
        )
    }
}

/// `<base>/v1/traces`, as the OTLP exporter specification builds the signal URL from
/// `OTEL_EXPORTER_OTLP_ENDPOINT`.
fn traces_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// `key1=value1,key2=value2` with percent-encoded values (W3C Baggage octets), as the
/// SDK specification defines `OTEL_RESOURCE_ATTRIBUTES`.
fn parse_resource_attributes(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for pair in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair
            .split_once('=')
            .ok_or_else(|| format!("{pair:?} is not key=value"))?;
        let key = key.trim();
        if key.is_empty() {
            return Err(format!("{pair:?} has an empty key"));
        }
        let value =
            percent_decode(value.trim()).ok_or_else(|| format!("{pair:?}: bad %-escape"))?;
        out.push((key.to_string(), value));
    }
    Ok(out)
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(file: &TelemetryConfig, vars: &[(&str, &str)]) -> Result<Option<Settings>, String> {
        Settings::resolve(file, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    fn on(vars: &[(&str, &str)]) -> Settings {
        resolve(&TelemetryConfig::default(), vars).unwrap().unwrap()
    }

    #[test]
    fn export_is_off_without_an_endpoint() {
        assert_eq!(resolve(&TelemetryConfig::default(), &[]).unwrap(), None);
        assert_eq!(
            resolve(&TelemetryConfig::default(), &[("OTEL_SERVICE_NAME", "x")]).unwrap(),
            None,
            "naming the service alone exports nothing"
        );
    }

    #[test]
    fn the_endpoint_variables_alone_turn_export_on() {
        let s = on(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318/")]);
        assert_eq!(s.traces_url, "http://127.0.0.1:4318/v1/traces");
        assert_eq!(s.sampler, Sampler::ParentBasedAlwaysOn);
        assert_eq!(s.service_name, "mcp-vpce-proxy");
        assert_eq!((s.queue, s.max_batch), (2048, 512));
        assert_eq!(s.schedule_delay, Duration::from_secs(5));
        let s = on(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            (
                "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
                "http://collector:9999/traces",
            ),
        ]);
        assert_eq!(
            s.traces_url, "http://collector:9999/traces",
            "used as given"
        );
    }

    #[test]
    fn the_environment_wins_over_the_file() {
        let file = TelemetryConfig {
            endpoint: Some("http://file:4318".into()),
            service_name: Some("from-file".into()),
            sampler: Some("always_off".into()),
            resource_attributes: [("team".to_string(), "a".to_string())].into(),
            ..TelemetryConfig::default()
        };
        let s = resolve(&file, &[]).unwrap().unwrap();
        assert_eq!(s.traces_url, "http://file:4318/v1/traces");
        assert_eq!(s.service_name, "from-file");
        assert_eq!(s.sampler, Sampler::AlwaysOff);
        let s = resolve(
            &file,
            &[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://env:4318"),
                (
                    "OTEL_RESOURCE_ATTRIBUTES",
                    "team=b,service.name=attr-name,deployment.environment.name=prod%20eu",
                ),
                ("OTEL_TRACES_SAMPLER", "parentbased_traceidratio"),
                ("OTEL_TRACES_SAMPLER_ARG", "0.25"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.traces_url, "http://env:4318/v1/traces");
        assert_eq!(s.service_name, "attr-name");
        assert_eq!(s.sampler, Sampler::ParentBasedRatio(0.25));
        assert_eq!(s.resource_attributes["team"], "b");
        assert_eq!(
            s.resource_attributes["deployment.environment.name"],
            "prod eu"
        );
        assert!(!s.resource_attributes.contains_key("service.name"));
        let s = resolve(
            &file,
            &[
                ("OTEL_RESOURCE_ATTRIBUTES", "service.name=attr-name"),
                ("OTEL_SERVICE_NAME", "svc"),
            ],
        )
        .unwrap()
        .unwrap();
        assert_eq!(s.service_name, "svc", "OTEL_SERVICE_NAME wins");
    }

    #[test]
    fn export_can_be_turned_off_by_the_sdk_variable_or_the_file() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        assert_eq!(
            resolve(
                &TelemetryConfig::default(),
                &[endpoint, ("OTEL_SDK_DISABLED", "TRUE")]
            )
            .unwrap(),
            None
        );
        let off = TelemetryConfig {
            enabled: Some(false),
            ..TelemetryConfig::default()
        };
        assert_eq!(resolve(&off, &[endpoint]).unwrap(), None);
        let default_endpoint = TelemetryConfig {
            enabled: Some(true),
            ..TelemetryConfig::default()
        };
        assert_eq!(
            resolve(&default_endpoint, &[]).unwrap().unwrap().traces_url,
            "http://localhost:4318/v1/traces"
        );
    }

    #[test]
    fn the_pod_and_the_ecs_task_come_from_the_environment_when_set() {
        let s = on(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("POD_NAME", "agent-7d9f"),
            ("POD_NAMESPACE", "agents"),
            ("NODE_NAME", "ip-10-0-1-2.ec2.internal"),
        ]);
        assert_eq!(s.pod["k8s.pod.name"], "agent-7d9f");
        assert_eq!(s.pod["k8s.namespace.name"], "agents");
        assert_eq!(s.pod["k8s.node.name"], "ip-10-0-1-2.ec2.internal");
        assert!(!s.pod.contains_key("k8s.pod.uid"));
        assert_eq!(
            s.ecs_metadata_uri, None,
            "never read unless ECS set the variable"
        );
        let s = on(&[
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            (
                "ECS_CONTAINER_METADATA_URI_V4",
                "http://169.254.170.2/v4/abc/",
            ),
        ]);
        assert_eq!(
            s.ecs_metadata_uri.as_deref(),
            Some("http://169.254.170.2/v4/abc")
        );
    }

    #[test]
    fn each_unusable_variable_is_named() {
        let endpoint = ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318");
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[endpoint, ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")],
                "OTEL_EXPORTER_OTLP_PROTOCOL: \"grpc\" is not supported; use http/protobuf (the \
                 collector's OTLP/HTTP port, 4318)",
            ),
            (
                &[
                    endpoint,
                    ("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "http/json"),
                    ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
                ],
                "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: \"http/json\" is not supported; use \
                 http/protobuf (the collector's OTLP/HTTP port, 4318)",
            ),
            (
                &[("OTEL_EXPORTER_OTLP_ENDPOINT", "https://otlp.example:4318")],
                "OTEL_EXPORTER_OTLP_ENDPOINT: \"https://otlp.example:4318\": https is not \
                 supported; send OTLP/HTTP to a collector beside the proxy over http (port 4318)",
            ),
            (
                &[endpoint, ("OTEL_TRACES_SAMPLER", "xray")],
                "OTEL_TRACES_SAMPLER: \"xray\" is not one of always_on, always_off, \
                 traceidratio, parentbased_always_on, parentbased_always_off, \
                 parentbased_traceidratio",
            ),
            (
                &[endpoint, ("OTEL_TRACES_SAMPLER_ARG", "half")],
                "OTEL_TRACES_SAMPLER_ARG: \"half\" is not a ratio between 0 and 1",
            ),
            (
                &[endpoint, ("OTEL_RESOURCE_ATTRIBUTES", "team")],
                "OTEL_RESOURCE_ATTRIBUTES: \"team\" is not key=value",
            ),
            (
                &[endpoint, ("OTEL_BSP_MAX_QUEUE_SIZE", "0")],
                "OTEL_BSP_MAX_QUEUE_SIZE: \"0\" is not a positive number",
            ),
            (
                &[
                    endpoint,
                    ("OTEL_BSP_MAX_QUEUE_SIZE", "10"),
                    ("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "20"),
                ],
                "OTEL_BSP_MAX_EXPORT_BATCH_SIZE: 20 is more than the queue (10)",
            ),
        ];
        for (vars, expected) in cases {
            assert_eq!(
                resolve(&TelemetryConfig::default(), vars).unwrap_err(),
                *expected
            );
        }
    }
}
