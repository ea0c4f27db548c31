//! OAuth 2.0 client credentials: the proxy fetches, caches, refreshes and attaches the
//! gateway token itself, against a real loopback token endpoint.

use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc, Answer as HttpAnswer};
use crate::common::proxy::{head, Proxy};
use crate::common::token_server::{bearer, Answer, TokenServer, TOKEN_PATH};
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use base64::Engine;
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"credential-test","version":"1"}}}"#;
const CLIENT_ID: &str = "proxy client:1";
const CLIENT_SECRET: &str = "cl1ent-s3cret+/=%&x";

/// Upstream + DNS (private DNS on) + proxy whose one route `name` uses an oauth2
/// credential against `tokens`; `extra` is added to the credential table.
struct Rig {
    upstream: Upstream,
    _dns: DnsServer,
    proxy: Proxy,
    _dir: tempfile::TempDir,
}

impl Rig {
    async fn start(name: &str, tokens: &TokenServer, extra: &str) -> Rig {
        let upstream = Upstream::start().await;
        let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
        let toml = format!(
            r#"{head}
[[route]]
name = "{name}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "oauth2"
token_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
scope = "gateway/invoke"
{extra}
"#,
            head = head(&dns),
            port = upstream.port(),
            ca = upstream.ca_file().display(),
            url = tokens.url(),
            secret = secret.display(),
        );
        let proxy = Proxy::start(&toml).await;
        Rig {
            upstream,
            _dns: dns,
            proxy,
            _dir: dir,
        }
    }

