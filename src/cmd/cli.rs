//! The command line. Every `run` flag can also come from `MCP_VPCE_PROXY_<NAME>`;
//! repeatable flags take comma-separated lists there. Flags override the file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use ipnet::IpNet;

use crate::auth::cli::CredentialArgs;
use crate::config::{parse_admin, parse_cidr, ConfigSource, Overrides};
use crate::mcp::cli::PolicyArgs;
use crate::ops::logging::LogFormat;

#[derive(Debug, Parser)]
#[command(
    name = "mcp-vpce-proxy",
    version,
    about = "Forwards MCP traffic from local agents to Amazon Bedrock AgentCore Gateways over AWS PrivateLink",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    /// `run` is the default when no subcommand is given.
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve: forward agent requests to the configured gateways (the default).
    Run(RunArgs),
    /// Validate the configuration and print the effective routes (never a secret).
    Check(RunArgs),
    /// Start a local demo gateway and the proxy in front of it, walk through an MCP
    /// session, then keep serving on --listen.
    Demo(DemoArgs),
    /// Check every route as an operator would by hand (DNS, TCP, TLS, credential, MCP)
    /// and print the likely cause and fix of each failure; exit 0 only if all passed.
    Doctor(crate::cmd::doctor::DoctorArgs),
    /// Ask a running proxy's admin listener for /healthz (or /readyz); exit 0 on 200.
    /// For container health checks (the image has no curl).
    Healthcheck(crate::cmd::healthcheck::HealthcheckArgs),
}

#[derive(Debug, Clone, Args)]
pub struct RunArgs {
    /// TOML configuration file with any number of [[route]] tables. Without a file, the
    /// whole TOML can be given in the variable MCP_VPCE_PROXY_CONFIG_TOML instead (not
    /// both).
    #[arg(long, env = "MCP_VPCE_PROXY_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address the agents connect to [default: 127.0.0.1:8080].
    #[arg(long, env = "MCP_VPCE_PROXY_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Admin listener for /metrics, /healthz, /readyz, /routes [default: 127.0.0.1:9901];
    /// "off" disables it.
    #[arg(long, env = "MCP_VPCE_PROXY_ADMIN", value_name = "ADDR")]
    pub admin: Option<String>,
    /// Host name the admin listener answers to besides IP addresses and localhost (a
    /// request with another Host gets 421, against DNS rebinding); repeatable.
    #[arg(
        long = "admin-host",
        env = "MCP_VPCE_PROXY_ADMIN_HOST",
        value_name = "NAME",
        value_delimiter = ','
    )]
    pub admin_hosts: Vec<String>,
    /// The gateway's MCP URL (zero-file mode: defines the one route).
    #[arg(long, env = "MCP_VPCE_PROXY_GATEWAY", value_name = "URL")]
    pub gateway: Option<String>,
    /// The VPC endpoint's DNS name, when the endpoint has private DNS off.
    #[arg(long, env = "MCP_VPCE_PROXY_ENDPOINT", value_name = "NAME")]
    pub endpoint: Option<String>,
    /// Local path of the route [default: /mcp].
    #[arg(long, env = "MCP_VPCE_PROXY_PATH", value_name = "PATH")]
    pub path: Option<String>,
    /// Static address (IP or IP:PORT) to dial instead of resolving; repeatable.
    #[arg(
        long = "address",
        env = "MCP_VPCE_PROXY_ADDRESS",
        value_name = "IP[:PORT]",
        value_delimiter = ','
    )]
    pub addresses: Vec<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    /// Extra CA certificates (PEM) to trust for the gateway, on top of the web PKI roots.
    #[arg(long, env = "MCP_VPCE_PROXY_CA_FILE", value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
    /// DNS server (IP or IP:PORT) instead of /etc/resolv.conf; repeatable.
    #[arg(
        long = "dns-server",
        env = "MCP_VPCE_PROXY_DNS_SERVER",
        value_name = "IP:PORT",
        value_delimiter = ','
    )]
    pub dns_servers: Vec<String>,
    /// In-VPC address range; repeatable; replaces the default list
    /// (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 100.64.0.0/10, fc00::/7).
    #[arg(
        long = "private-range",
        env = "MCP_VPCE_PROXY_PRIVATE_RANGE",
        value_name = "CIDR",
        value_delimiter = ',',
        value_parser = parse_cidr
    )]
    pub private_ranges: Vec<IpNet>,
    /// Allow dialing addresses outside the in-VPC ranges (PrivateLink not enforced).
    #[arg(long, env = "MCP_VPCE_PROXY_ALLOW_PUBLIC", value_parser = BoolishValueParser::new())]
    pub allow_public: bool,
    /// Reload when the --config file changes (polled every 2 s), as on SIGHUP.
    #[arg(long, env = "MCP_VPCE_PROXY_WATCH_CONFIG", value_parser = BoolishValueParser::new())]
    pub watch_config: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct DemoArgs {
    /// Address the demo proxy listens on.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_LISTEN",
        default_value = "127.0.0.1:8080",
        value_name = "ADDR"
    )]
    pub listen: SocketAddr,
    /// Admin listener of the demo proxy; "off" disables it.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_ADMIN",
        default_value = "127.0.0.1:9901",
        value_name = "ADDR"
    )]
    pub admin: String,
    /// Run the walkthrough and exit instead of serving afterwards.
    #[arg(long)]
    pub once: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

#[derive(Debug, Clone, Args)]
pub struct RuntimeArgs {
    /// Log format.
    #[arg(long, env = "MCP_VPCE_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Log filter, e.g. `info` or `info,mcp_vpce_proxy=debug`.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_LOG_LEVEL",
        default_value = "info",
        value_name = "FILTER"
    )]
    pub log_level: String,
    /// Threads serving agent connections, each with its own runtime and upstream pools
    /// [default: the number of CPUs, at most 4].
    #[arg(long, env = "MCP_VPCE_PROXY_WORKERS", value_name = "N")]
    pub workers: Option<usize>,
}

impl RunArgs {
    /// Where the configuration comes from: `--config`, or `MCP_VPCE_PROXY_CONFIG_TOML`,
    /// or neither (refused when both are given).
    pub fn config_source(&self) -> Result<ConfigSource, String> {
        ConfigSource::from_environment(self.config.as_deref())
    }

    pub fn overrides(&self) -> Result<Overrides, String> {
        Ok(Overrides {
            listen: self.listen,
            admin: self
                .admin
                .as_deref()
                .map(parse_admin)
                .transpose()
                .map_err(|e| format!("--admin: {e}"))?,
            admin_hosts: self.admin_hosts.clone(),
            gateway: self.gateway.clone(),
            endpoint: self.endpoint.clone(),
            path: self.path.clone(),
            addresses: self.addresses.clone(),
            credential: self.credential.to_config()?,
            policy: self.policy.to_config()?,
            ca_file: self.ca_file.clone(),
            dns_servers: self.dns_servers.clone(),
            private_ranges: self.private_ranges.clone(),
            allow_public: self.allow_public,
        })
    }
}
