//! `/readyz` follows what a route needs: it turns 503, with a JSON body naming what is
//! missing, when DNS stops answering allowed addresses or the credential cannot be had,
//! and 200 again once they are back. `/healthz` stays 200 throughout.
//!
//! The resolver keeps an answer at least 5 s (and NXDOMAIN at most 5 s), so each flip is
//! waited for, up to a bound.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, send, Answer};
use crate::common::proxy::{head, OUTSIDE};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::admin::Admin;
use mcp_vpce_proxy::listener::server::Server;
use serde_json::{json, Value};

/// Longer than the resolver's 5 s floor plus a query timeout, with room for a slow machine.
const FLIP_WITHIN: Duration = Duration::from_secs(20);

struct Running {
    proxy: SocketAddr,
    admin: SocketAddr,
}

async fn start(toml: &str) -> Running {
    let config = Config::parse(toml, "readiness.toml", &Overrides::default()).unwrap();
    let server = Server::bind(&config).await.unwrap();
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap(), server.routes())
        .await
        .unwrap();
    let running = Running {
        proxy: server.local_addr(),
        admin: admin.local_addr(),
    };
    tokio::spawn(server.run(std::future::pending()));
    tokio::spawn(admin.run(std::future::pending()));
    running
}

impl Running {
    async fn get(&self, path: &str) -> Answer {
        send("GET", &format!("http://{}{path}", self.admin), &[], "").await
    }

    /// Polls /readyz until its status is `status`; returns the body as JSON.
    async fn readyz_becomes(&self, status: u16) -> Value {
        let deadline = Instant::now() + FLIP_WITHIN;
        loop {
            let answer = self.get("/readyz").await;
            if answer.status == status {
                assert_eq!(answer.headers["content-type"], "application/json");
                return answer.json();
            }
            assert!(
                Instant::now() < deadline,
                "/readyz still {} after {FLIP_WITHIN:?}: {}",
                answer.status,
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A route through the endpoint name, plus one on static in-VPC addresses that stays
/// ready throughout: /readyz names only the route that lacks something.
async fn endpoint_setup(dns: &DnsServer, upstream: &Upstream) -> Running {
    start(&format!(
        r#"{head}
[[route]]
name = "ready-endpoint"
path = "/a"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"

[[route]]
name = "ready-static"
path = "/b"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
addresses = ["127.0.0.1"]
ca_file = "{ca}"
"#,
        head = head(dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    ))
    .await
}

fn not_ready(missing: &str) -> Value {
    json!({
        "ready": false,
        "routes": [
            {"route": "ready-endpoint", "ready": false, "missing": [missing]},
            {"route": "ready-static", "ready": true},
        ]
    })
}

fn all_ready() -> Value {
    json!({
        "ready": true,
        "routes": [
            {"route": "ready-endpoint", "ready": true},
            {"route": "ready-static", "ready": true},
        ]
    })
}

#[tokio::test]
async fn an_answer_outside_the_vpc_makes_the_route_unready_until_it_is_back() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    dns.set_ttl(1);
    let proxy = endpoint_setup(&dns, &upstream).await;
    assert_eq!(proxy.readyz_becomes(200).await, all_ready());

    dns.set(ENDPOINT_HOST, vec![OUTSIDE.parse().unwrap()]);
    assert_eq!(
        proxy.readyz_becomes(503).await,
        not_ready(&format!(
            "{ENDPOINT_HOST} resolves only outside the in-VPC ranges (127.0.0.2)"
        ))
    );
    let healthz = proxy.get("/healthz").await;
    assert_eq!(
        (healthz.status.as_u16(), healthz.body.as_str()),
        (200, "ok\n")
    );

    dns.set(ENDPOINT_HOST, vec!["127.0.0.1".parse().unwrap()]);
    assert_eq!(proxy.readyz_becomes(200).await, all_ready());
    // Readiness only looks: nothing was dialed.
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn nxdomain_makes_the_route_unready_until_the_name_is_back() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    dns.set_ttl(1);
    let proxy = endpoint_setup(&dns, &upstream).await;
    assert_eq!(proxy.readyz_becomes(200).await, all_ready());

    dns.remove(ENDPOINT_HOST);
    assert_eq!(
        proxy.readyz_becomes(503).await,
        not_ready(&format!(
            "DNS name {ENDPOINT_HOST} has no addresses (NXDOMAIN or no A/AAAA records)"
        ))
    );

    dns.set(ENDPOINT_HOST, vec!["127.0.0.1".parse().unwrap()]);
    assert_eq!(proxy.readyz_becomes(200).await, all_ready());
}

#[tokio::test]
async fn a_credential_that_cannot_be_had_makes_the_route_unready_until_it_can() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    // A token printed by a program, which fails while the file is missing.
    let proxy = start(&format!(
        r#"{head}
[[route]]
name = "ready-credential"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
credential = {{ type = "command", command = ["sh", "-c", "cat '{token}'"], cache_for = "1h" }}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        token = token.display(),
    ))
    .await;
    // Nothing was fetched yet, and nothing failed.
    proxy.readyz_becomes(200).await;

    let url = format!("http://{}/mcp", proxy.proxy);
    let ping = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;
    let answer = post_rpc(&url, ping).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.json()["error"]["data"]["reason"], "credential");
    let body = proxy.readyz_becomes(503).await;
    assert_eq!(body["ready"], false);
    let missing = body["routes"][0]["missing"].as_array().unwrap();
    assert_eq!(missing.len(), 1, "{body}");
    assert!(
        missing[0].as_str().unwrap().starts_with("credential: "),
        "{body}"
    );

    // The source works again: the next fetch (after the failure backoff) succeeds.
    std::fs::write(&token, "fresh-token-value").unwrap();
    let deadline = Instant::now() + FLIP_WITHIN;
    loop {
        let answer = post_rpc(&url, ping).await;
        if answer.status != 503 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still no credential: {}",
            answer.body
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let body = proxy.readyz_becomes(200).await;
    assert_eq!(
        body,
        json!({"ready": true, "routes": [{"route": "ready-credential", "ready": true}]})
    );
    assert_eq!(
        upstream.requests().last().unwrap().authorization.as_deref(),
        Some("Bearer fresh-token-value")
    );
}
