//! The configuration: the TOML schema, the overrides from flags/env, and validation.
//!
//! The serde types below are the single declaration of every setting and its default.
//! The text comes from a file or from `MCP_VPCE_PROXY_CONFIG_TOML` ([`source`]).
//! Validation runs once at load, over every section (each section's own `problems` stays
//! the source of truth for its rules; its keys are given their full path here), and
//! reports every problem found as one [`ConfigError`], a line per problem:
//! `<source>: <key>: <problem>`, where the source is the file,
//! `$MCP_VPCE_PROXY_CONFIG_TOML` or "command line", and the key is the TOML path, shown
//! with the route's name inside a route (`route "billing" (route[1]).policy.allow_tools[0]`;
//! in zero-file mode, the flag). Ranges that do not parse are found before the typed
//! reading ([`cidr`]), so that they are listed with the rest; what the TOML reader itself
//! refuses (syntax, unknown keys, wrong types) stops it. A configuration that loads
//! builds its route table and audit sink without a configuration error, at start and on
//! reload alike. [`Config::warnings`] lists what is valid but most likely a mistake.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

pub mod cidr;
pub mod inbound;
pub mod source;

pub use crate::auth::config::CredentialConfig;
pub use crate::mcp::config::PolicyConfig;
pub use crate::mcp::traffic::{ShapingConfig, TrafficConfig};
pub use crate::ops::audit::AuditConfig;
pub use crate::ops::telemetry::TelemetryConfig;
use crate::upstream::config::{parse_address, DnsConfig};
pub use cidr::parse_cidr;
pub use inbound::InboundConfig;
pub use source::{ConfigSource, CONFIG_TOML_VAR};

pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
pub const DEFAULT_PATH: &str = "/mcp";
/// AgentCore Gateway accepts request payloads up to 6 MB.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 6 * 1024 * 1024;

/// The whole file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// A unix domain socket to listen on as well (its file mode decides who may connect).
    #[serde(default)]
    pub unix_socket: Option<UnixSocketConfig>,
    /// The admin listener (`/metrics`, `/healthz`, `/readyz`, `/routes`); "off" disables it.
    #[serde(default = "default_admin", with = "admin_address")]
    pub admin: Option<SocketAddr>,
    /// Host names the admin listener answers to besides IP literals and `localhost`
    /// (requests naming another Host get 421: DNS rebinding guard).
    #[serde(default)]
    pub admin_hosts: Vec<String>,
    /// How long in-flight requests may run after SIGTERM/SIGINT before they are cut.
    #[serde(default = "default_grace", with = "humantime_serde")]
    pub shutdown_grace: Duration,
    #[serde(default)]
    pub dns: DnsConfig,
    /// Bounds on what one agent connection may send or hold.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Who may use the proxy (client addresses, inbound token, Origin allow-list, ...).
    #[serde(default)]
    pub inbound: InboundConfig,
    /// Where audit records of tool calls and refusals go.
    #[serde(default)]
    pub audit: AuditConfig,
    /// OpenTelemetry trace export (off without an endpoint here or in `OTEL_*`).
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    #[serde(default, rename = "route")]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UnixSocketConfig {
    pub path: PathBuf,
    /// File mode in octal, e.g. "0660" (owner and group may connect).
    #[serde(default = "default_socket_mode")]
    pub mode: String,
    /// Numeric owner and group ids to give the socket file.
    #[serde(default)]
    pub owner: Option<u32>,
    #[serde(default)]
    pub group: Option<u32>,
}

fn default_socket_mode() -> String {
    "0600".to_string()
}

