//! Log output: text for people, JSON lines for log pipelines; always to stderr so that
//! stdout stays free for command output (`check`, `demo`).

use tracing::{Event, Subscriber};
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

/// `--log-format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Starts logging: `filter` is `--log-level`.
pub fn init(filter: &str, format: LogFormat) -> Result<(), String> {
    // `level` or `level,target=level,...`. A target filter rather than tracing's
    // EnvFilter: the same directives a sidecar needs, without the regex engine that
    // span and field filters bring (0.45 MB of the binary, much of it paged in at start).
    let targets: Targets = filter
        .parse()
        .map_err(|e| format!("--log-level {filter:?}: {e}"))?;
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let registry = tracing_subscriber::registry()
        .with(targets)
        .with(NoProcessStderr);
    let result = match format {
        LogFormat::Text => registry.with(fmt).try_init(),
        LogFormat::Json => registry.with(fmt.json().flatten_event(true)).try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}

/// Drops the events in which `aws-config` quotes a failed `credential_process`'s stderr
/// (`... Stderr: <all of it>`, at WARN): that output may hold secrets. The proxy logs
/// the same failure itself with the stderr scrubbed (`auth::aws_credentials`).
struct NoProcessStderr;

impl<S: Subscriber> Layer<S> for NoProcessStderr {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        if !event.metadata().target().starts_with("aws_config") {
            return true;
        }
        let mut quotes_stderr = false;
        event.record(
            &mut |_: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                quotes_stderr |= format!("{value:?}").contains("Stderr:");
            },
        );
        !quotes_stderr
    }
}
