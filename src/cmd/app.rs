//! What the `run` subcommand does (`check` is in `check.rs`).

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use crate::cmd::cli::{RunArgs, RuntimeArgs};
use crate::config::{Config, ConfigSource};
use crate::listener::admin::Admin;
use crate::listener::reload::Load;
use crate::listener::server::{shutdown_signal, Reloader, Server};
use crate::listener::workers::Workers;

/// How many threads serve agent connections: `--workers`, else the number of CPUs, at
/// most 4 (a sidecar shares the host with the agent it serves).
pub fn worker_count(args: &RuntimeArgs) -> usize {
    args.workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get().min(4))
                .unwrap_or(2)
        })
        .max(1)
}

/// The main runtime: one thread for the listener and background work (admin, DNS
/// refresh, signals, reload). Agent connections are served on the worker threads when
/// there are several, on this thread when there is one.
pub fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// The agent listener and the admin listener, bound and ready to serve.
pub struct Proxy {
    server: Server,
    admin: Option<Admin>,
}

impl Proxy {
    /// Binds both listeners, then resolves every route once so that the first request
    /// finds a warm DNS cache (and the log says early when PrivateLink is not in use).
    pub async fn start(config: &Config) -> Result<Proxy, String> {
        let server = Server::bind(config).await?;
        let admin = match config.admin {
            Some(addr) => Some(
                Admin::bind_with(
                    addr,
                    server.routes(),
                    crate::listener::admin::AdminSettings::from_config(config),
                )
                .await?,
            ),
            None => None,
        };
        let table = server.routes().load_full();
        for route in table.routes() {
            tracing::info!(
                route = %route.name,
                path = %route.path,
                gateway = %route.config.gateway,
                dial = %route.dial_description(),
                credential = %route.credential.describe(),
                "route configured"
            );
        }
        for health in crate::proxy::health::readiness(&table).await.routes {
            if health.ready {
                tracing::info!(route = %health.route, "route ready");
            } else {
                tracing::warn!(route = %health.route, missing = ?health.missing, "route not ready yet");
            }
        }
        Ok(Proxy { server, admin })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(Admin::local_addr)
    }

    pub fn reloader(&self) -> Arc<Reloader> {
        self.server.reloader()
    }

    /// Serves agent connections on `workers` (started before [`Proxy::start`], so that
    /// every route has one pool per worker).
    pub fn serve_on(&mut self, workers: Arc<Workers>) {
        self.server.serve_on(workers);
    }

    /// Serves until `shutdown`, drains, then stops the admin listener too.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let (admin_stop, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        let admin = self.admin.map(|admin| {
            tokio::spawn(admin.run(async move {
                let _ = admin_stopped.await;
            }))
        });
        crate::ops::systemd::ready();
        crate::ops::systemd::spawn_watchdog();
        self.server.run(shutdown).await;
        let _ = admin_stop.send(());
        if let Some(admin) = admin {
            let _ = admin.await;
        }
    }
}

pub fn run(args: RunArgs) -> Result<(), String> {
    crate::ops::logging::init(&args.runtime.log_level, args.runtime.log_format)?;
    let source = args.config_source()?;
    let config = Config::load_from(&source, &args.overrides()?).map_err(|e| e.to_string())?;
    for warning in config.warnings(&source.name()) {
        tracing::warn!("{}", warning.line(&source.name()));
    }
    let workers = match worker_count(&args.runtime) {
        1 => None,
        n => Some(Arc::new(Workers::start(n)?)),
    };
    let result = runtime()?.block_on(async {
        let mut proxy = Proxy::start(&config).await?;
        match &workers {
            Some(workers) => proxy.serve_on(workers.clone()),
            // Agent connections are served here: the same anchor as on the workers.
            None => drop(tokio::spawn(crate::listener::workers::hold_timer_anchor())),
        }
        let reloader = proxy.reloader();
        let load = loader(args.clone(), source.clone());
        tokio::spawn(crate::listener::reload::watch_config(
            args.watch_config,
            source.file().map(Path::to_path_buf),
            load.clone(),
            reloader.clone(),
        ));
        tokio::spawn(reload_on_sighup(load, reloader));
        proxy.run(shutdown_signal()).await;
        Ok(())
    });
    if let Some(workers) = workers.and_then(Arc::into_inner) {
        workers.stop();
    }
    result
}

/// How a reload loads the configuration: the file, flags and environment as at start.
/// With `MCP_VPCE_PROXY_CONFIG_TOML` the text is the one the process started with (an
/// environment does not change): a reload validates that text again, which re-reads the
/// files it names, and so takes a rotated inbound token file; routes whose settings are
/// unchanged are kept as they are.
fn loader(args: RunArgs, source: ConfigSource) -> Arc<Load> {
    Arc::new(move || {
        let overrides = args.overrides()?;
        Config::load_from(&source, &overrides).map_err(|e| e.to_string())
    })
}

/// SIGHUP reloads the configuration (file, flags and environment as at start). An
/// invalid configuration is logged and counted; the one in force stays.
async fn reload_on_sighup(load: Arc<Load>, reloader: Arc<Reloader>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hangup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot watch SIGHUP; reload is unavailable");
            return;
        };
        while hangup.recv().await.is_some() {
            crate::listener::reload::reload(&*load, &reloader);
        }
    }
    #[cfg(not(unix))]
    {
        let _ = (load, reloader);
    }
}
