//! Secrets never leave their route: a log captured at trace level during the credential
//! flows (OAuth2 fetch, forced refresh after a 401, failure after expiry; SigV4 with ECS
//! credentials; AgentCore Identity), the agent's error bodies and `check` output contain
//! none of the client secret, the tokens or the AWS secret key.

use std::process::Command;
use std::time::Duration;

use crate::common::aws::ChildProxy;
use crate::common::dns::DnsServer;
use crate::common::http::post_rpc;
use crate::common::proxy::head;
use crate::common::token_server::{token_name, Answer, TokenServer};
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use base64::Engine;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"secrets-test","version":"1"}}}"#;
const CLIENT_SECRET: &str = "client-secret-Zx81kQ0pLm3Vt7";

fn route(upstream: &Upstream, dns: &DnsServer, credential: &str) -> String {
    format!(
        r#"{head}
[[route]]
name = "secrets"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
{credential}
"#,
        head = head(dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    )
}

/// Fails with the offending excerpt when `text` contains any of `secrets`.
fn assert_free_of(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        if let Some(at) = text.find(secret.as_str()) {
            let start = text[..at].rfind('\n').map_or(0, |i| i + 1);
            let end = text[at..].find('\n').map_or(text.len(), |i| at + i);
            panic!(
                "{what} contains a secret ({secret}):\n{}",
                &text[start..end]
            );
        }
    }
}

