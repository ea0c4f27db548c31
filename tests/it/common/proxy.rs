//! The proxy under test, in-process, configured from TOML like a user would, plus the
//! standard setup: upstream fixture + DNS fixture + proxy in one of the two modes.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::server::Server;
use tokio::task::JoinHandle;

use super::aws::ChildProxy;
use super::dns::DnsServer;
use super::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};

/// The token the proxy attaches for the gateway in the standard setup.
pub const GATEWAY_TOKEN: &str = "gateway-token-0123456789";
/// The address the test DNS answers for names "outside the VPC" (in-VPC is 127.0.0.1/32).
pub const OUTSIDE: &str = "127.0.0.2";

pub struct Proxy {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(toml: &str) -> Proxy {
        Proxy::try_start(toml)
            .await
            .unwrap_or_else(|e| panic!("proxy failed to start: {e}\n{toml}"))
    }

    pub async fn try_start(toml: &str) -> Result<Proxy, String> {
        let config =
            Config::parse(toml, "test.toml", &Overrides::default()).map_err(|e| e.to_string())?;
        let server = Server::bind(&config).await?;
        let addr = server.local_addr();
        let task = tokio::spawn(server.run(std::future::pending()));
        Ok(Proxy { addr, task })
    }

    /// `http://127.0.0.1:<port>/mcp`
    pub fn url(&self) -> String {
        self.url_for("/mcp")
    }

    pub fn url_for(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// The gateway name resolves to the endpoint's (in-VPC) address; no `endpoint`.
    PrivateDnsOn,
    /// The gateway name resolves "publicly" (127.0.0.2); the route names the endpoint.
    PrivateDnsOff,
}

/// Upstream + DNS + proxy, wired as in production.
pub struct Setup {
    pub upstream: Upstream,
    pub dns: DnsServer,
    pub proxy: Proxy,
    pub token_file: PathBuf,
    _dir: tempfile::TempDir,
}

impl Setup {
    pub async fn start(mode: Mode) -> Setup {
        Setup::start_with(mode, UpstreamOptions::default(), "").await
    }

    /// `route_extra` is appended to the route table (e.g. `max_body_bytes = 10`).
    pub async fn start_with(mode: Mode, options: UpstreamOptions, route_extra: &str) -> Setup {
        let f = Fixtures::start(mode, options, route_extra).await;
        let proxy = Proxy::start(&f.toml).await;
        Setup {
            upstream: f.upstream,
            dns: f.dns,
            proxy,
            token_file: f.token_file,
            _dir: f.dir,
        }
    }
}

/// The standard setup with the proxy binary as a child process, for a configuration
/// that reads environment variables: `envs` are set for the child alone, since every
/// test shares the test process's environment.
pub struct ChildSetup {
    pub upstream: Upstream,
    pub proxy: ChildProxy,
    _dns: DnsServer,
    _dir: tempfile::TempDir,
}

impl ChildSetup {
    pub async fn start_with(
        mode: Mode,
        options: UpstreamOptions,
        route_extra: &str,
        envs: &[(&str, String)],
    ) -> ChildSetup {
        let f = Fixtures::start(mode, options, route_extra).await;
        let proxy = ChildProxy::start(&f.toml, envs, "info").await;
        ChildSetup {
            upstream: f.upstream,
            proxy,
            _dns: f.dns,
            _dir: f.dir,
        }
    }
}

/// Upstream, DNS and the gateway token file of the standard setup, and the proxy's
/// configuration for them.
struct Fixtures {
    upstream: Upstream,
    dns: DnsServer,
    token_file: PathBuf,
    dir: tempfile::TempDir,
    toml: String,
}

impl Fixtures {
    async fn start(mode: Mode, options: UpstreamOptions, route_extra: &str) -> Fixtures {
        let upstream = Upstream::start_with(options).await;
        let gateway_ip: IpAddr = match mode {
            Mode::PrivateDnsOn => "127.0.0.1".parse().unwrap(),
            Mode::PrivateDnsOff => OUTSIDE.parse().unwrap(),
        };
        let dns = DnsServer::start(&[
            (ENDPOINT_HOST, "127.0.0.1".parse().unwrap()),
            (GATEWAY_HOST, gateway_ip),
        ])
        .await;
        let dir = tempfile::tempdir().unwrap();
        let token_file = dir.path().join("token");
        std::fs::write(&token_file, GATEWAY_TOKEN).unwrap();
        let endpoint = match mode {
            Mode::PrivateDnsOn => String::new(),
            Mode::PrivateDnsOff => format!("endpoint = \"{ENDPOINT_HOST}\""),
        };
        let toml = format!(
            r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
{endpoint}
ca_file = "{ca}"
credential = {{ type = "file", path = "{token}" }}
{route_extra}
"#,
            head = head(&dns),
            port = upstream.port(),
            ca = upstream.ca_file().display(),
            token = token_file.display(),
        );
        Fixtures {
            upstream,
            dns,
            token_file,
            dir,
            toml,
        }
    }
}

/// The global part of a test configuration: ephemeral loopback listener, the test DNS
/// server, and 127.0.0.1/32 as the only in-VPC range.
pub fn head(dns: &DnsServer) -> String {
    format!(
        r#"listen = "127.0.0.1:0"
shutdown_grace = "5s"
[dns]
servers = ["{}"]
private_ranges = ["127.0.0.1/32"]
timeout = "1s"
"#,
        dns.addr
    )
}

/// The proxy's `upstream_retries` counter of `route` (reads sent once more), as this test
/// process's in-process proxies counted it.
pub fn upstream_retries(route: &str) -> u64 {
    mcp_vpce_proxy::ops::metrics::metrics()
        .upstream_retries
        .get_or_create(&mcp_vpce_proxy::ops::metrics::RouteLabels {
            route: route.to_string(),
        })
        .get()
}