impl UnixSocketConfig {
    pub fn mode_bits(&self) -> Result<u32, String> {
        u32::from_str_radix(self.mode.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| format!("{:?} is not an octal file mode like \"0660\"", self.mode))
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Time an agent has to send a complete request head, from its connection's first
    /// byte or its previous answer (slowloris guard). An HTTP/1.1 connection idle
    /// between requests for this long is closed, and so is a connection of either
    /// protocol that has not completed its first request head by then.
    #[serde(default = "default_header_read_timeout", with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time an agent has to send a whole request body once its headers arrived.
    #[serde(default = "default_body_read_timeout", with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// Upper bound of one request head (HTTP/1 buffer, HTTP/2 header list), in bytes.
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Agent connections served at once; further connections wait in the kernel's
    /// accept queue until one closes.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// Concurrent HTTP/2 streams per agent connection.
    #[serde(default = "default_h2_streams")]
    pub h2_max_concurrent_streams: u32,
    /// How long an agent connection may stay open with no request in progress (an
    /// HTTP/2 connection with no open stream, an HTTP/1.1 keep-alive connection between
    /// requests) before it is closed. A request in progress keeps its connection open
    /// however long it runs: an SSE stream silent for hours is bounded by the route's
    /// `idle_timeout`, not by this. (HTTP/1.1 connections idle between requests are
    /// usually closed sooner, at `header_read_timeout`.)
    #[serde(default = "default_idle_connection_timeout", with = "humantime_serde")]
    pub idle_connection_timeout: Duration,
    /// HTTP/2 keep-alive: a PING goes to an agent connection that has sent nothing for
    /// this long, and the connection is closed when the PING is not answered within
    /// `h2_keep_alive_timeout` (a vanished peer, or one that stopped reading).
    #[serde(default = "default_h2_keep_alive_interval", with = "humantime_serde")]
    pub h2_keep_alive_interval: Duration,
    /// See `h2_keep_alive_interval`.
    #[serde(default = "default_h2_keep_alive_timeout", with = "humantime_serde")]
    pub h2_keep_alive_timeout: Duration,
    /// Request body bytes one agent connection may have buffered at once (POST bodies
    /// are read whole before they are forwarded; an HTTP/2 connection may carry many at
    /// a time). Counted as the bytes arrive and given back when the body has been
    /// forwarded or dropped; a request that would go over gets 503 (JSON-RPC -31015)
    /// with `Retry-After`. Default 24 MiB: four bodies of the default `max_body_bytes`.
    /// Must be at least every route's `max_body_bytes`.
    #[serde(default = "default_max_buffered_bytes_per_connection")]
    pub max_buffered_bytes_per_connection: u64,
    /// The same for all agent connections together: what the process may hold in
    /// request bodies at once. Default 256 MiB: about forty bodies of the default
    /// `max_body_bytes` at once, far beyond what agents send (MCP messages are mostly
    /// kilobytes) and within the memory of a small sidecar container.
    #[serde(default = "default_max_buffered_bytes")]
    pub max_buffered_bytes: u64,
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(30)
}
fn default_body_read_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_max_header_bytes() -> usize {
    64 * 1024
}
fn default_max_connections() -> usize {
    4096
}
fn default_h2_streams() -> u32 {
    256
}
fn default_idle_connection_timeout() -> Duration {
    Duration::from_secs(60)
}
fn default_h2_keep_alive_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_h2_keep_alive_timeout() -> Duration {
    Duration::from_secs(20)
}
fn default_max_buffered_bytes_per_connection() -> u64 {
    4 * DEFAULT_MAX_BODY_BYTES
}
fn default_max_buffered_bytes() -> u64 {
    256 * 1024 * 1024
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            header_read_timeout: default_header_read_timeout(),
            body_read_timeout: default_body_read_timeout(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            h2_max_concurrent_streams: default_h2_streams(),
            idle_connection_timeout: default_idle_connection_timeout(),
            h2_keep_alive_interval: default_h2_keep_alive_interval(),
            h2_keep_alive_timeout: default_h2_keep_alive_timeout(),
            max_buffered_bytes_per_connection: default_max_buffered_bytes_per_connection(),
            max_buffered_bytes: default_max_buffered_bytes(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// Name used in logs; defaults to the local path without its leading slash.
    #[serde(default)]
    pub name: Option<String>,
    /// The local path the agent posts to.
    #[serde(default = "default_path")]
    pub path: String,
    /// The gateway's MCP URL, `https://<id>.gateway.bedrock-agentcore.<region>.amazonaws.com/mcp`.
    pub gateway: String,
    /// The interface endpoint's DNS name, when private DNS is off. The connection goes to
    /// its addresses; SNI, certificate check and Host still use the gateway's name.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Static addresses (`IP` or `IP:PORT`) that replace DNS for the dialed name, like
    /// curl's `--resolve`. Still subject to the in-VPC check.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Extra PEM CA certificates trusted for this route, on top of the web PKI roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Addresses in these ranges are tried first: the subnets of the agent's own
    /// availability zone, so that traffic stays in the zone while its endpoint works.
    #[serde(default)]
    pub preferred_ranges: Vec<IpNet>,
    /// Refuse to dial addresses outside the in-VPC ranges.
    #[serde(default = "yes")]
    pub require_private: bool,
    #[serde(default)]
    pub credential: CredentialConfig,
    /// What the route's agents may do (tools, methods, rates).
    #[serde(default)]
    pub policy: PolicyConfig,
    /// The gateway's quota: throttle windows, coalescing, the cache, safe retries.
    #[serde(default)]
    pub traffic: TrafficConfig,
    /// The route's own quota, answered like the gateway's throttle.
    #[serde(default)]
    pub shaping: ShapingConfig,
    #[serde(default = "default_max_body")]
    pub max_body_bytes: u64,
    /// TCP connect time allowed per address.
    #[serde(default = "default_connect_timeout", with = "humantime_serde")]
    pub connect_timeout: Duration,
    #[serde(default = "default_tls_timeout", with = "humantime_serde")]
    pub tls_timeout: Duration,
    /// Time from sending the request to the upstream's response headers (a tool call may
    /// run 15 minutes before a JSON answer starts).
    #[serde(default = "default_long", with = "humantime_serde")]
    pub response_timeout: Duration,
    /// Longest silence allowed inside a response body (SSE streams may stay open for hours
    /// as long as events keep flowing).
    #[serde(default = "default_long", with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Idle upstream connections kept per route.
    #[serde(default = "default_pool_max_idle")]
    pub pool_max_idle: usize,
    /// Below the 60 s idle timeout of AWS load balancers, so that we close first.
    #[serde(default = "default_pool_idle_timeout", with = "humantime_serde")]
    pub pool_idle_timeout: Duration,
    /// HTTP/2: requests open on one gateway connection (per worker) before a second one
    /// is opened. 100 is the least a server should allow (RFC 9113 6.5.2); set it to the
    /// gateway's `SETTINGS_MAX_CONCURRENT_STREAMS` if that is lower.
    #[serde(default = "default_max_streams_per_connection")]
    pub max_streams_per_connection: usize,
    /// HTTP/1.1 gateways: connections being opened at once per worker; further requests
    /// wait for one of them (or for a busy one to come back).
    #[serde(default = "default_max_connecting")]
    pub max_connecting: usize,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid constant")
}
pub const DEFAULT_ADMIN: &str = "127.0.0.1:9901";

fn default_admin() -> Option<SocketAddr> {
    DEFAULT_ADMIN.parse().ok()
}

/// `admin = "127.0.0.1:9901"` or `admin = "off"`.
mod admin_address {
    use std::net::SocketAddr;

    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_admin(&text).map_err(serde::de::Error::custom)
    }
}

/// Parses an admin address, or `off` to disable the admin listener.
pub fn parse_admin(text: &str) -> Result<Option<SocketAddr>, String> {
    match text.trim() {
        "off" | "none" | "" => Ok(None),
        other => other
            .parse()
            .map(Some)
            .map_err(|_| format!("{other:?} is not an address like 127.0.0.1:9901 (or \"off\")")),
    }
}

fn default_grace() -> Duration {
    Duration::from_secs(30)
}
fn default_path() -> String {
    DEFAULT_PATH.to_string()
}
fn yes() -> bool {
    true
}
fn default_max_body() -> u64 {
    DEFAULT_MAX_BODY_BYTES
}
fn default_connect_timeout() -> Duration {
    Duration::from_secs(5)
}
fn default_tls_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_long() -> Duration {
    Duration::from_secs(15 * 60)
}
fn default_pool_max_idle() -> usize {
    32
}
fn default_pool_idle_timeout() -> Duration {
    Duration::from_secs(50)
}
fn default_max_streams_per_connection() -> usize {
    100
}
fn default_max_connecting() -> usize {
    4
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: default_listen(),
            admin: default_admin(),
            admin_hosts: Vec::new(),
            unix_socket: None,
            shutdown_grace: default_grace(),
            dns: DnsConfig::default(),
            limits: LimitsConfig::default(),
            inbound: InboundConfig::default(),
            audit: AuditConfig::default(),
            telemetry: TelemetryConfig::default(),
            routes: Vec::new(),
        }
    }
}

