//! `mcp-vpce-proxy check`: validates the configuration as `run` would, builds its routes
//! (contacting nothing), prints the effective settings and warns about valid settings
//! that are most likely mistakes.

use std::fmt::Write;
use std::sync::Arc;

use crate::cmd::cli::RunArgs;
use crate::config::{Config, LimitsConfig};
use crate::ops::audit::{AuditConfig, AuditTo};
use crate::proxy::route::RouteTable;
use crate::upstream::dns::Dns;

pub fn run(args: RunArgs) -> Result<(), String> {
    let source = args.config_source()?;
    let config = Config::load_from(&source, &args.overrides()?).map_err(|e| e.to_string())?;
    let text = crate::cmd::app::runtime()?.block_on(async {
        let dns = Arc::new(Dns::new(&config.dns)?);
        let audit = crate::ops::audit::AuditSink::start(&config.audit)?;
        let table = RouteTable::build(&config, &dns, &audit)?;
        Ok::<_, String>(describe(&config, &table, &source.name()))
    })?;
    print!("{text}");
    for warning in config.warnings(&source.name()) {
        eprintln!("warning: {}", warning.line(&source.name()));
    }
    Ok(())
}

/// The effective configuration as `check` prints it. Credentials appear only through
/// `Credential::describe`, which shows a fingerprint at most; the inbound token only as
/// a fingerprint too.
pub fn describe(config: &Config, table: &RouteTable, source: &str) -> String {
    let mut out = String::new();
    let routes = table.routes().count();
    let _ = writeln!(
        out,
        "configuration OK: {routes} route{}, listening on {}",
        if routes == 1 { "" } else { "s" },
        config.listen
    );
    let _ = writeln!(out, "source: {source}");
    if let Some(unix) = &config.unix_socket {
        let _ = writeln!(
            out,
            "unix socket: {} (mode {})",
            unix.path.display(),
            unix.mode
        );
    }
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
    describe_inbound(&mut out, config);
    describe_audit(&mut out, &config.audit);
    describe_limits(&mut out, &config.limits, config.shutdown_grace);
    for route in table.routes() {
        let c = &route.config;
        let _ = writeln!(out, "route {}", route.name);
        let _ = writeln!(out, "  path             {}", route.path);
        let _ = writeln!(out, "  gateway          {}", c.gateway);
        let _ = writeln!(out, "  dial             {}", route.dial_description());
        let _ = writeln!(out, "  require_private  {}", c.require_private);
        let _ = writeln!(out, "  credential       {}", route.credential.describe());
        let _ = writeln!(out, "  tools            {}", route.layer.describe_tools());
        let _ = writeln!(out, "  policy           {}", describe_policy(c));
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

/// `[inbound]`: who may connect and what they must send.
fn describe_inbound(out: &mut String, config: &Config) {
    let inbound = &config.inbound;
    let clients = if inbound.allowed_clients.is_empty() {
        if config.listen.ip().is_loopback() {
            "any (the listener is on loopback)".to_string()
        } else {
            "any (the inbound token decides)".to_string()
        }
    } else {
        let list: Vec<String> = inbound
            .allowed_clients
            .iter()
            .map(|n| n.to_string())
            .collect();
        list.join(", ")
    };
    let token = match (&inbound.token_env, &inbound.token_file, inbound.token()) {
        (Some(var), _, Ok(Some(token))) => format!("from env {var} ({})", token.fingerprint()),
        (_, Some(path), Ok(Some(token))) => {
            format!("from file {} ({})", path.display(), token.fingerprint())
        }
        (None, None, _) => "none".to_string(),
        // Validated at load; unreadable only if it changed since.
        _ => "unreadable now".to_string(),
    };
    let origins = if inbound.allowed_origins.is_empty() {
        "none (a request with an Origin header gets 403)".to_string()
    } else {
        inbound.allowed_origins.join(", ")
    };
    let mut hosts = "IP addresses, localhost".to_string();
    for host in &inbound.allowed_hosts {
        hosts.push_str(", ");
        hosts.push_str(host);
    }
    let _ = writeln!(out, "inbound");
    let _ = writeln!(out, "  allowed_clients  {clients}");
    let _ = writeln!(out, "  token            {token}");
    let _ = writeln!(out, "  allowed_origins  {origins}");
    let _ = writeln!(out, "  allowed_hosts    {hosts}");
}

/// `[audit]`: where the records go.
fn describe_audit(out: &mut String, audit: &AuditConfig) {
    let queue = format!(
        "queue {} records or {} bytes",
        audit.queue, audit.queue_bytes
    );
    let _ = match (audit.to, &audit.path) {
        (AuditTo::Off, _) => writeln!(out, "audit: off"),
        (AuditTo::Stdout, _) => writeln!(out, "audit: stdout; {queue}"),
        (AuditTo::File, path) => writeln!(
            out,
            "audit: file {}, rotated at {} bytes, {} rotated files kept; {queue}",
            path.as_deref().unwrap_or_else(|| "".as_ref()).display(),
            audit.max_file_bytes,
            audit.max_files
        ),
    };
}

/// `[limits]` and the shutdown grace: what one agent connection may send or hold.
fn describe_limits(out: &mut String, l: &LimitsConfig, grace: std::time::Duration) {
    let d = humantime::format_duration;
    let _ = writeln!(out, "limits");
    let _ = writeln!(
        out,
        "  max_connections                    {}",
        l.max_connections
    );
    let _ = writeln!(
        out,
        "  h2_max_concurrent_streams          {}",
        l.h2_max_concurrent_streams
    );
    let _ = writeln!(
        out,
        "  max_header_bytes                   {}",
        l.max_header_bytes
    );
    let _ = writeln!(
        out,
        "  header_read_timeout                {}",
        d(l.header_read_timeout)
    );
    let _ = writeln!(
        out,
        "  body_read_timeout                  {}",
        d(l.body_read_timeout)
    );
    let _ = writeln!(
        out,
        "  idle_connection_timeout            {}",
        d(l.idle_connection_timeout)
    );
    let _ = writeln!(
        out,
        "  h2_keep_alive_interval             {}",
        d(l.h2_keep_alive_interval)
    );
    let _ = writeln!(
        out,
        "  h2_keep_alive_timeout              {}",
        d(l.h2_keep_alive_timeout)
    );
    let _ = writeln!(
        out,
        "  max_buffered_bytes_per_connection  {}",
        l.max_buffered_bytes_per_connection
    );
    let _ = writeln!(
        out,
        "  max_buffered_bytes                 {}",
        l.max_buffered_bytes
    );
    let _ = writeln!(out, "  shutdown_grace                     {}", d(grace));
}

/// `[route.policy]` beyond the tool lists, by key.
fn describe_policy(route: &crate::config::RouteConfig) -> String {
    let p = &route.policy;
    let methods = if p.allow_methods.is_empty() {
        "every method".to_string()
    } else {
        format!("[{}]", p.allow_methods.join(", "))
    };
    let rate = if p.requests_per_second > 0.0 {
        format!(
            "{}/s, burst {}",
            p.requests_per_second,
            p.burst_or_default()
        )
    } else {
        "unlimited".to_string()
    };
    let in_flight = match p.max_in_flight {
        0 => "unlimited".to_string(),
        n => n.to_string(),
    };
    format!(
        "allow_methods {methods}; requests_per_second {rate}; max_in_flight {in_flight}; \
         validate {}; max_batch {}; max_filter_bytes {}; log_arguments {}",
        p.validate, p.max_batch, p.max_filter_bytes, p.log_arguments
    )
}
