//! `--watch-config`: reload when the configuration file changes, as SIGHUP does.
//!
//! Polling, not inotify: a mounted ConfigMap is updated by swapping a symlink in the
//! directory, which file-level notifications miss, and a stat plus a read of a small
//! file every two seconds costs nothing. The file's content decides, so a `touch` or a
//! rewrite with the same text does not reload, and an edit within the same second does.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::config::Config;
use crate::listener::server::Reloader;

/// How often the file is looked at.
pub const POLL_EVERY: Duration = Duration::from_secs(2);
/// An editor may write a file in several steps: a change is acted on only once the
/// content has stayed the same for this long.
const SETTLE: Duration = Duration::from_millis(300);

/// Loads the configuration as at start: file, flags, environment.
pub type Load = dyn Fn() -> Result<Config, String> + Send + Sync;

/// Watches `file` (when `--watch-config` is on) and applies each change, loading the
/// configuration with `load`.
pub async fn watch_config(
    watch: bool,
    file: Option<PathBuf>,
    load: Arc<Load>,
    reloader: Arc<Reloader>,
) {
    if !watch {
        return;
    }
    let Some(path) = file else {
        tracing::warn!(
            "--watch-config needs --config FILE (the text of MCP_VPCE_PROXY_CONFIG_TOML cannot \
             change while the process runs); nothing to watch"
        );
        return;
    };
    tracing::info!(file = %path.display(), "watching the configuration file for changes");
    let mut last = digest(&path);
    let mut tick = tokio::time::interval(POLL_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let now = digest(&path);
        if now == last {
            continue;
        }
        tokio::time::sleep(SETTLE).await;
        let settled = digest(&path);
        if settled != now {
            // Still being written; look again at the next tick.
            continue;
        }
        last = settled;
        if last.is_none() {
            // Gone (mid-swap, or deleted): keep what is in force until a file is back.
            tracing::warn!(file = %path.display(), "configuration file unreadable; keeping the configuration in force");
            continue;
        }
        tracing::info!(file = %path.display(), "configuration file changed; reloading");
        reload(&*load, &reloader);
    }
}

/// One reload, for SIGHUP and for a changed file alike: loads the configuration as at
/// start (file, flags, environment) with `load` and applies it. A configuration that does not load
/// or does not apply is logged and counted as `config_reloads{result="error"}`; the one
/// in force stays.
pub fn reload(load: &Load, reloader: &Reloader) {
    crate::ops::systemd::reloading();
    let result = match load() {
        // `apply` counts its own outcome.
        Ok(config) => reloader.apply(config),
        Err(e) => {
            crate::ops::metrics::metrics()
                .config_reloads
                .get_or_create(&crate::ops::metrics::ResultLabels {
                    result: "error".to_string(),
                })
                .inc();
            Err(e)
        }
    };
    if let Err(e) = result {
        tracing::error!("reload refused, keeping the configuration in force: {e}");
    }
    crate::ops::systemd::ready();
}

/// SHA-256 of the file's content, `None` when it cannot be read.
fn digest(path: &Path) -> Option<Vec<u8>> {
    let bytes = std::fs::read(path).ok()?;
    Some(
        ring::digest::digest(&ring::digest::SHA256, &bytes)
            .as_ref()
            .to_vec(),
    )
}
