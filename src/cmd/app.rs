//! What the `run` and `check` subcommands do.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::cmd::cli::{RunArgs, RuntimeArgs};
use crate::config::Config;
use crate::listener::admin::Admin;
use crate::listener::reload::Load;
use crate::listener::server::{shutdown_signal, Reloader, Server};
use crate::listener::workers::Workers;
use crate::proxy::route::RouteTable;
use crate::upstream::dns::Dns;

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
    let config =
        Config::load(args.config.as_deref(), &args.overrides()?).map_err(|e| e.to_string())?;
    if let Some(export) = crate::ops::telemetry::init(&config.telemetry)? {
        tracing::info!("telemetry: spans go by {export}");
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
        let load = loader(args.clone());
        tokio::spawn(crate::listener::reload::watch_config(
            args.watch_config,
            args.config.clone(),
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
    crate::ops::telemetry::shutdown(std::time::Duration::from_secs(2));
    result
}

/// How a reload loads the configuration: the file, flags and environment as at start.
fn loader(args: RunArgs) -> Arc<Load> {
    Arc::new(move || {
        let overrides = args.overrides()?;
        Config::load(args.config.as_deref(), &overrides).map_err(|e| e.to_string())
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

pub fn check(args: RunArgs) -> Result<(), String> {
    let config =
        Config::load(args.config.as_deref(), &args.overrides()?).map_err(|e| e.to_string())?;
    let text = runtime()?.block_on(async {
        let dns = Arc::new(Dns::new(&config.dns)?);
        let audit = crate::ops::audit::AuditSink::start(&config.audit)?;
        let table = RouteTable::build(&config, &dns, &audit)?;
        Ok::<_, String>(describe(&config, &table))
    })?;
    print!("{text}");
    println!(
        "telemetry: {}",
        crate::ops::telemetry::describe(&config.telemetry)?
    );
    if let Some(warning) = crate::config::inbound::exposure_warning(&config.inbound, config.listen)
    {
        eprintln!("warning: {warning}");
    }
    Ok(())
}

/// The effective configuration as `check` prints it. Credentials appear only through
/// `Credential::describe`, which shows a fingerprint at most.
pub fn describe(config: &Config, table: &RouteTable) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let routes = table.routes().count();
    let _ = writeln!(
        out,
        "configuration OK: {routes} route{}, listening on {}",
        if routes == 1 { "" } else { "s" },
        config.listen
    );
    match config.admin {
        Some(admin) => {
            let _ = writeln!(out, "admin: {admin} (/metrics, /healthz, /readyz, /routes)");
            if !config.admin_hosts.is_empty() {
                let _ = writeln!(
                    out,
                    "admin hosts: IP addresses, localhost, {}",
                    config.admin_hosts.join(", ")
                );
            }
        }
        None => {
            let _ = writeln!(out, "admin: off");
        }
    }
    let servers = if config.dns.servers.is_empty() {
        "system resolver (/etc/resolv.conf)".to_string()
    } else {
        config.dns.servers.join(", ")
    };
    let ranges: Vec<String> = config
        .dns
        .private_ranges
        .iter()
        .map(|r| r.to_string())
        .collect();
    let _ = writeln!(out, "dns: {servers}; in-VPC ranges: {}", ranges.join(", "));
    for route in table.routes() {
        let c = &route.config;
        let _ = writeln!(out, "route {}", route.name);
        let _ = writeln!(out, "  path             {}", route.path);
        let _ = writeln!(out, "  gateway          {}", c.gateway);
        let _ = writeln!(out, "  dial             {}", route.dial_description());
        let _ = writeln!(out, "  require_private  {}", c.require_private);
        let _ = writeln!(out, "  credential       {}", route.credential.describe());
        let _ = writeln!(out, "  tools            {}", route.layer.describe_tools());
        if let Some(ca) = &c.ca_file {
            let _ = writeln!(out, "  ca_file          {}", ca.display());
        }
        let _ = writeln!(out, "  max_body_bytes   {}", c.max_body_bytes);
        let _ = writeln!(
            out,
            "  timeouts         connect {}, tls {}, response {}, idle {}",
            humantime::format_duration(c.connect_timeout),
            humantime::format_duration(c.tls_timeout),
            humantime::format_duration(c.response_timeout),
            humantime::format_duration(c.idle_timeout)
        );
        let _ = writeln!(
            out,
            "  pool             max idle {}, idle timeout {}",
            c.pool_max_idle,
            humantime::format_duration(c.pool_idle_timeout)
        );
    }
    out
}