impl RouteConfig {
    /// A route with every default, for the given gateway URL.
    pub fn new(gateway: impl Into<String>) -> Self {
        RouteConfig {
            name: None,
            path: default_path(),
            gateway: gateway.into(),
            endpoint: None,
            addresses: Vec::new(),
            ca_file: None,
            preferred_ranges: Vec::new(),
            require_private: true,
            credential: CredentialConfig::None,
            policy: PolicyConfig::default(),
            traffic: TrafficConfig::default(),
            shaping: ShapingConfig::default(),
            max_body_bytes: default_max_body(),
            connect_timeout: default_connect_timeout(),
            tls_timeout: default_tls_timeout(),
            response_timeout: default_long(),
            idle_timeout: default_long(),
            pool_max_idle: default_pool_max_idle(),
            pool_idle_timeout: default_pool_idle_timeout(),
            max_streams_per_connection: default_max_streams_per_connection(),
            max_connecting: default_max_connecting(),
        }
    }

    /// The name used in logs and errors.
    pub fn display_name(&self) -> String {
        match &self.name {
            Some(n) => n.clone(),
            None => self.path.trim_start_matches('/').to_string(),
        }
    }
}

/// Settings given on the command line or in `MCP_VPCE_PROXY_*` variables. They override
/// the file; the route settings describe the single route of the zero-file mode.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    /// `Some(None)` disables the admin listener.
    pub admin: Option<Option<SocketAddr>>,
    /// Replaces `admin_hosts` when not empty.
    pub admin_hosts: Vec<String>,
    pub gateway: Option<String>,
    pub endpoint: Option<String>,
    pub path: Option<String>,
    pub addresses: Vec<String>,
    /// The credential chosen by flags (`--token-env`, `--token-file`, ...), if any.
    pub credential: Option<CredentialConfig>,
    /// The policy chosen by flags (`--allow-tool`, `--deny-tool`, ...), if any.
    pub policy: Option<PolicyConfig>,
    pub ca_file: Option<PathBuf>,
    pub dns_servers: Vec<String>,
    pub private_ranges: Vec<IpNet>,
    pub allow_public: bool,
}

impl Overrides {
    fn has_route_settings(&self) -> bool {
        self.gateway.is_some()
            || self.endpoint.is_some()
            || self.path.is_some()
            || !self.addresses.is_empty()
            || self.credential.is_some()
            || self.policy.is_some()
            || self.ca_file.is_some()
    }
}

/// Everything wrong with one configuration, already phrased for the operator: the source
/// (the file, or "command line") and each problem found by the validation pass, in the
/// order of the file's sections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub source: String,
    /// Never empty.
    pub problems: Vec<Problem>,
}

/// One problem: the TOML path of the setting (`route[1].policy.allow_tools[0]`; empty
/// when the whole file is at fault) and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub key: String,
    pub problem: String,
    /// The name of the route the key is in (`route[1]…`), shown in front of the key:
    /// `route "billing" (route[1]).policy.allow_tools[0]`.
    pub route: Option<String>,
}

impl Problem {
    /// The key as messages show it: with the route's name when it is in a route.
    pub fn label(&self) -> String {
        match (&self.route, self.key.find(']')) {
            (Some(name), Some(end)) if self.key.starts_with("route[") => {
                format!(
                    "route {name:?} ({}){}",
                    &self.key[..=end],
                    &self.key[end + 1..]
                )
            }
            _ => self.key.clone(),
        }
    }

    /// `<source>: <key>: <problem>` (without the key when the whole source is at fault).
    pub fn line(&self, source: &str) -> String {
        if self.key.is_empty() {
            format!("{source}: {}", self.problem)
        } else {
            format!("{source}: {}: {}", self.label(), self.problem)
        }
    }
}

impl ConfigError {
    /// An error with a single problem.
    pub fn new(source: &str, key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError {
            source: source.to_string(),
            problems: vec![Problem {
                key: key.into(),
                problem: problem.into(),
                route: None,
            }],
        }
    }

    /// The key of the first problem.
    pub fn key(&self) -> &str {
        self.problems.first().map_or("", |p| p.key.as_str())
    }

    /// The keys of every problem, in order.
    pub fn keys(&self) -> Vec<&str> {
        self.problems.iter().map(|p| p.key.as_str()).collect()
    }
}

/// One line per problem: `<source>: <key>: <problem>`.
impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            f.write_str(&p.line(&self.source))?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// The gateway URL split into what the proxy needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayUrl {
    pub host: String,
    pub port: u16,
    /// `host` or `host:port` when the port is not 443: the Host header the gateway sees.
    pub authority: String,
    pub path: String,
}

