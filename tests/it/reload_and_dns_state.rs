//! State that must outlive a reload or an outage.
//!
//! - While the name servers fail, the calls that dial go on with the last good answer and
//!   are counted `dns_resolutions_total{result="stale"}`, not `in_vpc`; the answer's age
//!   keeps growing.
//! - A reload that changes only `[audit]` reaches the routes that did not change: their
//!   tool calls are recorded where the new table says.
//! - A reload that changes a route's other settings keeps the route's credential, with
//!   its cached token, while the credential's own table is unchanged: with the token
//!   endpoint down, the calls go on with the token fetched before. It keeps the route's
//!   upstream connections too while the connection settings are unchanged. A reload that
//!   changes the credential builds a new one, which fetches.

use std::sync::Arc;

use crate::common::agents::rpc;
use crate::common::client;
use crate::common::dns::{DnsMode, DnsServer};
use crate::common::faulty_upstream::FaultyUpstream;
use crate::common::http::{assert_rpc_error, post_rpc, send, Answer as HttpAnswer};
use crate::common::proxy::head;
use crate::common::token_server::{bearer, Answer, TokenServer};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};
use arc_swap::ArcSwap;
use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::admin::Admin;
use mcp_vpce_proxy::listener::server::{Reloader, Server};
use mcp_vpce_proxy::proxy::route::RouteTable;
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"reload-test","version":"1"}}}"#;

/// The proxy in-process with handles on its route table and its reloader.
struct Running {
    url: String,
    routes: Arc<ArcSwap<RouteTable>>,
    reloader: Arc<Reloader>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn parse(toml: &str) -> Config {
    Config::parse(toml, "reload.toml", &Overrides::default())
        .unwrap_or_else(|e| panic!("{e}\n{toml}"))
}

async fn start(toml: &str) -> Running {
    let server = Server::bind(&parse(toml)).await.unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    let routes = server.routes();
    let reloader = server.reloader();
    let task = tokio::spawn(server.run(std::future::pending()));
    Running {
        url,
        routes,
        reloader,
        task,
    }
}

/// An oauth2 route to the gateway fixture, plus `extra` settings of the route and of its
/// credential table.
struct OAuthRig {
    upstream: Upstream,
    tokens: TokenServer,
    dns: DnsServer,
    secret: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl OAuthRig {
    async fn start() -> OAuthRig {
        // Tokens live 10 minutes: no refresh is due while the test runs.
        let tokens = TokenServer::start(Some(600)).await;
        let upstream = Upstream::start().await;
        let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, "reload-test-secret").unwrap();
        OAuthRig {
            upstream,
            tokens,
            dns,
            secret,
            _dir: dir,
        }
    }

    fn config(&self, route_extra: &str, credential_extra: &str) -> String {
        self.config_with("", route_extra, credential_extra)
    }

    /// `global` goes between the head and the route (e.g. an `[audit]` table).
    fn config_with(&self, global: &str, route_extra: &str, credential_extra: &str) -> String {
        format!(
            r#"{head}
{global}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
{route_extra}
[route.credential]
type = "oauth2"
token_url = "{url}"
client_id = "reload-test"
client_secret_file = "{secret}"
timeout = "500ms"
{credential_extra}
"#,
            head = head(&self.dns),
            port = self.upstream.port(),
            ca = self.upstream.ca_file().display(),
            url = self.tokens.url(),
            secret = self.secret.display(),
        )
    }

