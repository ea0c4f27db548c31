//! OpenTelemetry traces: a server span per agent request (the child of the agent's
//! `traceparent`), child spans for what happens inside it, and the `traceparent` the
//! gateway receives, exported over OTLP/HTTP in the background.
//!
//! - [`config`]: the `[telemetry]` table; [`settings`]: the table and the standard
//!   `OTEL_*` environment resolved into what export does (off without an endpoint);
//! - [`span`]: the handles the request context uses ([`RequestSpan`] and its children);
//! - [`export`]: the bounded queue and the export thread; [`http_client`]: its client,
//!   the hyper-util one the proxy already has; [`resource`]: service, ECS task, EKS pod.
//!
//! The tracer is kept in a `OnceLock` set once at start ([`init`]); with export off it
//! stays empty and every span handle is an empty `Option`. A reload keeps the exporter
//! the process started with.

use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry::InstrumentationScope;
use opentelemetry_otlp::{WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::trace::{Sampler as SdkSampler, SdkTracer, SdkTracerProvider};

pub mod config;
pub mod export;
pub mod http_client;
pub mod resource;
pub mod settings;
pub mod span;

pub use config::TelemetryConfig;
pub use settings::Settings;
pub use span::{
    Ids, McpCall, RequestSpan, ServerRequest, Step, StepSpan, UpstreamRequest, UpstreamSpan,
};

pub(crate) struct Telemetry {
    pub(crate) tracer: SdkTracer,
    provider: SdkTracerProvider,
}

static TELEMETRY: OnceLock<Telemetry> = OnceLock::new();

/// The tracer when export is on.
#[inline]
pub(crate) fn active() -> Option<&'static Telemetry> {
    TELEMETRY.get()
}

/// True when spans are exported.
pub fn enabled() -> bool {
    active().is_some()
}

/// What `check` says about export, or the variable or key that cannot be used.
pub fn describe(config: &TelemetryConfig) -> Result<String, String> {
    Ok(match Settings::resolve(config, env)? {
        Some(settings) => settings.describe(),
        None => "off (no OTEL_EXPORTER_OTLP_ENDPOINT or [telemetry] endpoint)".into(),
    })
}

/// Starts export when the table or the environment asks for it; returns the line for
/// the start-up log. Called once, at start; a second call changes nothing.
pub fn init(config: &TelemetryConfig) -> Result<Option<String>, String> {
    let Some(settings) = Settings::resolve(config, env)? else {
        return Ok(None);
    };
    if TELEMETRY.get().is_some() {
        return Ok(None);
    }
    let line = settings.describe();
    let telemetry = start(settings)?;
    let _ = TELEMETRY.set(telemetry);
    Ok(Some(line))
}

/// Exports what is still queued (at most `timeout`) and stops the export thread; called
/// once the listeners have drained.
pub fn shutdown(timeout: Duration) {
    if let Some(telemetry) = TELEMETRY.get() {
        if let Err(e) = telemetry.provider.shutdown_with_timeout(timeout) {
            tracing::warn!("telemetry: spans still queued at exit were not all exported: {e}");
        }
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

fn start(settings: Settings) -> Result<Telemetry, String> {
    let client = http_client::CollectorClient::new(settings.export_timeout);
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client.clone())
        .with_endpoint(settings.traces_url.clone())
        .with_timeout(settings.export_timeout)
        .build()
        .map_err(|e| format!("telemetry: {e}"))?;
    let base = resource::base(&settings);
    let ecs_uri = settings.ecs_metadata_uri.clone();
    let processor = export::start(
        settings.queue,
        export::Exporter {
            exporter,
            url: settings.traces_url.clone(),
            max_batch: settings.max_batch,
            schedule_delay: settings.schedule_delay,
            export_timeout: settings.export_timeout,
            prepare: Box::new(move |exporter, runtime| {
                use opentelemetry_sdk::trace::SpanExporter as _;
                let detected = match ecs_uri {
                    Some(uri) => match runtime.block_on(resource::ecs(&client, &uri)) {
                        Ok(attributes) => attributes,
                        Err(e) => {
                            tracing::warn!("telemetry: cannot read the ECS task metadata: {e}");
                            Vec::new()
                        }
                    },
                    None => Vec::new(),
                };
                exporter.set_resource(&resource::build(base, detected));
            }),
        },
    )?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(sampler(settings.sampler))
        .with_resource(opentelemetry_sdk::Resource::builder_empty().build())
        .build();
    let tracer = provider.tracer_with_scope(
        InstrumentationScope::builder("mcp-vpce-proxy")
            .with_version(env!("CARGO_PKG_VERSION"))
            .build(),
    );
    Ok(Telemetry { tracer, provider })
}

fn sampler(sampler: settings::Sampler) -> SdkSampler {
    use settings::Sampler as S;
    match sampler {
        S::AlwaysOn => SdkSampler::AlwaysOn,
        S::AlwaysOff => SdkSampler::AlwaysOff,
        S::Ratio(r) => SdkSampler::TraceIdRatioBased(r),
        S::ParentBasedAlwaysOn => SdkSampler::ParentBased(Box::new(SdkSampler::AlwaysOn)),
        S::ParentBasedAlwaysOff => SdkSampler::ParentBased(Box::new(SdkSampler::AlwaysOff)),
        S::ParentBasedRatio(r) => {
            SdkSampler::ParentBased(Box::new(SdkSampler::TraceIdRatioBased(r)))
        }
    }
}

#[cfg(test)]
mod tests;
