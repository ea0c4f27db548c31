//! DNS faults: the name servers stop answering (the last good answer carries on until it
//! is older than `dns.stale_limit`, then requests fail with the DNS error and readiness
//! goes down), and the endpoint's addresses change (new connections go to the new
//! address, the pooled connection to the old one is retired).
//!
//! The proxy keeps DNS answers at least 5 s, so these tests poll for the outcome.

use std::sync::Arc;
use std::time::Duration;

use crate::common::agents::rpc;
use crate::common::dns::{DnsMode, DnsServer};
use crate::common::faulty_upstream::{self, FaultyUpstream};
use crate::common::http::{post_rpc, Answer};
use crate::common::proxy::head;
use crate::common::upstream::ENDPOINT_HOST;
use arc_swap::ArcSwap;
use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::server::Server;
use mcp_vpce_proxy::proxy::route::RouteTable;
use serde_json::json;

/// The proxy in-process, with a handle on its route table (for the resolver's answer
/// ages and readiness).
struct Running {
    url: String,
    routes: Arc<ArcSwap<RouteTable>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn start(toml: &str) -> Running {
    let config = Config::parse(toml, "test.toml", &Overrides::default())
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let server = Server::bind(&config).await.unwrap();
    let url = format!("http://{}/mcp", server.local_addr());
    let routes = server.routes();
    let task = tokio::spawn(server.run(std::future::pending()));
    Running { url, routes, task }
}

impl Running {
    /// How old the answer in use for the endpoint name is.
    fn answer_age(&self) -> Duration {
        let table = self.routes.load_full();
        table
            .dns
            .answer_ages()
            .into_iter()
            .find(|(name, _)| name == ENDPOINT_HOST)
            .map(|(_, age)| age)
            .expect("the endpoint name was resolved")
    }

    async fn ready(&self) -> (bool, Vec<String>) {
        let table = self.routes.load_full();
        let readiness = mcp_vpce_proxy::proxy::health::readiness(&table).await;
        let missing = readiness
            .routes
            .iter()
            .flat_map(|r| r.missing.clone())
            .collect();
        (readiness.ready, missing)
    }
}

fn served_by(answer: &Answer) -> String {
    assert_eq!(answer.status, 200, "{}", answer.body);
    answer.json()["result"]["servedBy"]
        .as_str()
        .unwrap()
        .to_string()
}

const STALE_LIMIT: Duration = Duration::from_secs(10);

/// Every request dials (no idle pool), so every request needs the name resolved.
async fn name_servers_fail(mode: DnsMode) {
    let upstream = FaultyUpstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    dns.set_ttl(1);
    let proxy = start(&format!(
        "{}stale_limit = \"{}s\"\nrefresh = \"1s\"\n{}",
        head(&dns),
        STALE_LIMIT.as_secs(),
        upstream.route("pool_max_idle = 0")
    ))
    .await;
    assert_eq!(served_by(&post_rpc(&proxy.url, &rpc(1)).await), "127.0.0.1");
    assert!(proxy.ready().await.0);

    dns.set_mode(mode);
    // Calls go on succeeding on the last good answer, also once it is older than the
    // cache keeps an answer (5 s: every lookup has failed since), until the stale limit.
    let mut served_stale = 0;
    let mut id = 1;
    let refused = loop {
        id += 1;
        assert!(id < 500, "requests never failed");
        let answer = post_rpc(&proxy.url, &rpc(id)).await;
        if answer.status != 200 {
            break answer;
        }
        assert_eq!(served_by(&answer), "127.0.0.1");
        // No lookup has succeeded for longer than the cache keeps an answer, yet this
        // call dialed: it was served the stale answer.
        if proxy.answer_age() > Duration::from_secs(5) {
            served_stale += 1;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(served_stale > 0, "no call was served from the stale answer");
    assert!(
        proxy.answer_age() > STALE_LIMIT,
        "refused before the stale limit"
    );
    assert_eq!(refused.status, 503, "{}", refused.body);
    let error = &refused.json()["error"];
    assert_eq!(error["code"], -31003);
    assert_eq!(error["data"]["reason"], "dns");
    let message = error["message"].as_str().unwrap();
    assert!(
        message.starts_with(&format!(
            "mcp-vpce-proxy: route mcp: DNS lookup of {ENDPOINT_HOST} failed: "
        )),
        "{message}"
    );
    let (ready, missing) = proxy.ready().await;
    assert!(!ready, "readiness stays up without a usable answer");
    assert!(
        missing[0].starts_with(&format!("DNS lookup of {ENDPOINT_HOST} failed: ")),
        "{missing:?}"
    );

    // The name servers come back: so does the route.
    dns.set_mode(DnsMode::Answer);
    let mut rounds = 0;
    while post_rpc(&proxy.url, &rpc(1000)).await.status != 200 {
        rounds += 1;
        assert!(rounds < 150, "the route did not recover");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(proxy.ready().await.0);
}

#[tokio::test]
async fn silent_name_servers_the_last_good_answer_serves_until_the_stale_limit() {
    name_servers_fail(DnsMode::Silent).await;
}

#[tokio::test]
async fn servfail_the_last_good_answer_serves_until_the_stale_limit() {
    name_servers_fail(DnsMode::ServFail).await;
}

#[tokio::test]
async fn when_the_endpoint_moves_new_connections_follow_and_the_old_one_is_retired() {
    let upstream =
        FaultyUpstream::start_on(&["127.0.0.1".parse().unwrap(), "127.0.0.3".parse().unwrap()])
            .await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    dns.set_ttl(1);
    let proxy = start(&format!(
        "{}refresh = \"1s\"\n{}",
        head(&dns).replace(
            r#"private_ranges = ["127.0.0.1/32"]"#,
            r#"private_ranges = ["127.0.0.1/32", "127.0.0.3/32"]"#
        ),
        upstream.route("")
    ))
    .await;
    for id in 0..3 {
        assert_eq!(
            served_by(&post_rpc(&proxy.url, &rpc(id)).await),
            "127.0.0.1"
        );
    }
    assert_eq!(upstream.connections_to("127.0.0.1"), 1);

    dns.set(ENDPOINT_HOST, vec!["127.0.0.3".parse().unwrap()]);
    let mut id = 10;
    loop {
        id += 1;
        assert!(id < 300, "traffic never moved to the new address");
        let answer = post_rpc(&proxy.url, &rpc(id)).await;
        if served_by(&answer) == "127.0.0.3" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for more in 0..5 {
        assert_eq!(
            served_by(&post_rpc(&proxy.url, &rpc(1000 + more)).await),
            "127.0.0.3"
        );
    }
    // One connection at each address: the old one was never dialed again, the new one
    // is pooled and reused.
    assert_eq!(upstream.connections_to("127.0.0.1"), 1);
    assert_eq!(upstream.connections_to("127.0.0.3"), 1);
    // And the old one was closed by the proxy, not left idle in the pool.
    for _ in 0..100 {
        if upstream.closed_by_peer() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(upstream.closed_by_peer(), 1);
    assert_eq!(
        post_rpc(&proxy.url, &rpc(2000)).await.body,
        faulty_upstream::answer(&json!(2000), "127.0.0.3")
    );
}
