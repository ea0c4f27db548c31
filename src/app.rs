//! What the `run` and `check` subcommands do.

use std::sync::Arc;

use crate::cli::{RunArgs, RuntimeArgs};
use crate::config::Config;
use crate::route::RouteTable;
use crate::server::{shutdown_signal, Server};
use crate::upstream::dns::Dns;

/// A tokio runtime sized for a sidecar: few workers, since one proxy serves one or a
/// few agents and shares the host with them.
pub fn runtime(args: &RuntimeArgs) -> Result<tokio::runtime::Runtime, String> {
    let workers = args.workers.unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get().min(4))
            .unwrap_or(2)
    });
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers.max(1))
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

pub fn run(args: RunArgs) -> Result<(), String> {
    crate::logging::init(&args.runtime)?;
    let config =
        Config::load(args.config.as_deref(), &args.overrides()?).map_err(|e| e.to_string())?;
    runtime(&args.runtime)?.block_on(async {
        let server = Server::bind(&config).await?;
        for route in server.routes().load().routes() {
            tracing::info!(
                route = %route.name,
                path = %route.path,
                gateway = %route.config.gateway,
                dial = %route.dial_description(),
                credential = %route.credential.describe(),
                "route ready"
            );
        }
        server.run(shutdown_signal()).await;
        Ok(())
    })
}

pub fn check(args: RunArgs) -> Result<(), String> {
    let config =
        Config::load(args.config.as_deref(), &args.overrides()?).map_err(|e| e.to_string())?;
    let text = runtime(&args.runtime)?.block_on(async {
        let dns = Arc::new(Dns::new(&config.dns)?);
        let audit = crate::audit::AuditSink::start(&config.audit)?;
        let table = RouteTable::build(&config, &dns, &audit)?;
        Ok::<_, String>(describe(&config, &table))
    })?;
    print!("{text}");
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
