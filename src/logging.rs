//! Log output: text for people, JSON lines for log pipelines; always to stderr so that
//! stdout stays free for command output (`check`, `demo`).

use tracing_subscriber::EnvFilter;

use crate::cli::{LogFormat, RuntimeArgs};

pub fn init(args: &RuntimeArgs) -> Result<(), String> {
    let filter = EnvFilter::try_new(&args.log_level)
        .map_err(|e| format!("--log-level {:?}: {e}", args.log_level))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let result = match args.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    result.map_err(|e| format!("cannot start logging: {e}"))
}
