//! The credential source fails (the OAuth2 token endpoint answers 500, does not answer
//! within the credential's `timeout`, or answers 200 without a token) in each state of
//! the cached credential: cold (none fetched yet), cached and valid, expired. A valid
//! cached token keeps the agents served; without one the agent gets a 503 naming the
//! cause; once the endpoint recovers, so does the route. (Error answers 400/401/503 in
//! these states: tests/it/credentials_oauth2.rs.)

use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc, Answer as HttpAnswer};
use crate::common::proxy::{head, Proxy};
use crate::common::token_server::{bearer, Answer, TokenServer};
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"fault-test","version":"1"}}}"#;

#[derive(Debug, Clone, Copy)]
enum Fault {
    /// 500 with an OAuth error body.
    ServerError,
    /// No answer within the credential's 500 ms `timeout`.
    Timeout,
    /// 200 with a JSON body that holds no token.
    NoToken,
}

impl Fault {
    fn apply(self, tokens: &TokenServer) {
        match self {
            Fault::ServerError => tokens.answer_with(Answer::Error {
                status: 500,
                error: "server_error",
                description: None,
            }),
            Fault::Timeout => tokens.delay(Duration::from_secs(3)),
            Fault::NoToken => tokens.answer_with(Answer::Error {
                status: 200,
                error: "not_a_token",
                description: None,
            }),
        }
    }

    fn clear(self, tokens: &TokenServer, expires_in: u64) {
        tokens.delay(Duration::ZERO);
        tokens.answer_with(Answer::Token {
            expires_in: Some(expires_in),
        });
    }

    /// What the agent is told, after `no gateway credential: `.
    fn cause(self, tokens: &TokenServer) -> String {
        let url = tokens.url();
        match self {
            Fault::ServerError => format!("token endpoint {url} answered 500 server_error"),
            Fault::Timeout => format!("token endpoint {url} did not answer within 500ms"),
            Fault::NoToken => format!("token endpoint {url} answered without an access_token"),
        }
    }
}

struct Rig {
    upstream: Upstream,
    tokens: TokenServer,
    proxy: Proxy,
    _dns: DnsServer,
    _dir: tempfile::TempDir,
}

impl Rig {
    /// A route with an oauth2 credential whose tokens live `expires_in` seconds.
    async fn start(expires_in: u64) -> Rig {
        let tokens = TokenServer::start(Some(expires_in)).await;
        let upstream = Upstream::start().await;
        let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
        let dir = tempfile::tempdir().unwrap();
        let secret = dir.path().join("client-secret");
        std::fs::write(&secret, "fault-test-secret").unwrap();
        let toml = format!(
            r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "oauth2"
token_url = "{url}"
client_id = "fault-test"
client_secret_file = "{secret}"
timeout = "500ms"
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
            tokens,
            proxy,
            _dns: dns,
            _dir: dir,
        }
    }

    async fn initialize(&self) -> HttpAnswer {
        post_rpc(&self.proxy.url(), INITIALIZE).await
    }

    fn assert_refused(&self, answer: &HttpAnswer, fault: Fault) {
        assert_rpc_error(
            answer,
            503,
            -31005,
            json!(7),
            &format!(
                "mcp-vpce-proxy: route mcp: no gateway credential: {}",
                fault.cause(&self.tokens)
            ),
        );
        assert!(!answer.body.contains("fault-test-secret"));
    }

    /// Calls until one succeeds (the endpoint recovered; failures back off for a while).
    async fn recovers(&self) {
        for _ in 0..200 {
            if self.initialize().await.status == 200 {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("the route did not recover");
    }
}

async fn cold(fault: Fault) {
    let rig = Rig::start(3600).await;
    fault.apply(&rig.tokens);
    rig.assert_refused(&rig.initialize().await, fault);
    assert!(
        rig.upstream.requests().is_empty(),
        "nothing sent without a credential"
    );
    fault.clear(&rig.tokens, 3600);
    rig.recovers().await;
    assert_eq!(
        rig.upstream.requests()[0].authorization.as_deref(),
        Some(bearer(rig.tokens.issued().len()).as_str())
    );
}

async fn cached_and_valid(fault: Fault) {
    // An 8 s token: the proxy tries to refresh it from 4 s on; it stays valid until 8 s.
    let rig = Rig::start(8).await;
    assert_eq!(rig.initialize().await.status, 200);
    fault.apply(&rig.tokens);
    let mut rounds = 0;
    while rig.tokens.requests().len() < 2 {
        rounds += 1;
        assert!(rounds < 300, "no refresh attempt seen");
        let answer = rig.initialize().await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The failed refresh changed nothing for the agents.
    for _ in 0..3 {
        assert_eq!(rig.initialize().await.status, 200);
    }
    assert!(rig
        .upstream
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(bearer(1).as_str())));
}

async fn expired(fault: Fault) {
    let rig = Rig::start(2).await;
    assert_eq!(rig.initialize().await.status, 200);
    fault.apply(&rig.tokens);
    let mut rounds = 0;
    let refused = loop {
        rounds += 1;
        assert!(rounds < 300, "the token never expired");
        let answer = rig.initialize().await;
        if answer.status != 200 {
            break answer;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    rig.assert_refused(&refused, fault);
    fault.clear(&rig.tokens, 3600);
    rig.recovers().await;
    let last = rig
        .upstream
        .requests()
        .last()
        .unwrap()
        .authorization
        .clone();
    assert_eq!(
        last.as_deref(),
        Some(bearer(rig.tokens.issued().len()).as_str())
    );
    assert_ne!(last.as_deref(), Some(bearer(1).as_str()));
}

#[tokio::test]
async fn cold_server_error() {
    cold(Fault::ServerError).await;
}

#[tokio::test]
async fn cold_timeout() {
    cold(Fault::Timeout).await;
}

#[tokio::test]
async fn cold_answer_without_a_token() {
    cold(Fault::NoToken).await;
}

#[tokio::test]
async fn cached_and_valid_server_error() {
    cached_and_valid(Fault::ServerError).await;
}

#[tokio::test]
async fn cached_and_valid_timeout() {
    cached_and_valid(Fault::Timeout).await;
}

#[tokio::test]
async fn cached_and_valid_answer_without_a_token() {
    cached_and_valid(Fault::NoToken).await;
}

#[tokio::test]
async fn expired_server_error() {
    expired(Fault::ServerError).await;
}

#[tokio::test]
async fn expired_timeout() {
    expired(Fault::Timeout).await;
}

#[tokio::test]
async fn expired_answer_without_a_token() {
    expired(Fault::NoToken).await;
}