/// Checks and splits `https://host[:port]/path`.
pub fn parse_gateway_url(value: &str) -> Result<GatewayUrl, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("not a URL ({e}): {value:?}"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some(other) => return Err(format!("must be an https:// URL, got scheme {other:?}")),
        None => return Err(format!("must be an https:// URL, got {value:?}")),
    }
    let authority = uri.authority().ok_or("has no host")?;
    if authority.as_str().contains('@') {
        return Err("must not contain user information".into());
    }
    let host = authority.host().to_ascii_lowercase();
    check_dns_name(&host)?;
    let port = authority.port_u16().unwrap_or(443);
    if uri.query().is_some() {
        return Err("must not contain a query string".into());
    }
    let path = match uri.path() {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let authority = if port == 443 {
        host.clone()
    } else {
        format!("{host}:{port}")
    };
    Ok(GatewayUrl {
        host,
        port,
        authority,
        path,
    })
}

/// A host name we can put in SNI and look up: not an IP literal, only LDH labels.
pub fn check_dns_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.parse::<IpAddr>().is_ok() || name.starts_with('[') {
        return Err(format!(
            "{name:?} is an IP address; a DNS name is needed for TLS (use `addresses` to pin addresses)"
        ));
    }
    if name.contains("://") || name.contains('/') {
        return Err(format!(
            "{name:?} must be a bare DNS name, without scheme or path"
        ));
    }
    let ok = name.len() <= 253
        && name.trim_end_matches('.').split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid DNS name"))
    }
}

impl Config {
    /// Reads the file (if any), applies the overrides and validates the result.
    pub fn load(path: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let source = match path {
            Some(p) => ConfigSource::File(p.to_path_buf()),
            None => ConfigSource::Flags,
        };
        Config::load_from(&source, overrides)
    }

    /// Reads the configuration from its source (a file, the text of
    /// `MCP_VPCE_PROXY_CONFIG_TOML`, or none), applies the overrides and validates it.
    pub fn load_from(source: &ConfigSource, overrides: &Overrides) -> Result<Config, ConfigError> {
        match source.text()? {
            Some(text) => Config::parse(&text, &source.name(), overrides),
            None => {
                let mut config = Config::default();
                config.apply(overrides, &source.name())?;
                config.validate(&source.name(), Vec::new())?;
                Ok(config)
            }
        }
    }

    /// Parses TOML text, applies the overrides and validates; `source` names the text.
    pub fn parse(text: &str, source: &str, overrides: &Overrides) -> Result<Config, ConfigError> {
        let (mut config, early) = Config::read_toml(text, source)?;
        config.apply(overrides, source)?;
        config.validate(source, early)?;
        Ok(config)
    }

    /// Parses TOML text without validating it; `source` names it in errors.
    pub fn from_toml(text: &str, source: &str) -> Result<Config, ConfigError> {
        let (config, early) = Config::read_toml(text, source)?;
        match early.is_empty() {
            true => Ok(config),
            false => Err(ConfigError {
                source: source.to_string(),
                problems: early
                    .into_iter()
                    .map(|(key, problem)| Problem {
                        key,
                        problem,
                        route: None,
                    })
                    .collect(),
            }),
        }
    }

    /// The typed reading of the text, and the problems found before it: ranges that do
    /// not parse are taken out and returned as problems (see [`cidr`]), so that they are
    /// listed with the rest rather than stopping the reading. What the TOML reader itself
    /// refuses (syntax, an unknown key, a value of the wrong type) stops it, as the one
    /// problem reported.
    fn read_toml(text: &str, source: &str) -> Result<(Config, Vec<(String, String)>), ConfigError> {
        let refused = |e: toml::de::Error| {
            ConfigError::new(source, "", e.to_string().trim_end().replace('\n', "\n  "))
        };
        let mut table: toml::Table = toml::from_str(text).map_err(refused)?;
        let early = cidr::take_bad_ranges(&mut table);
        let config = if early.is_empty() {
            // From the text itself, so that the reader's errors show the line.
            toml::from_str(text).map_err(refused)?
        } else {
            toml::Value::Table(table).try_into().map_err(refused)?
        };
        Ok((config, early))
    }

    fn apply(&mut self, o: &Overrides, source: &str) -> Result<(), ConfigError> {
        if let Some(listen) = o.listen {
            self.listen = listen;
        }
        if let Some(admin) = o.admin {
            self.admin = admin;
        }
        if !o.admin_hosts.is_empty() {
            self.admin_hosts = o.admin_hosts.clone();
        }
        if !o.dns_servers.is_empty() {
            self.dns.servers = o.dns_servers.clone();
        }
        if !o.private_ranges.is_empty() {
            self.dns.private_ranges = o.private_ranges.clone();
        }
        if o.has_route_settings() {
            if self.routes.is_empty() {
                let gateway = o.gateway.clone().ok_or_else(|| {
                    ConfigError::new(
                        source,
                        "--gateway",
                        "is required (or MCP_VPCE_PROXY_GATEWAY, or a --config file)",
                    )
                })?;
                self.routes.push(RouteConfig::new(gateway));
            } else if self.routes.len() > 1 {
                return Err(ConfigError::new(
                    source,
                    "",
                    "route flags (--gateway, --endpoint, --token-env, ...) apply only \
                     when the file has at most one route",
                ));
            }
            let route = &mut self.routes[0];
            if let Some(g) = &o.gateway {
                route.gateway = g.clone();
            }
            if let Some(e) = &o.endpoint {
                route.endpoint = Some(e.clone());
            }
            if let Some(p) = &o.path {
                route.path = p.clone();
            }
            if !o.addresses.is_empty() {
                route.addresses = o.addresses.clone();
            }
            if let Some(c) = &o.ca_file {
                route.ca_file = Some(c.clone());
            }
            if let Some(credential) = &o.credential {
                route.credential = credential.clone();
            }
            // The tool flags replace the file's tool lists only; rate limits and the
            // other policy settings of the file stay.
            if let Some(policy) = &o.policy {
                if !policy.allow_tools.is_empty() {
                    route.policy.allow_tools = policy.allow_tools.clone();
                }
                if !policy.deny_tools.is_empty() {
                    route.policy.deny_tools = policy.deny_tools.clone();
                }
            }
        }
        if o.allow_public {
            for route in &mut self.routes {
                route.require_private = false;
            }
        }
        Ok(())
    }

