//! `mcp-vpce-proxy doctor`: the checks an operator runs by hand when "it doesn't
//! connect", for every route, with the configuration `run` would use:
//!
//! 1. resolve the dialed name (and the gateway name) with the configured resolver and
//!    the system resolver, and classify every address in-VPC or not;
//! 2. TCP connect to each address the proxy may dial, timed;
//! 3. TLS handshake with SNI = gateway name: protocol, ALPN, the certificate chain;
//! 4. obtain the credential (only a fingerprint is shown);
//! 5. MCP `initialize` and `tools/list` through the route's own client.
//!
//! One line per check, ✓ or ✗, and for each ✗ the likely cause and the fix; `--json`
//! prints the same as JSON. Exit status 0 only when every check passed.

mod credential;
mod credential_causes;
mod credential_endpoint;
mod load;
mod mcp;
mod names;
mod network;
pub mod report;

use std::sync::Arc;

use clap::Args;

use crate::auth::CredentialConfig;
use crate::cmd::cli::RunArgs;
use crate::ops::audit::{AuditConfig, AuditSink};
use crate::proxy::route::{Route, RouteTable};
use crate::upstream::dns::Dns;
use names::Resolver;
use report::{Check, Report, RouteReport, Status, Step};

#[derive(Debug, Clone, Args)]
pub struct DoctorArgs {
    #[command(flatten)]
    pub run: RunArgs,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Skip the lookups through the system resolver (getaddrinfo); they are shown for
    /// comparison only, since the proxy uses the configured resolver.
    #[arg(long)]
    pub no_system_resolver: bool,
}

pub fn run(args: DoctorArgs) -> Result<(), String> {
    let report = crate::cmd::app::runtime()?.block_on(diagnose(&args));
    if args.json {
        println!("{}", report.to_json());
    } else {
        print!("{}", report.to_text());
    }
    if report.ok {
        Ok(())
    } else {
        Err(format!(
            "doctor: {} check{} failed{}",
            report.failed,
            if report.failed == 1 { "" } else { "s" },
            if report.skipped > 0 {
                format!(", {} skipped", report.skipped)
            } else {
                String::new()
            }
        ))
    }
}

/// Runs every check of every route; never fails: a configuration that cannot be used is
/// itself a failed check.
pub async fn diagnose(args: &DoctorArgs) -> Report {
    let config_failure = |e: String| {
        Report::new(
            vec![Check::fail(
                Step::Config,
                e,
                "the configuration cannot be used as it is",
                "fix the named key (`mcp-vpce-proxy check` validates without contacting anything)",
            )],
            Vec::new(),
        )
    };
    let loaded = match load::load(&args.run) {
        Ok(loaded) => loaded,
        Err(e) => return config_failure(e),
    };
    let config = loaded.config;
    let table = Dns::new(&config.dns).and_then(|dns| {
        let dns = Arc::new(dns);
        // The doctor talks to the gateway directly, never through the MCP layer: nothing
        // is audited.
        let audit = AuditSink::start(&AuditConfig::default())?;
        RouteTable::build(&config, &dns, &audit)
    });
    let table = match table {
        Ok(table) => table,
        Err(e) => return config_failure(e),
    };
    let resolver = Resolver {
        dns: &table.dns,
        label: if config.dns.servers.is_empty() {
            "the system's resolv.conf".to_string()
        } else {
            config.dns.servers.join(", ")
        },
        system: !args.no_system_resolver,
    };
    let mut routes = Vec::new();
    for (i, route) in table.routes().enumerate() {
        let credential_error = loaded.credential_errors.get(&i);
        routes.push(diagnose_route(route, &resolver, credential_error).await);
    }
    Report::new(Vec::new(), routes)
}

async fn diagnose_route(
    route: &Route,
    resolver: &Resolver<'_>,
    credential_error: Option<&(CredentialConfig, String)>,
) -> RouteReport {
    let mut checks = Vec::new();
    let resolution = names::check(route, resolver).await;
    checks.extend(resolution.checks);

    let mut connected = false;
    let mut tls_ok = false;
    if resolution.dial.is_empty() {
        checks.push(Check::skip(
            Step::Tcp,
            "no address the proxy may dial (see dns)",
        ));
    }
    for addr in resolution.dial {
        let (check, stream) = network::connect(route, addr).await;
        checks.push(check);
        if let Some(stream) = stream {
            connected = true;
            let check = network::handshake(route, addr, stream).await;
            tls_ok |= check.status == Status::Pass;
            checks.push(check);
        }
    }
    if !connected {
        checks.push(Check::skip(
            Step::Tls,
            "no TCP connection to shake hands on",
        ));
    }

    let credential = credential::check(route, resolver, credential_error).await;
    let credential_ok = credential.last().is_some_and(|c| c.status == Status::Pass)
        && credential.iter().all(|c| c.status != Status::Fail);
    checks.extend(credential);

    if !tls_ok {
        checks.push(Check::skip(
            Step::Mcp,
            "needs a TLS connection to the gateway",
        ));
    } else if !credential_ok {
        checks.push(Check::skip(Step::Mcp, "needs the route's credential"));
    } else {
        checks.extend(mcp::check(route).await);
    }
    RouteReport {
        route: route.name.to_string(),
        path: route.path.clone(),
        gateway: route.config.gateway.clone(),
        checks,
    }
}