    /// The Authorization the gateway saw on its last request.
    fn last_authorization(&self) -> Option<String> {
        self.upstream
            .requests()
            .last()
            .and_then(|r| r.authorization.clone())
    }
}

fn assert_ok(answer: &HttpAnswer) {
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert!(
        answer.body.contains(r#""id":7,"result""#),
        "{}",
        answer.body
    );
}

#[tokio::test]
async fn a_reload_of_other_settings_keeps_the_cached_token_while_the_token_endpoint_is_down() {
    let rig = OAuthRig::start().await;
    let proxy = start(&rig.config("", "")).await;
    assert_ok(&post_rpc(&proxy.url, INITIALIZE).await);
    assert_eq!(rig.tokens.requests().len(), 1);
    assert_eq!(rig.last_authorization(), Some(bearer(1)));
    assert_eq!(rig.upstream.connections(), 1);

    // The token endpoint goes down; the token fetched above has minutes left.
    rig.tokens.answer_with(Answer::Error {
        status: 500,
        error: "server_error",
        description: None,
    });

    // A setting used per request only: the route is rebuilt, its credential and its
    // upstream connection are kept.
    let before = proxy.routes.load().get("/mcp").unwrap().clone();
    proxy
        .reloader
        .apply(parse(&rig.config("response_timeout = \"14m\"", "")))
        .unwrap();
    let after = proxy.routes.load().get("/mcp").unwrap().clone();
    assert!(!Arc::ptr_eq(&before, &after), "the route was rebuilt");
    assert_ok(&post_rpc(&proxy.url, INITIALIZE).await);
    assert_eq!(rig.last_authorization(), Some(bearer(1)));
    assert_eq!(rig.tokens.requests().len(), 1, "no token was fetched");
    assert_eq!(
        rig.upstream.connections(),
        1,
        "the pooled connection was kept"
    );
    assert!(Arc::ptr_eq(&before.credential, &after.credential));

    // A setting of the pool: new connections, the same credential (the reproduced
    // defect: every call got 503 -31005 after this reload).
    proxy
        .reloader
        .apply(parse(&rig.config(
            "response_timeout = \"14m\"\npool_idle_timeout = \"40s\"",
            "",
        )))
        .unwrap();
    for _ in 0..3 {
        assert_ok(&post_rpc(&proxy.url, INITIALIZE).await);
        assert_eq!(rig.last_authorization(), Some(bearer(1)));
    }
    assert_eq!(rig.tokens.requests().len(), 1, "no token was fetched");
    assert_eq!(rig.upstream.connections(), 2, "the new pool dialed once");
}

#[tokio::test]
async fn a_reload_that_changes_the_credential_builds_a_new_one_which_fetches() {
    let rig = OAuthRig::start().await;
    let proxy = start(&rig.config("", "")).await;
    assert_ok(&post_rpc(&proxy.url, INITIALIZE).await);
    assert_eq!(rig.tokens.requests().len(), 1);
    rig.tokens.answer_with(Answer::Error {
        status: 500,
        error: "server_error",
        description: None,
    });

    // Only the credential's scope changes: the old token is not the one asked for, so
    // the new credential fetches, and with the endpoint down the call is refused.
    let before = proxy.routes.load().get("/mcp").unwrap().clone();
    proxy
        .reloader
        .apply(parse(&rig.config("", "scope = \"gateway/invoke\"")))
        .unwrap();
    let after = proxy.routes.load().get("/mcp").unwrap().clone();
    assert!(!Arc::ptr_eq(&before.credential, &after.credential));
    let refused = post_rpc(&proxy.url, INITIALIZE).await;
    assert_rpc_error(
        &refused,
        503,
        -31005,
        json!(7),
        &format!(
            "mcp-vpce-proxy: route mcp: no gateway credential: token endpoint {} answered 500 server_error",
            rig.tokens.url()
        ),
    );
    let fetches = rig.tokens.requests();
    assert_eq!(fetches.len(), 2, "the new credential fetched");
    assert!(
        fetches[1].body.contains("scope=gateway%2Finvoke"),
        "{}",
        fetches[1].body
    );
    assert_eq!(rig.upstream.connections(), 1, "the connections were kept");

    // The endpoint recovers: the new credential's token goes to the gateway.
    rig.tokens.answer_with(Answer::Token {
        expires_in: Some(600),
    });
    let mut rounds = 0;
    loop {
        let answer = post_rpc(&proxy.url, INITIALIZE).await;
        if answer.status == 200 {
            break;
        }
        rounds += 1;
        assert!(rounds < 200, "the route did not recover: {}", answer.body);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(rig.last_authorization(), Some(bearer(2)));
}

#[tokio::test]
async fn a_reload_that_changes_only_the_audit_table_reaches_unchanged_routes() {
    let rig = OAuthRig::start().await;
    let dir = tempfile::tempdir().unwrap();
    let trail = dir.path().join("audit.jsonl");
    let proxy = start(&rig.config("", "")).await;
    let agent = client::connect(&proxy.url).await;
    client::call_tool(&agent, "DemoTarget___echo", json!({"text": "before"})).await;

    let audit = format!("[audit]\nto = \"file\"\npath = \"{}\"\n", trail.display());
    let before = proxy.routes.load().get("/mcp").unwrap().clone();
    proxy
        .reloader
        .apply(parse(&rig.config_with(&audit, "", "")))
        .unwrap();
    client::call_tool(&agent, "DemoTarget___echo", json!({"text": "after"})).await;
    let mut recorded = String::new();
    for _ in 0..500 {
        recorded = std::fs::read_to_string(&trail).unwrap_or_default();
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let lines: Vec<serde_json::Value> = recorded
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1, "{recorded}");
    assert_eq!(lines[0]["tool"], "DemoTarget___echo", "{recorded}");
    // The route got a new layer only: the same credential (one token fetched) and the
    // same connection.
    let after = proxy.routes.load().get("/mcp").unwrap().clone();
    assert!(Arc::ptr_eq(&before.credential, &after.credential));
    assert_eq!(rig.tokens.requests().len(), 1);
    assert_eq!(rig.upstream.connections(), 1);
    agent.cancel().await.unwrap();
}

/// The endpoint name of the DNS test: its own, so that the process-wide counters of its
/// series move only with this test.
const STALE_ENDPOINT: &str =
    "vpce-0aaa0000000000000-stale000.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com";

/// `dns_resolutions_total{name=STALE_ENDPOINT,result}` and the answer's age, scraped.
async fn dns_series(admin: std::net::SocketAddr) -> (f64, f64, f64) {
    let scraped = send("GET", &format!("http://{admin}/metrics"), &[], "").await;
    assert_eq!(scraped.status, 200);
    let value = |prefix: &str| {
        scraped
            .body
            .lines()
            .find_map(|l| l.strip_prefix(prefix))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    let resolutions = |result: &str| {
        value(&format!(
            "mcp_vpce_proxy_dns_resolutions_total{{name=\"{STALE_ENDPOINT}\",result=\"{result}\"}}"
        ))
    };
    let age = value(&format!(
        "mcp_vpce_proxy_dns_answer_age_seconds{{name=\"{STALE_ENDPOINT}\"}}"
    ));
    (resolutions("in_vpc"), resolutions("stale"), age)
}

#[tokio::test]
async fn answers_served_through_a_name_server_outage_are_counted_stale() {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(STALE_ENDPOINT, "127.0.0.1".parse().unwrap())]).await;
    dns.set_ttl(1);
    // No idle pool: every call dials, so every call resolves the name.
    let route = upstream
        .route("pool_max_idle = 0")
        .replace(ENDPOINT_HOST, STALE_ENDPOINT);
    let config = parse(&format!("{}stale_limit = \"10m\"\n{route}", head(&dns)));
    let server = Server::bind(&config).await.unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    let admin = Admin::bind("127.0.0.1:0".parse().unwrap(), server.routes())
        .await
        .unwrap();
    let admin_addr = admin.local_addr();
    let _server = AbortOnDrop(tokio::spawn(server.run(std::future::pending())));
    let _admin = AbortOnDrop(tokio::spawn(admin.run(std::future::pending())));

    let call = |id: u64| {
        let url = url.clone();
        async move {
            let answer = post_rpc(&url, &rpc(id)).await;
            assert_eq!(answer.status, 200, "{}", answer.body);
        }
    };
    call(1).await;
    let (in_vpc, stale, _) = dns_series(admin_addr).await;
    assert!(in_vpc >= 1.0, "{in_vpc}");
    assert_eq!(stale, 0.0);

    // The name servers fail. The resolver's cache answers for a few seconds (counted
    // in_vpc, rightly); then every lookup fails and the last good answer is served.
    dns.set_mode(DnsMode::ServFail);
    let mut id = 1;
    let (in_vpc, stale, age) = loop {
        id += 1;
        assert!(id < 500, "no call was counted stale");
        call(id).await;
        let series = dns_series(admin_addr).await;
        if series.1 > 0.0 {
            break series;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert!(age > 0.0, "no answer age for {STALE_ENDPOINT}");
    for more in 1..=3 {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        call(1000 + more).await;
    }
    let (in_vpc_later, stale_later, age_later) = dns_series(admin_addr).await;
    assert_eq!(in_vpc_later, in_vpc, "an outage counted as in_vpc");
    assert_eq!(stale_later, stale + 3.0);
    assert!(
        age_later > age,
        "the answer's age stopped growing: {age} then {age_later}"
    );

    // The name servers are back: current answers again.
    dns.set_mode(DnsMode::Answer);
    let mut rounds = 0;
    while dns_series(admin_addr).await.0 == in_vpc {
        rounds += 1;
        assert!(
            rounds < 200,
            "no current answer was counted after the outage"
        );
        call(2000 + rounds).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