    /// The validation pass: every section, each through its own checks, every problem
    /// collected with its full key (after `early`, the problems found while reading). A
    /// configuration that passes builds its route table and audit sink without a
    /// configuration error.
    fn validate(&self, source: &str, early: Vec<(String, String)>) -> Result<(), ConfigError> {
        // A list whose bad entries were taken out is not also reported as empty.
        let emptied = |key: &str| early.iter().any(|(k, _)| k.starts_with(&format!("{key}[")));
        let later: Vec<(String, String)> = self
            .problems()
            .into_iter()
            .filter(|(key, _)| !emptied(key))
            .collect();
        let problems: Vec<Problem> = early
            .into_iter()
            .chain(later)
            .map(|(key, problem)| self.problem(source, key, problem))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError {
                source: source.to_string(),
                problems,
            })
        }
    }

    /// A problem phrased for `source`: in zero-file mode the key is the flag the operator
    /// typed; in a file, a key inside a route carries the route's name.
    fn problem(&self, source: &str, key: String, problem: String) -> Problem {
        if path_is_command_line(source) {
            return Problem {
                key: flag_for_key(&key),
                problem,
                route: None,
            };
        }
        let route = route_index(&key)
            .and_then(|i| self.routes.get(i))
            .map(RouteConfig::display_name)
            .filter(|name| valid_route_name(name));
        Problem {
            key,
            problem,
            route,
        }
    }

    /// `route "billing" (route[1])`, for messages that name another route.
    fn route_label(&self, i: usize) -> String {
        match self.routes.get(i).map(RouteConfig::display_name) {
            Some(name) if valid_route_name(&name) => format!("route {name:?} (route[{i}])"),
            _ => format!("route[{i}]"),
        }
    }

    /// What `check` warns about (and `run` logs at start): settings that are valid but
    /// most likely not what was meant, each as a [`Problem`] with its key.
    pub fn warnings(&self, source: &str) -> Vec<Problem> {
        let mut out: Vec<(String, String)> = Vec::new();
        if let Some(admin) = self.admin {
            if !admin.ip().is_loopback() {
                out.push((
                    "admin".into(),
                    format!(
                        "{admin} is not a loopback address: /metrics, /readyz and /routes (route \
                         names, gateway URLs, credential state) answer anyone who can reach it, \
                         without authentication; keep it on 127.0.0.1 unless a probe needs it, \
                         and then allow only the prober to reach the port (security group, \
                         NetworkPolicy)"
                    ),
                ));
            }
        }
        if let Some(warning) = inbound::exposure_warning(&self.inbound, self.listen) {
            out.push(("inbound.allowed_clients".into(), warning));
        }
        for (i, route) in self.routes.iter().enumerate() {
            let Ok(gateway) = parse_gateway_url(&route.gateway) else {
                continue;
            };
            if gateway.path == "/" {
                out.push((
                    format!("route[{i}].gateway"),
                    format!(
                        "{:?} has no path: AgentCore gateways serve MCP at /mcp, so requests \
                         to this URL will most likely be answered 404; did you mean \
                         \"https://{}/mcp\"?",
                        route.gateway, gateway.authority
                    ),
                ));
            }
            let endpoint_region = route.endpoint.as_deref().and_then(agentcore_region);
            if let (Some(endpoint), Some(at), Some(gateway_at)) = (
                route.endpoint.as_deref(),
                endpoint_region,
                agentcore_region(&gateway.host),
            ) {
                if at != gateway_at {
                    out.push((
                        format!("route[{i}].endpoint"),
                        format!(
                            "{endpoint:?} is an endpoint in {at}, but the gateway is in \
                             {gateway_at}: an interface endpoint reaches the gateways of its own \
                             region only; use the DNS name of an endpoint in {gateway_at}"
                        ),
                    ));
                }
            }
        }
        out.into_iter()
            .map(|(key, problem)| self.problem(source, key, problem))
            .collect()
    }

    /// Every problem as `(key, problem)`, in the order of the sections.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut push = |key: String, problem: String| out.push((key, problem));
        if self.routes.is_empty() {
            push(
                "route".into(),
                "no route configured: give --gateway (or MCP_VPCE_PROXY_GATEWAY) or a [[route]] in the file".into(),
            );
        }
        for (i, server) in self.dns.servers.iter().enumerate() {
            if let Err(p) = parse_address(server, 53) {
                push(format!("dns.servers[{i}]"), p);
            }
        }
        if self.dns.private_ranges.is_empty() {
            push(
                "dns.private_ranges".into(),
                "is empty; every address would count as outside the VPC".into(),
            );
        }
        if self.dns.refresh.is_zero() {
            push("dns.refresh".into(), "must be greater than 0".into());
        }
        if self.dns.timeout.is_zero() {
            push("dns.timeout".into(), "must be greater than 0".into());
        }
        for (i, host) in self.admin_hosts.iter().enumerate() {
            let has_port = match host.strip_prefix('[') {
                Some(_) => !host.ends_with(']'),
                None => host.contains(':'),
            };
            let problem = match inbound::parse_request_host(host.as_bytes()) {
                Err(problem) => Some(problem),
                Ok(_) if has_port => Some("has a port"),
                Ok(_) => None,
            };
            if let Some(problem) = problem {
                push(
                    format!("admin_hosts[{i}]"),
                    format!("{host:?} {problem}; give a bare host name like \"proxy.internal\""),
                );
            }
        }
        if let Some(unix) = &self.unix_socket {
            if let Err(p) = unix.mode_bits() {
                push("unix_socket.mode".into(), p);
            }
        }
        let l = &self.limits;
        for (key, d) in [
            ("limits.header_read_timeout", l.header_read_timeout),
            ("limits.body_read_timeout", l.body_read_timeout),
            ("limits.idle_connection_timeout", l.idle_connection_timeout),
            ("limits.h2_keep_alive_interval", l.h2_keep_alive_interval),
            ("limits.h2_keep_alive_timeout", l.h2_keep_alive_timeout),
        ] {
            if d.is_zero() {
                push(key.into(), "must be greater than 0".into());
            }
        }
        if l.max_header_bytes < 8192 {
            push(
                "limits.max_header_bytes".into(),
                "must be at least 8192".into(),
            );
        }
        if l.max_connections == 0 {
            push(
                "limits.max_connections".into(),
                "must be greater than 0".into(),
            );
        }
        if l.h2_max_concurrent_streams == 0 {
            push(
                "limits.h2_max_concurrent_streams".into(),
                "must be greater than 0".into(),
            );
        }
        if l.max_buffered_bytes < l.max_buffered_bytes_per_connection {
            push(
                "limits.max_buffered_bytes".into(),
                format!(
                    "must be at least limits.max_buffered_bytes_per_connection ({})",
                    l.max_buffered_bytes_per_connection
                ),
            );
        }
        for (key, problem) in self.audit.problems() {
            push(key, problem);
        }
        for (key, problem) in self.telemetry.problems() {
            push(key, problem);
        }
        for (key, problem) in inbound::problems(&self.inbound, self.listen, &self.routes, |i| {
            self.route_label(i)
        }) {
            push(key, problem);
        }
        let mut seen_paths: Vec<(&str, usize)> = Vec::new();
        let mut seen_names: Vec<(String, usize)> = Vec::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |field: &str| format!("route[{i}].{field}");
            if !r.path.starts_with('/') || r.path.contains(['?', '#', ' ']) {
                push(
                    key("path"),
                    format!("must be an absolute path like \"/mcp\", got {:?}", r.path),
                );
            } else if let Some((_, holder)) = seen_paths.iter().find(|(p, _)| *p == r.path) {
                push(
                    key("path"),
                    format!(
                        "{:?} is already the path of {}; each route needs a path of its own",
                        r.path,
                        self.route_label(*holder)
                    ),
                );
            }
            seen_paths.push((&r.path, i));
            let name = r.display_name();
            if !valid_route_name(&name) {
                push(
                    key("name"),
                    format!("{name:?} must be non-empty letters, digits, '-', '_', '.', '/'"),
                );
            } else if let Some((_, holder)) = seen_names.iter().find(|(n, _)| *n == name) {
                push(
                    key("name"),
                    format!(
                        "{name:?} is already the name of route[{holder}]{}; names tell routes \
                         apart in logs and metrics",
                        if r.name.is_none() {
                            format!(" (this route's name comes from its path {:?})", r.path)
                        } else {
                            String::new()
                        }
                    ),
                );
            }
            seen_names.push((name, i));
            let port = match parse_gateway_url(&r.gateway) {
                Ok(gateway) => gateway.port,
                Err(p) => {
                    push(key("gateway"), p);
                    443
                }
            };
            if let Some(endpoint) = &r.endpoint {
                if let Err(p) = check_dns_name(endpoint) {
                    push(key("endpoint"), p);
                }
            }
            for (j, a) in r.addresses.iter().enumerate() {
                if let Err(p) = parse_address(a, port) {
                    push(format!("route[{i}].addresses[{j}]"), p);
                }
            }
            if let Some(ca) = &r.ca_file {
                if let Err(p) = crate::upstream::tls::read_ca_file(ca) {
                    push(key("ca_file"), p);
                }
            }
            if let Err(p) = crate::auth::check(&r.credential) {
                push(key("credential"), p);
            }
            for (policy_key, problem) in r.policy.problems() {
                push(format!("route[{i}].{policy_key}"), problem);
            }
            for (table_key, problem) in r.traffic.problems().into_iter().chain(r.shaping.problems())
            {
                push(format!("route[{i}].{table_key}"), problem);
            }
            if r.max_body_bytes == 0 {
                push(key("max_body_bytes"), "must be greater than 0".into());
            } else if r.max_body_bytes > l.max_buffered_bytes_per_connection {
                push(
                    key("max_body_bytes"),
                    format!(
                        "is more than limits.max_buffered_bytes_per_connection ({}): a body this \
                         large could never be buffered; raise that limit too",
                        l.max_buffered_bytes_per_connection
                    ),
                );
            }
            for (field, n) in [
                ("max_streams_per_connection", r.max_streams_per_connection),
                ("max_connecting", r.max_connecting),
            ] {
                if n == 0 {
                    push(key(field), "must be at least 1".into());
                }
            }
            for (field, d) in [
                ("connect_timeout", r.connect_timeout),
                ("tls_timeout", r.tls_timeout),
                ("response_timeout", r.response_timeout),
                ("idle_timeout", r.idle_timeout),
            ] {
                if d.is_zero() {
                    push(key(field), "must be greater than 0".into());
                }
            }
        }
        out
    }
}

