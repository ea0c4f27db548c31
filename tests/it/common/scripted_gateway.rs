//! The proxy in front of a [`ScriptedUpstream`], for the gateway-aware tests (throttling,
//! coalescing, the cache, shaping): one named route whose extra settings the test gives,
//! reloadable in place, and the proxy's metrics for that route.

use std::net::SocketAddr;

use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::server::{Reloader, Server};
use serde_json::Value;
use tokio::task::JoinHandle;

use super::dns::DnsServer;
use super::http::{send, Answer};
use super::proxy::head;
use super::scripted_upstream::ScriptedUpstream;
use super::upstream::GATEWAY_HOST;

pub struct Rig {
    pub upstream: ScriptedUpstream,
    pub addr: SocketAddr,
    route: String,
    credential: String,
    dns: DnsServer,
    _dir: tempfile::TempDir,
    reloader: std::sync::Arc<Reloader>,
    task: JoinHandle<()>,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Rig {
    /// The proxy with one route named `route` (metrics are per route name: each test
    /// uses its own) and `extra` appended to its table.
    pub async fn start(upstream: ScriptedUpstream, route: &str, extra: &str) -> Rig {
        Rig::start_with(upstream, route, None, extra).await
    }

    /// As [`start`](Self::start) with the route's credential table inline (`{ type =
    /// "passthrough" }`) instead of the sidecar's token file.
    pub async fn start_with(
        upstream: ScriptedUpstream,
        route: &str,
        credential: Option<&str>,
        extra: &str,
    ) -> Rig {
        let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
        let dir = tempfile::tempdir().unwrap();
        let token = dir.path().join("token");
        std::fs::write(&token, "gateway-token").unwrap();
        let credential = credential.map_or_else(
            || format!("{{ type = \"file\", path = \"{}\" }}", token.display()),
            str::to_string,
        );
        let config = RigConfig {
            upstream: &upstream,
            route,
            dns: &dns,
            credential: &credential,
        }
        .config(extra);
        let server = Server::bind(&config).await.unwrap();
        let addr = server.local_addr();
        let reloader = server.reloader();
        let task = tokio::spawn(server.run(std::future::pending()));
        Rig {
            upstream,
            addr,
            route: route.to_string(),
            credential,
            dns,
            _dir: dir,
            reloader,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Reloads the configuration with `extra` as the route's extra settings.
    pub fn reload(&self, extra: &str) {
        let config = RigConfig {
            upstream: &self.upstream,
            route: &self.route,
            dns: &self.dns,
            credential: &self.credential,
        }
        .config(extra);
        self.reloader.apply(config).unwrap();
    }

    /// A JSON-RPC POST with the headers an MCP client sends, plus `headers`.
    pub async fn post(&self, body: &Value, headers: &[(&str, &str)]) -> Answer {
        let mut all = vec![
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
        ];
        all.extend_from_slice(headers);
        send("POST", &self.url(), &all, body.to_string()).await
    }

    /// A metric of this route, 0 when it has no series yet: `name` without the prefix
    /// (`coalesced_total`), `labels` the others than `route` (`reason="shaping"`).
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        let mut want = format!("mcp_vpce_proxy_{name}{{route=\"{}\"", self.route);
        if !labels.is_empty() {
            want.push(',');
            want.push_str(labels);
        }
        want.push('}');
        let text = mcp_vpce_proxy::ops::metrics::metrics().encode();
        text.lines()
            .find_map(|line| line.strip_prefix(&want))
            .and_then(|rest| rest.trim().parse().ok())
            .unwrap_or(0.0)
    }

    /// Waits (at most 30 s) until `metric` reaches `value`.
    pub async fn wait_for_metric(&self, name: &str, labels: &str, value: f64) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.metric(name, labels) < value {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{name}{{{labels}}} stayed at {} (waiting for {value})",
                self.metric(name, labels)
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// Waits (at most 30 s) until the gateway has seen `n` requests.
    pub async fn wait_for_requests(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
        while self.upstream.seen().len() < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway saw {} requests (waiting for {n})",
                self.upstream.seen().len()
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }
}

struct RigConfig<'a> {
    upstream: &'a ScriptedUpstream,
    route: &'a str,
    dns: &'a DnsServer,
    credential: &'a str,
}

impl RigConfig<'_> {
    fn config(&self, extra: &str) -> Config {
        let text = format!(
            r#"{head}
[[route]]
name = "{route}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
credential = {credential}
{extra}
"#,
            head = head(self.dns),
            route = self.route,
            port = self.upstream.port(),
            ca = self.upstream.ca_file().display(),
            credential = self.credential,
        );
        Config::parse(&text, "rig.toml", &Overrides::default())
            .unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}