/// The log has trace lines from the proxy itself, so the capture really was at trace.
fn assert_trace_level(logs: &str) {
    assert!(
        logs.lines().any(|l| l.contains("\"level\":\"TRACE\"")),
        "no trace-level line captured"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oauth2_flows_log_no_client_secret_and_no_token() {
    let tokens = TokenServer::start(Some(2)).await;
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = route(
        &upstream,
        &dns,
        &format!(
            "type = \"oauth2\"\ntoken_url = \"{}\"\nclient_id = \"proxy-client\"\nclient_secret_env = \"GATEWAY_CLIENT_SECRET\"",
            tokens.url()
        ),
    );
    let env = [("GATEWAY_CLIENT_SECRET", CLIENT_SECRET.to_string())];
    let proxy = ChildProxy::start(&toml, &env, "trace").await;
    let mut bodies = String::new();

    // A fetch, a forced refresh after a 401, then the endpoint failing after expiry.
    assert_eq!(post_rpc(&proxy.url(), INITIALIZE).await.status, 200);
    upstream.refuse_next_with_401(1);
    assert_eq!(post_rpc(&proxy.url(), INITIALIZE).await.status, 200);
    tokens.answer_with(Answer::Error {
        status: 400,
        error: "invalid_client",
        description: None,
    });
    let mut rounds = 0;
    loop {
        let answer = post_rpc(&proxy.url(), INITIALIZE).await;
        bodies.push_str(&answer.body);
        if answer.status == 503 {
            break;
        }
        rounds += 1;
        assert!(rounds < 400, "never failed:\n{}", proxy.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let issued = tokens.issued();
    assert!(issued.len() >= 2, "{issued:?}");
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("proxy-client:{CLIENT_SECRET}"));
    let mut secrets = vec![CLIENT_SECRET.to_string(), basic];
    secrets.extend(issued.iter().cloned());
    let logs = proxy.logs();
    assert!(logs.contains("credential fetched"), "{logs}");
    assert_trace_level(&logs);
    assert_free_of("the trace log", &logs, &secrets);
    assert_free_of("the agent's answers", &bodies, &secrets);
    assert!(issued.contains(&token_name(1)));
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn sigv4_flows_log_no_aws_secret_key_or_session_token() {
    use crate::common::aws::{credentials, CredentialKind, CredentialServer};
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let ecs = CredentialServer::start(CredentialKind::Ecs, Duration::from_secs(4)).await;
    let proxy = ChildProxy::start(
        &route(&upstream, &dns, "type = \"sigv4\""),
        &[ecs.env()],
        "trace",
    )
    .await;
    let mut rounds = 0;
    while ecs.issued() < 2 {
        rounds += 1;
        assert!(rounds < 400, "no refresh:\n{}", proxy.logs());
        assert_eq!(post_rpc(&proxy.url(), INITIALIZE).await.status, 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut secrets = Vec::new();
    for n in 1..=ecs.issued() {
        let (_, secret, token) = credentials("ecs", n);
        secrets.push(secret);
        secrets.push(token);
    }
    let logs = proxy.logs();
    assert_trace_level(&logs);
    assert_free_of("the trace log", &logs, &secrets);
}

#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn agentcore_identity_flows_log_no_token() {
    use crate::common::aws::IdentityService;
    let secret = "identity-secret-key-Qm5sT2xQaWxkZXJ";
    let identity = IdentityService::start(secret, "us-east-1", 3600).await;
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let credential = format!(
        "type = \"agentcore_identity\"\nworkload_name = \"w\"\nprovider_name = \"p\"\nendpoint = \"{}\"",
        identity.endpoint()
    );
    let proxy = ChildProxy::start(
        &route(&upstream, &dns, &credential),
        &[
            ("AWS_ACCESS_KEY_ID", "AKIASECRETSTEST00001".to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ],
        "trace",
    )
    .await;
    assert_eq!(post_rpc(&proxy.url(), INITIALIZE).await.status, 200);
    let mut secrets = vec![
        secret.to_string(),
        crate::common::aws::WORKLOAD_ACCESS_TOKEN.to_string(),
    ];
    secrets.extend(identity.tokens());
    assert_eq!(secrets.len(), 3);
    let logs = proxy.logs();
    assert_trace_level(&logs);
    assert_free_of("the trace log", &logs, &secrets);
}

#[test]
fn check_output_shows_fingerprints_and_no_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "file-secret-Vb93nQ2").unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(
        &config,
        format!(
            r#"[[route]]
path = "/a"
gateway = "https://{GATEWAY_HOST}/mcp"
credential = {{ type = "oauth2", token_url = "https://auth.example.com/oauth2/token", client_id = "proxy-client", client_secret_env = "GATEWAY_CLIENT_SECRET", scope = "gateway/invoke" }}
[[route]]
path = "/b"
gateway = "https://{GATEWAY_HOST}/mcp"
credential = {{ type = "oauth2", token_url = "https://auth.example.com/oauth2/token", client_id = "proxy-client", client_secret_file = "{}", client_auth = "post" }}
[[route]]
path = "/c"
gateway = "https://{GATEWAY_HOST}/mcp"
credential = {{ type = "sigv4" }}
"#,
            secret_file.display()
        ),
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"))
        .args(["check", "--config"])
        .arg(&config)
        .env("GATEWAY_CLIENT_SECRET", CLIENT_SECRET)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let secrets = [CLIENT_SECRET.to_string(), "file-secret-Vb93nQ2".to_string()];
    assert_free_of("check output", &stdout, &secrets);
    assert_free_of("check output", &stderr, &secrets);
    let fingerprint = mcp_vpce_proxy::auth::secret::Secret::new(CLIENT_SECRET).fingerprint();
    assert!(
        stdout.contains(&format!(
            "oauth2 client credentials from https://auth.example.com/oauth2/token \
             (client id \"proxy-client\", secret env GATEWAY_CLIENT_SECRET ({fingerprint}), \
             client_secret_basic, scope \"gateway/invoke\")"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "AWS SigV4 (service bedrock-agentcore, region us-east-1, credentials from the default AWS chain)"
        ),
        "{stdout}"
    );
}

/// The sources that hold a token from the start (an environment variable, a file, a
/// command's output): the trace log, `/routes` and `/metrics` carry none of them, while
/// the gateway did receive each one.
#[tokio::test(flavor = "multi_thread")]
async fn env_file_and_command_tokens_stay_out_of_logs_routes_and_metrics() {
    use crate::common::http::send;

    const ENV_TOKEN: &str = "env-token-Hq72LmZ0pX";
    const FILE_TOKEN: &str = "file-token-Rw18KdN5sJ";
    const COMMAND_TOKEN: &str = "command-token-Yt40BcV9eQ";
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, FILE_TOKEN).unwrap();
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let route_at = |path: &str, credential: String| {
        format!(
            "\n[[route]]\nname = \"{}\"\npath = \"{path}\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nca_file = \"{}\"\ncredential = {{ {credential} }}\n",
            &path[1..],
            upstream.port(),
            upstream.ca_file().display()
        )
    };
    let toml = format!(
        "{}{}{}{}",
        head(&dns),
        route_at(
            "/env",
            "type = \"static\", env = \"SECRETS_TEST_GATEWAY_TOKEN\"".into()
        ),
        route_at(
            "/file",
            format!("type = \"file\", path = \"{}\"", token_file.display())
        ),
        route_at(
            "/command",
            format!("type = \"command\", command = [\"sh\", \"-c\", \"echo {COMMAND_TOKEN}\"]")
        ),
    );
    let secrets: Vec<String> = [ENV_TOKEN, FILE_TOKEN, COMMAND_TOKEN]
        .map(String::from)
        .to_vec();

    // The binary at trace level: its whole log; and its admin listener. The variable
    // goes to the child only: the test process's environment is shared by every test.
    let proxy = ChildProxy::start_with_admin(
        &toml,
        &[("SECRETS_TEST_GATEWAY_TOKEN", ENV_TOKEN.to_string())],
        "trace",
        &[],
    )
    .await;
    for path in ["env", "file", "command"] {
        let url = format!("http://{}/{path}", proxy.addr);
        assert_eq!(post_rpc(&url, INITIALIZE).await.status, 200, "{path}");
    }
    let seen: Vec<String> = upstream
        .requests()
        .iter()
        .filter_map(|r| r.authorization.clone())
        .collect();
    for secret in &secrets {
        assert!(
            seen.contains(&format!("Bearer {secret}")),
            "the gateway never received {secret}: {seen:?}"
        );
    }
    let logs = proxy.logs();
    assert_trace_level(&logs);
    assert_free_of("the trace log", &logs, &secrets);

    // The admin listener of the same process, after more traffic.
    let admin_addr = proxy.admin.expect("the admin listener");
    for path in ["env", "file", "command"] {
        let url = format!("http://{}/{path}", proxy.addr);
        assert_eq!(post_rpc(&url, INITIALIZE).await.status, 200, "{path}");
    }
    for page in ["routes", "metrics", "readyz"] {
        let answer = send("GET", &format!("http://{admin_addr}/{page}"), &[], "").await;
        assert_eq!(answer.status, 200, "/{page}: {}", answer.body);
        assert_free_of(&format!("/{page}"), &answer.body, &secrets);
    }
}