    async fn initialize(&self) -> HttpAnswer {
        post_rpc(&self.proxy.url(), INITIALIZE).await
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
    assert_eq!(answer.status, 200, "body: {}", answer.body);
}

#[tokio::test]
async fn fifty_concurrent_cold_start_requests_cause_exactly_one_token_request() {
    let tokens = TokenServer::start(Some(3600)).await;
    // Slow enough that every request arrives while the one fetch is running.
    tokens.delay(Duration::from_millis(300));
    let rig = Rig::start("fifty", &tokens, "").await;
    let url = rig.proxy.url();
    let answers = futures_join_all((0..50).map(|_| {
        let url = url.clone();
        tokio::spawn(async move { post_rpc(&url, INITIALIZE).await })
    }))
    .await;
    for answer in &answers {
        assert_ok(answer);
    }
    assert_eq!(tokens.requests().len(), 1);
    let seen = rig.upstream.requests();
    assert_eq!(seen.len(), 50);
    assert!(seen
        .iter()
        .all(|r| r.authorization.as_deref() == Some(bearer(1).as_str())));
    let metrics = mcp_vpce_proxy::ops::metrics::metrics().encode();
    assert!(
        metrics.contains(
            r#"mcp_vpce_proxy_credential_refreshes_total{route="fifty",source="oauth2",result="ok"} 1"#
        ),
        "{metrics}"
    );
}

async fn futures_join_all(
    tasks: impl Iterator<Item = tokio::task::JoinHandle<HttpAnswer>>,
) -> Vec<HttpAnswer> {
    let mut out = Vec::new();
    for task in tasks.collect::<Vec<_>>() {
        out.push(task.await.unwrap());
    }
    out
}

#[tokio::test]
async fn client_secret_basic_sends_the_form_encoded_pair_in_basic_auth() {
    let tokens = TokenServer::start(Some(3600)).await;
    let rig = Rig::start("basic", &tokens, "").await;
    assert_ok(&rig.initialize().await);
    let seen = tokens.requests();
    assert_eq!(seen.len(), 1);
    let request = &seen[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, TOKEN_PATH);
    assert_eq!(
        request.body,
        "grant_type=client_credentials&scope=gateway%2Finvoke"
    );
    assert_eq!(
        request.headers["content-type"],
        "application/x-www-form-urlencoded"
    );
    assert_eq!(request.headers["accept"], "application/json");
    // RFC 6749 2.3.1: the id and secret are form-urlencoded, then joined with ':'.
    let pair = "proxy+client%3A1:cl1ent-s3cret%2B%2F%3D%25%26x";
    let expected = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(pair)
    );
    assert_eq!(request.headers["authorization"], expected.as_str());
    assert_eq!(
        rig.last_authorization().as_deref(),
        Some(bearer(1).as_str())
    );
    // The time left on the token in use is exported.
    let metrics = mcp_vpce_proxy::ops::metrics::metrics().encode();
    let left: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix(r#"mcp_vpce_proxy_credential_expiry_seconds{route="basic"} "#))
        .unwrap_or_else(|| panic!("no expiry gauge in {metrics}"))
        .parse()
        .unwrap();
    assert!(left > 3500.0 && left <= 3600.0, "{left}");
}

#[tokio::test]
async fn client_secret_post_sends_the_client_in_the_form_body() {
    let tokens = TokenServer::start(Some(3600)).await;
    let rig = Rig::start("post", &tokens, "client_auth = \"post\"").await;
    assert_ok(&rig.initialize().await);
    let seen = tokens.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(
        seen[0].body,
        "grant_type=client_credentials&scope=gateway%2Finvoke\
         &client_id=proxy+client%3A1&client_secret=cl1ent-s3cret%2B%2F%3D%25%26x"
    );
    assert!(!seen[0].headers.contains_key("authorization"));
}

#[tokio::test]
async fn the_token_is_refreshed_before_it_expires() {
    // A 4 s token: refreshed from 2 s on (the margin is capped at half the lifetime).
    let tokens = TokenServer::start(Some(4)).await;
    let rig = Rig::start("refresh", &tokens, "").await;
    let mut rounds = 0;
    while rig.last_authorization().as_deref() != Some(bearer(2).as_str()) {
        rounds += 1;
        assert!(
            rounds < 300,
            "no refresh seen; token requests: {}",
            tokens.requests().len()
        );
        assert_ok(&rig.initialize().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every request succeeded, the old token was in use until the new one arrived, and
    // the refresh was one token request.
    let auth: Vec<String> = rig
        .upstream
        .requests()
        .iter()
        .filter_map(|r| r.authorization.clone())
        .collect();
    assert!(auth.len() >= 2);
    assert!(auth[..auth.len() - 1].iter().all(|a| *a == bearer(1)));
    assert_eq!(tokens.requests().len(), 2);
}

#[tokio::test]
async fn a_failing_endpoint_changes_nothing_while_the_token_is_valid() {
    // An 8 s token: refresh attempts start at 4 s and it stays valid until 8 s.
    let tokens = TokenServer::start(Some(8)).await;
    let rig = Rig::start("failing-valid", &tokens, "").await;
    assert_ok(&rig.initialize().await);
    tokens.answer_with(Answer::Error {
        status: 503,
        error: "temporarily_unavailable",
        description: None,
    });
    let mut rounds = 0;
    // Until the proxy has tried (and failed) to refresh, and a little after.
    while tokens.requests().len() < 2 {
        rounds += 1;
        assert!(rounds < 400, "no refresh attempt seen");
        assert_ok(&rig.initialize().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for _ in 0..5 {
        assert_ok(&rig.initialize().await);
    }
    assert!(rig
        .upstream
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(bearer(1).as_str())));
    // Backoff: the failing endpoint is not hammered by every request.
    assert!(tokens.requests().len() <= 3, "{}", tokens.requests().len());
}

#[tokio::test]
async fn a_failing_endpoint_after_expiry_gives_the_agent_a_503_naming_the_cause() {
    let tokens = TokenServer::start(Some(2)).await;
    let rig = Rig::start("failing-expired", &tokens, "").await;
    assert_ok(&rig.initialize().await);
    tokens.answer_with(Answer::Error {
        status: 400,
        error: "invalid_client",
        description: Some("client authentication failed"),
    });
    let mut rounds = 0;
    let refused = loop {
        rounds += 1;
        assert!(rounds < 400, "the token never expired");
        let answer = rig.initialize().await;
        if answer.status != 200 {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_rpc_error(
        &refused,
        503,
        -31005,
        json!(7),
        &format!(
            "mcp-vpce-proxy: route failing-expired: no gateway credential: token endpoint {} \
             answered 400 invalid_client: client authentication failed",
            tokens.url()
        ),
    );
    assert!(!refused.body.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_cold_start_against_a_failing_endpoint_is_answered_at_once() {
    let tokens = TokenServer::start(Some(3600)).await;
    tokens.answer_with(Answer::Error {
        status: 401,
        error: "invalid_client",
        description: None,
    });
    let rig = Rig::start("cold-failing", &tokens, "").await;
    let expected = format!(
        "mcp-vpce-proxy: route cold-failing: no gateway credential: token endpoint {} answered 401 invalid_client",
        tokens.url()
    );
    assert_rpc_error(&rig.initialize().await, 503, -31005, json!(7), &expected);
    // Backing off: the same answer, without another token request.
    assert_rpc_error(&rig.initialize().await, 503, -31005, json!(7), &expected);
    assert_eq!(tokens.requests().len(), 1);
    assert!(rig.upstream.requests().is_empty());
}

#[tokio::test]
async fn an_upstream_401_forces_one_refresh_and_the_agent_sees_success() {
    let tokens = TokenServer::start(Some(3600)).await;
    let rig = Rig::start("refused-once", &tokens, "").await;
    assert_ok(&rig.initialize().await);
    rig.upstream.refuse_next_with_401(1);
    assert_ok(&rig.initialize().await);
    assert_eq!(tokens.requests().len(), 2, "one forced refresh");
    let seen = rig.upstream.requests();
    let auth: Vec<(u16, Option<String>)> = seen
        .iter()
        .map(|r| (r.status, r.authorization.clone()))
        .collect();
    assert_eq!(
        auth,
        [
            (200, Some(bearer(1))),
            (401, Some(bearer(1))),
            (200, Some(bearer(2)))
        ]
    );
}

#[tokio::test]
async fn a_second_401_reaches_the_agent_with_the_gateway_challenge() {
    let tokens = TokenServer::start(Some(3600)).await;
    let rig = Rig::start("refused-twice", &tokens, "").await;
    rig.upstream.refuse_next_with_401(2);
    let answer = rig.initialize().await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.headers["www-authenticate"],
        "Bearer error=\"invalid_token\""
    );
    assert_eq!(tokens.requests().len(), 2);
}

#[tokio::test]
async fn jwt_expiry_is_used_when_the_endpoint_gives_no_expires_in() {
    let tokens = TokenServer::start(None).await;
    tokens.answer_with(Answer::Jwt { lifetime_secs: 4 });
    let rig = Rig::start("jwt-exp", &tokens, "").await;
    let mut rounds = 0;
    while tokens.issued().len() < 2 {
        rounds += 1;
        assert!(rounds < 300, "the JWT's exp did not trigger a refresh");
        assert_ok(&rig.initialize().await);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_ok(&rig.initialize().await);
    let issued = tokens.issued();
    assert_eq!(
        rig.last_authorization().as_deref(),
        Some(format!("Bearer {}", issued[1]).as_str())
    );
}

#[tokio::test]
async fn plain_http_token_urls_are_refused_unless_loopback() {
    let dns = DnsServer::start(&[]).await;
    let toml = format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}/mcp"
[route.credential]
type = "oauth2"
token_url = "http://auth.example.com/oauth2/token"
client_id = "id"
client_secret_env = "PATH"
"#,
        head = head(&dns)
    );
    let error = Proxy::try_start(&toml).await.err().unwrap();
    assert_eq!(
        error,
        "test.toml: route \"mcp\" (route[0]).credential: token_url \"http://auth.example.com/oauth2/token\" \
         must be https (plain http only on a loopback address)"
    );
}

/// The token endpoint is reached through `HTTPS_PROXY` (a CONNECT tunnel, TLS inside it
/// with the endpoint's name), unless `NO_PROXY` names it; the gateway never is. Runs the
/// proxy as a child process, since the proxy settings are environment variables.
#[tokio::test(flavor = "multi_thread")]
async fn token_requests_honour_https_proxy_and_no_proxy() {
    const TOKEN_HOST: &str = "auth.token-endpoint.test";
    let tokens = TokenServer::start_tls(TOKEN_HOST, Some(3600)).await;
    let connect_proxy = crate::common::token_server::ConnectProxy::start(tokens.addr).await;
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "proxied"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "oauth2"
token_url = "{url}"
client_id = "{CLIENT_ID}"
client_secret_env = "CLIENT_SECRET"
ca_file = "{token_ca}"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        url = tokens.url(),
        token_ca = tokens.ca_file().unwrap().display(),
    );
    let proxy_url = format!("http://{}", connect_proxy.addr);
    let env = |no_proxy: &str| {
        vec![
            ("CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("HTTPS_PROXY", proxy_url.clone()),
            ("NO_PROXY", no_proxy.to_string()),
        ]
    };

    let proxy = crate::common::aws::ChildProxy::start(&toml, &env("localhost"), "info").await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
    assert_eq!(
        *connect_proxy.connects.lock().unwrap(),
        [format!("{TOKEN_HOST}:{}", tokens.addr.port())]
    );
    assert_eq!(tokens.requests().len(), 1);
    assert_eq!(
        upstream.requests()[0].authorization.as_deref(),
        Some(bearer(1).as_str())
    );
    drop(proxy);

    // NO_PROXY names the endpoint: dialed directly, where its test name does not resolve.
    let proxy = crate::common::aws::ChildProxy::start(&toml, &env(TOKEN_HOST), "info").await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.starts_with(&format!(
            "mcp-vpce-proxy: route proxied: no gateway credential: token endpoint {}",
            tokens.url()
        )),
        "{message}"
    );
    assert_eq!(connect_proxy.connects.lock().unwrap().len(), 1);
}