/// The index of the route a key is in: `route[3].policy.burst` → 3.
fn route_index(key: &str) -> Option<usize> {
    key.strip_prefix("route[")?.split(']').next()?.parse().ok()
}

/// A route name: non-empty letters, digits, `-`, `_`, `.`, `/`.
fn valid_route_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
}

/// The region in an AgentCore host name, gateway or endpoint alike: the label after
/// `bedrock-agentcore` (`<id>.gateway.bedrock-agentcore.us-east-1.amazonaws.com`,
/// `vpce-….gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com`).
fn agentcore_region(host: &str) -> Option<&str> {
    let mut labels = host.split('.');
    labels.find(|l| l.eq_ignore_ascii_case("bedrock-agentcore"))?;
    labels
        .next()
        .filter(|r| crate::auth::config::check_region(r).is_ok())
}

fn path_is_command_line(source: &str) -> bool {
    source == "command line"
}

/// In zero-file mode the operator typed flags, so errors name the flag and variable.
fn flag_for_key(key: &str) -> String {
    let flag = match key {
        "route[0].gateway" => "gateway",
        "route[0].endpoint" => "endpoint",
        "route[0].path" => "path",
        "route[0].ca_file" => "ca-file",
        "route[0].credential" => {
            return "the credential flags (--token-env, --token-file, --oauth-*, --sigv4, --token-command)"
                .to_string()
        }
        k if k.starts_with("route[0].addresses") => "address",
        k if k.starts_with("route[0].policy.allow_tools") => "allow-tool",
        k if k.starts_with("route[0].policy.deny_tools") => "deny-tool",
        k if k.starts_with("dns.servers") => "dns-server",
        k if k.starts_with("admin_hosts") => "admin-host",
        "admin" => "admin",
        "listen" => "listen",
        "dns.private_ranges" => "private-range",
        _ => return key.to_string(),
    };
    let env = flag
        .split('/')
        .next()
        .unwrap_or(flag)
        .replace('-', "_")
        .to_uppercase();
    format!("--{flag} (MCP_VPCE_PROXY_{env})")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gateway_url_is_split_and_checked() {
        let g = parse_gateway_url(
            "https://my-gw-abc.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp",
        )
        .unwrap();
        assert_eq!(g.port, 443);
        assert_eq!(
            g.authority,
            "my-gw-abc.gateway.bedrock-agentcore.us-east-1.amazonaws.com"
        );
        assert_eq!(g.path, "/mcp");
        let g = parse_gateway_url("https://gw.example:8443/x").unwrap();
        assert_eq!(g.authority, "gw.example:8443");
        assert!(parse_gateway_url("http://gw.example/mcp")
            .unwrap_err()
            .contains("https"));
        assert!(parse_gateway_url("https://10.0.0.1/mcp")
            .unwrap_err()
            .contains("IP address"));
        assert!(parse_gateway_url("https://u:p@gw.example/mcp").is_err());
    }

    #[test]
    fn admin_hosts_are_bare_host_names() {
        let route = "[[route]]\ngateway = \"https://gw.example/mcp\"\n";
        let parse = |hosts: &str| {
            Config::parse(
                &format!("admin_hosts = {hosts}\n{route}"),
                "f.toml",
                &Overrides::default(),
            )
        };
        let config = parse(r#"["proxy.internal", "[::1]"]"#).unwrap();
        assert_eq!(config.admin_hosts, ["proxy.internal", "[::1]"]);
        for bad in [
            "proxy.internal:9901",
            "http://proxy.internal",
            "a b",
            "user@proxy.internal",
            "",
        ] {
            let e = parse(&format!("[{bad:?}]")).unwrap_err();
            assert_eq!(e.key(), "admin_hosts[0]", "{bad}: {e}");
        }
        let flags = Overrides {
            gateway: Some("https://gw.example/mcp".into()),
            admin_hosts: vec!["proxy.internal".into(), "x:1".into()],
            ..Overrides::default()
        };
        let e = Config::load(None, &flags).unwrap_err();
        assert_eq!(e.key(), "--admin-host (MCP_VPCE_PROXY_ADMIN_HOST)", "{e}");
    }

    #[test]
    fn buffer_budgets_must_hold_a_whole_body() {
        let parse = |text: &str| {
            Config::parse(
                &format!("{text}\n[[route]]\ngateway = \"https://gw.example/mcp\"\nmax_body_bytes = 1000\n"),
                "f.toml",
                &Overrides::default(),
            )
        };
        let defaults = parse("").unwrap().limits;
        assert_eq!(defaults.max_buffered_bytes_per_connection, 24 * 1024 * 1024);
        assert_eq!(defaults.max_buffered_bytes, 256 * 1024 * 1024);
        parse("[limits]\nmax_buffered_bytes_per_connection = 1000\nmax_buffered_bytes = 1000")
            .unwrap();
        let e = parse("[limits]\nmax_buffered_bytes_per_connection = 999").unwrap_err();
        assert_eq!(e.key(), "route[0].max_body_bytes", "{e}");
        let e =
            parse("[limits]\nmax_buffered_bytes_per_connection = 2000\nmax_buffered_bytes = 1999")
                .unwrap_err();
        assert_eq!(e.key(), "limits.max_buffered_bytes", "{e}");
    }

    const ROUTE: &str = "[[route]]\ngateway = \"https://gw.example/mcp\"\n";

    #[test]
    fn a_bad_policy_glob_names_the_file_and_the_route_key() {
        let text = format!(
            "{ROUTE}{ROUTE}path = \"/two\"\n[route.policy]\nallow_tools = [\"ok_*\", \"\"]\n"
        );
        let e = Config::parse(&text, "/etc/proxy.toml", &Overrides::default()).unwrap_err();
        assert_eq!(e.source, "/etc/proxy.toml");
        assert_eq!(e.keys(), ["route[1].policy.allow_tools[1]"], "{e}");
        assert_eq!(
            e.to_string(),
            "/etc/proxy.toml: route \"two\" (route[1]).policy.allow_tools[1]: an empty pattern matches nothing; remove it"
        );
        let e = Config::parse(
            &format!("{ROUTE}[route.policy]\nburst = 3\n"),
            "f.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.key(), "route[0].policy.burst", "{e}");
        // Zero-file mode names the flag.
        let flags = Overrides {
            gateway: Some("https://gw.example/mcp".into()),
            policy: Some(PolicyConfig {
                deny_tools: vec!["".into()],
                ..PolicyConfig::default()
            }),
            ..Overrides::default()
        };
        let e = Config::load(None, &flags).unwrap_err();
        assert_eq!(e.key(), "--deny-tool (MCP_VPCE_PROXY_DENY_TOOL)", "{e}");
    }

    #[test]
    fn a_bad_audit_table_names_the_file_and_the_key() {
        let e = Config::parse(
            &format!("[audit]\nto = \"file\"\n{ROUTE}"),
            "/etc/proxy.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/proxy.toml: audit.path: is required with to = \"file\""
        );
        let e = Config::parse(
            &format!("[audit]\nqueue = 0\n{ROUTE}"),
            "f.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.keys(), ["audit.queue"], "{e}");
    }

    #[test]
    fn a_bad_telemetry_table_names_the_file_and_the_key() {
        let e = Config::parse(
            &format!("[telemetry]\nendpoint = \"grpc://collector:4317\"\n{ROUTE}"),
            "/etc/proxy.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/proxy.toml: telemetry.endpoint: \"grpc://collector:4317\" is not a URL like \
             \"http://127.0.0.1:4318\""
        );
    }

    #[test]
    fn a_bad_inbound_cidr_names_the_file_and_the_key() {
        // A CIDR that does not parse is reported on its key, with the other problems.
        let e = Config::parse(
            &format!(
                "listen = \"0.0.0.0:8080\"\n[inbound]\nallowed_clients = [\"10.0.0.0/33\"]\n\
                 [dns]\nprivate_ranges = [\"10.0.0.0/8\", \"fd00::/200\"]\n{ROUTE}max_body_bytes = 0\n"
            ),
            "/etc/proxy.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "/etc/proxy.toml: inbound.allowed_clients[0]: \"10.0.0.0/33\": the prefix length 33 is more than 32, the longest an IPv4 prefix can be\n\
             /etc/proxy.toml: dns.private_ranges[1]: \"fd00::/200\": the prefix length 200 is more than 128, the longest an IPv6 prefix can be\n\
             /etc/proxy.toml: route \"mcp\" (route[0]).max_body_bytes: must be greater than 0"
        );
        // A listener off loopback with no client ranges (nor token) is refused by
        // the validation pass, on the key to set.
        let e = Config::parse(
            &format!("listen = \"0.0.0.0:8080\"\n{ROUTE}"),
            "/etc/proxy.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(e.source, "/etc/proxy.toml");
        assert_eq!(e.keys(), ["inbound.allowed_clients"], "{e}");
    }

    #[test]
    fn every_problem_is_reported_one_per_line() {
        let text = format!(
            "[limits]\nmax_header_bytes = 10\n[audit]\nqueue = 0\n{ROUTE}connect_timeout = \"0s\"\n\
             [route.policy]\nallow_methods = [\"\"]\nmax_batch = 0\n"
        );
        let e = Config::parse(&text, "f.toml", &Overrides::default()).unwrap_err();
        assert_eq!(
            e.keys(),
            [
                "limits.max_header_bytes",
                "audit.queue",
                "route[0].policy.allow_methods[0]",
                "route[0].policy.max_batch",
                "route[0].connect_timeout",
            ],
            "{e}"
        );
        let lines: Vec<String> = e.to_string().lines().map(String::from).collect();
        assert_eq!(lines.len(), 5, "{e}");
        assert!(lines.iter().all(|l| l.starts_with("f.toml: ")), "{e}");
    }

    #[test]
    fn connection_counts_must_be_at_least_one() {
        let e = Config::parse(
            &format!("{ROUTE}max_streams_per_connection = 0\nmax_connecting = 0\n"),
            "f.toml",
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "f.toml: route \"mcp\" (route[0]).max_streams_per_connection: must be at least 1\n\
             f.toml: route \"mcp\" (route[0]).max_connecting: must be at least 1"
        );
    }

    #[test]
    fn keys_in_a_route_are_shown_with_its_name() {
        assert_eq!(route_index("route[3].policy.burst"), Some(3));
        assert_eq!(route_index("routes"), None);
        let p = Problem {
            key: "route[1].policy.allow_tools[0]".into(),
            problem: "bad".into(),
            route: Some("billing".into()),
        };
        assert_eq!(
            p.label(),
            "route \"billing\" (route[1]).policy.allow_tools[0]"
        );
        assert_eq!(
            p.line("f.toml"),
            "f.toml: route \"billing\" (route[1]).policy.allow_tools[0]: bad"
        );
    }

    #[test]
    fn regions_are_read_from_gateway_and_endpoint_names() {
        assert_eq!(
            agentcore_region("gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com"),
            Some("us-east-1")
        );
        assert_eq!(
            agentcore_region("vpce-0a-b.gateway.bedrock-agentcore.eu-west-1.vpce.amazonaws.com"),
            Some("eu-west-1")
        );
        assert_eq!(agentcore_region("gw.example.com"), None);
    }

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let e = Config::from_toml(
            "[[route]]\ngateway = \"https://gw.example/mcp\"\ngatway = 1\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("gatway"), "{e}");
        let e = Config::from_toml(
            "[[route]]\ngateway = \"https://gw.example/mcp\"\n[route.credential]\ntype = \"static\"\nenv = \"X\"\npath = \"/x\"\n",
            "f.toml",
        )
        .unwrap_err();
        assert!(e.to_string().contains("path"), "{e}");
    }
}
