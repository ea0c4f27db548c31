//! `cognito_client_token`: the gateway's Cognito token from Cognito's `GetClientToken`
//! API, through the `cognito-idp` interface endpoint, without egress. A loopback Cognito
//! checks every call against botocore's model and its SigV4 signature; the gateway
//! accepts only a token that Cognito issued.

#![cfg(feature = "aws")]

use std::process::{Command, Output};
use std::time::Duration;

use crate::common::aws::ChildProxy;
use crate::common::aws_api::{sample, Reply};
use crate::common::cognito::{
    Cognito, AWS_SECRET_KEY, CLIENT_ID, CLIENT_SECRET, COGNITO_VPCE, KEY_ID,
};
use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc, Answer};
use crate::common::proxy::{head, Proxy, OUTSIDE};
use crate::common::upstream::{Upstream, UpstreamOptions, GATEWAY_HOST};
use mcp_vpce_proxy::auth::secret::fingerprint;
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":"cognito-1","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"cognito-test","version":"1"}}}"#;

/// The route table of a gateway behind a Cognito-issued token; `endpoint` is the Cognito
/// endpoint and `extra` more keys of the credential table.
fn config(
    dns: &DnsServer,
    upstream: &Upstream,
    cognito: &Cognito,
    name: &str,
    endpoint: &str,
    extra: &str,
) -> String {
    format!(
        r#"{head}
[[route]]
name = "{name}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "cognito_client_token"
client_id = "{CLIENT_ID}"
scopes = ["gateway/invoke"]
endpoint = "{endpoint}"
ca_file = "{cognito_ca}"
{extra}
"#,
        head = head(dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        cognito_ca = cognito.api.ca_file().display(),
    )
}

/// What the child proxy is given: the app client's secret and AWS credentials to sign.
fn env() -> Vec<(&'static str, String)> {
    vec![
        ("COGNITO_CLIENT_SECRET", CLIENT_SECRET.to_string()),
        ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
        ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY.to_string()),
    ]
}

/// Gateway (accepting only Cognito's tokens) + DNS (gateway and the Cognito endpoint's
/// name in the VPC) + the proxy as a child process, calling Cognito through its VPC
/// endpoint name.
struct Rig {
    upstream: Upstream,
    proxy: ChildProxy,
    _dns: DnsServer,
}

impl Rig {
    async fn start(cognito: &Cognito, name: &str, log_level: &str) -> Rig {
        let upstream = Upstream::start_with(UpstreamOptions {
            authorize: Some(cognito.authorize()),
            ..UpstreamOptions::default()
        })
        .await;
        let dns = DnsServer::start(&[
            (GATEWAY_HOST, "127.0.0.1".parse().unwrap()),
            (COGNITO_VPCE, "127.0.0.1".parse().unwrap()),
        ])
        .await;
        let toml = config(
            &dns,
            &upstream,
            cognito,
            name,
            &cognito.vpce_endpoint(),
            "client_secret_env = \"COGNITO_CLIENT_SECRET\"",
        );
        let proxy = ChildProxy::start(&toml, &env(), log_level).await;
        Rig {
            upstream,
            proxy,
            _dns: dns,
        }
    }

    async fn initialize(&self) -> Answer {
        post_rpc(&self.proxy.url(), INITIALIZE).await
    }

    fn authorizations(&self) -> Vec<(u16, Option<String>)> {
        self.upstream
            .requests()
            .iter()
            .map(|r| (r.status, r.authorization.clone()))
            .collect()
    }
}

fn assert_ok(answer: &Answer, rig: &Rig) {
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, rig.proxy.logs());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cold_burst_of_twenty_requests_makes_one_signed_get_client_token_call() {
    let cognito = Cognito::start(3600).await;
    // Slow enough that every request arrives while the one call is running.
    cognito.api.delay(Duration::from_millis(300));
    let rig = Rig::start(&cognito, "cognito-burst", "info").await;
    let url = rig.proxy.url();
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let url = url.clone();
            tokio::spawn(async move { post_rpc(&url, INITIALIZE).await })
        })
        .collect();
    for task in tasks {
        assert_ok(&task.await.unwrap(), &rig);
    }
    let issued = cognito.issued();
    assert_eq!(issued.len(), 1, "single flight: one GetClientToken call");
    let expected = format!("Bearer {}", issued[0]);
    let seen = rig.authorizations();
    assert_eq!(seen.len(), 20);
    assert!(seen
        .iter()
        .all(|(status, a)| *status == 200 && a.as_deref() == Some(&*expected)));

    // The call is exactly what botocore sends (target, content type, members and types
    // per the model), SigV4-signed for cognito-idp in the endpoint's region.
    cognito.api.assert_calls_fit_the_model(Some(KEY_ID));
    let calls = cognito.api.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let want = sample("cognito GetClientToken");
    assert_eq!(call.operation, "cognito-idp.GetClientToken");
    assert_eq!(call.body, want["request"]);
    assert_eq!(
        call.target.as_deref(),
        Some("AWSCognitoIdentityProviderService.GetClientToken")
    );
    assert_eq!(
        call.content_type.as_deref(),
        Some("application/x-amz-json-1.1")
    );
    let signed = call.signed.as_ref().unwrap().as_ref().unwrap();
    assert_eq!(
        (signed.region.as_str(), signed.service.as_str()),
        ("us-east-1", "cognito-idp")
    );
    assert!(signed.signed_headers.contains(&"x-amz-target".to_string()));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_token_is_refreshed_ahead_of_expires_in() {
    // ExpiresIn 4 s: refreshed from 2 s on (the margin is capped at half the lifetime),
    // while the first token is still in use.
    let cognito = Cognito::start(4).await;
    let rig = Rig::start(&cognito, "cognito-refresh", "info").await;
    let mut rounds = 0;
    while cognito.issued().len() < 2
        || rig.authorizations().last().map(|(_, a)| a.clone())
            != Some(Some(format!("Bearer {}", cognito.issued()[1])))
    {
        rounds += 1;
        assert!(
            rounds < 300,
            "no refresh seen: {} tokens",
            cognito.issued().len()
        );
        assert_ok(&rig.initialize().await, &rig);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let issued = cognito.issued();
    let seen = rig.authorizations();
    // Every request succeeded; the first token served until the second arrived.
    assert!(seen.iter().all(|(status, _)| *status == 200));
    let first = format!("Bearer {}", issued[0]);
    let switch = seen
        .iter()
        .position(|(_, a)| a.as_deref() != Some(&*first))
        .unwrap();
    assert!(switch >= 1);
    assert!(seen[switch..]
        .iter()
        .all(|(_, a)| a.as_deref() == Some(&*format!("Bearer {}", issued[1]))));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_401_replays_once_with_a_fresh_token() {
    let cognito = Cognito::start(3600).await;
    let rig = Rig::start(&cognito, "cognito-replay", "info").await;
    assert_ok(&rig.initialize().await, &rig);
    // The gateway stops accepting the token it had (revoked before its expiry).
    cognito.revoke_all();
    assert_ok(&rig.initialize().await, &rig);
    let issued = cognito.issued();
    assert_eq!(issued.len(), 2, "one forced refresh");
    let bearer = |n: usize| Some(format!("Bearer {}", issued[n]));
    assert_eq!(
        rig.authorizations(),
        [(200, bearer(0)), (401, bearer(0)), (200, bearer(1))]
    );
}

/// Each error of the operation, as the agent sees it: a JSON-RPC error naming the call,
/// Cognito's error and message, and what it means. In-process proxies, unsigned calls
/// (`unsigned = true`: no AWS credentials needed), to 127.0.0.1 (no DNS).
#[tokio::test]
async fn each_cognito_error_reaches_the_agent_with_its_meaning() {
    let cognito = Cognito::start(3600).await;
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cognito-secret");
    std::fs::write(&secret, format!("{CLIENT_SECRET}\n")).unwrap();
    let url = format!("{}/", cognito.ip_endpoint());
    let cases = [
        (
            "InvalidParameterException",
            "check client_id and scopes: each scope is resource-server-identifier/scope-name of a \
             resource server of this user pool, allowed for this app client",
        ),
        (
            "ResourceNotFoundException",
            "no such app client in us-east-1: check client_id and the region or endpoint",
        ),
        (
            "NotAuthorizedException",
            "the client id and secret were not accepted: a wrong or rotated secret, or an app \
             client without a secret",
        ),
        (
            "TooManyRequestsException",
            "Cognito throttles this app client; the proxy retries with backoff",
        ),
        (
            "InternalErrorException",
            "an error inside Cognito; the proxy retries with backoff",
        ),
        (
            "OperationNotEnabledException",
            "the app client needs a client secret and ALLOW_CLIENT_TOKEN_AUTH as its only \
             authentication flow: in the Cognito console, the user pool's App clients, the \
             client, Edit, Authentication flows; or `aws cognito-idp update-user-pool-client \
             --explicit-auth-flows ALLOW_CLIENT_TOKEN_AUTH` with the client's other current \
             settings, which that command otherwise resets. Through a VPC endpoint the user \
             pool must also have no domain",
        ),
        (
            "ForbiddenException",
            "the AWS WAF web ACL associated with the user pool blocked the call",
        ),
    ];
    for (i, (code, meaning)) in cases.iter().enumerate() {
        cognito.fail_with(code);
        let name = format!("cognito-error-{i}");
        let toml = config(
            &dns,
            &upstream,
            &cognito,
            &name,
            &cognito.ip_endpoint(),
            &format!(
                "region = \"us-east-1\"\nunsigned = true\nclient_secret_file = \"{}\"",
                secret.display()
            ),
        );
        let proxy = Proxy::start(&toml).await;
        let answer = post_rpc(&proxy.url(), INITIALIZE).await;
        let response = &sample(&format!("cognito {code}"))["response"];
        assert_rpc_error(
            &answer,
            503,
            -31005,
            json!("cognito-1"),
            &format!(
                "mcp-vpce-proxy: route {name}: no gateway credential: Cognito GetClientToken at \
                 {url} answered {} {code}: {} ({meaning})",
                response["status"],
                // The client id is sensitive in the model: never quoted back.
                response["body"]["message"]
                    .as_str()
                    .unwrap()
                    .replace(CLIENT_ID, "[redacted]"),
            ),
        );
        assert!(!answer.body.contains(CLIENT_SECRET));
    }
    // Unsigned, as configured, and each call as the model describes it.
    cognito.api.assert_calls_fit_the_model(None);
    assert_eq!(cognito.api.calls().len(), cases.len());
    assert!(upstream.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn no_secret_or_token_appears_in_any_output() {
    let cognito = Cognito::start(3600).await;
    let rig = Rig::start(&cognito, "cognito-quiet", "debug").await;
    assert_ok(&rig.initialize().await, &rig);
    let token = cognito.issued()[0].clone();
    // Cognito quoting what it was sent (a service may) is blanked out too.
    cognito.api.set_handler(Box::new(|_, input| {
        Reply::error(
            "NotAuthorizedException",
            &format!(
                "Incorrect secret {} for {}",
                input["Secret"].as_str().unwrap_or(""),
                input["ClientId"].as_str().unwrap_or("")
            ),
        )
    }));
    cognito.revoke_all();
    let refused = rig.initialize().await;
    let message = refused.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.ends_with(
            "answered 400 NotAuthorizedException: Incorrect secret [redacted] for [redacted] (the \
             client id and secret were not accepted: a wrong or rotated secret, or an app client \
             without a secret)"
        ),
        "{message}"
    );
    let logs = rig.proxy.logs();
    assert!(logs.contains("Cognito client token received"), "{logs}");
    for (what, text) in [("the agent's answer", &refused.body), ("the log", &logs)] {
        assert!(!text.contains(CLIENT_SECRET), "the client secret in {what}");
        assert!(!text.contains(&token), "the token in {what}");
        assert!(
            !text.contains(AWS_SECRET_KEY),
            "the AWS secret key in {what}"
        );
    }
}

#[tokio::test]
async fn a_client_secret_shorter_than_the_models_24_is_refused_at_load() {
    let dns = DnsServer::start(&[]).await;
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "tooshort-secret-99\n").unwrap();
    let toml = format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}/mcp"
[route.credential]
type = "cognito_client_token"
region = "us-east-1"
client_id = "{CLIENT_ID}"
client_secret_file = "{secret}"
"#,
        head = head(&dns),
        secret = secret.display(),
    );
    let error = Proxy::try_start(&toml).await.err().unwrap();
    assert_eq!(
        error,
        "test.toml: route \"mcp\" (route[0]).credential: client secret: 18 characters, but a Cognito app client \
         secret has at least 24 (is this the client id, or a truncated secret?)"
    );
    assert!(!error.contains("tooshort"));
}

/// Through a VPC endpoint name, only in-VPC addresses are dialed: a name that resolves
/// elsewhere is refused before anything is sent.
#[tokio::test(flavor = "multi_thread")]
async fn a_vpc_endpoint_name_resolving_outside_the_vpc_is_refused_without_a_call() {
    let cognito = Cognito::start(3600).await;
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[
        (GATEWAY_HOST, "127.0.0.1".parse().unwrap()),
        (COGNITO_VPCE, OUTSIDE.parse().unwrap()),
    ])
    .await;
    let toml = config(
        &dns,
        &upstream,
        &cognito,
        "cognito-outside",
        &cognito.vpce_endpoint(),
        "client_secret_env = \"COGNITO_CLIENT_SECRET\"",
    );
    let proxy = ChildProxy::start(&toml, &env(), "info").await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(answer.status, 503, "{message}");
    assert!(
        message.starts_with(&format!(
            "mcp-vpce-proxy: route cognito-outside: no gateway credential: Cognito \
             GetClientToken {}/: ",
            cognito.vpce_endpoint()
        )),
        "{message}"
    );
    assert!(
        message.ends_with(&format!(
            "{COGNITO_VPCE} resolves to {OUTSIDE}, outside the in-VPC ranges (127.0.0.1/32): \
             refused, the call must stay on PrivateLink (require_private); is private DNS on for \
             the interface endpoint, or is `endpoint` its DNS name?"
        )),
        "{message}"
    );
    assert!(cognito.api.calls().is_empty());
}

/// `doctor` as an operator runs it, with the proxy's environment.
async fn doctor(toml: &str) -> (bool, String, String) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", dir.path())
        .env("AWS_CONFIG_FILE", dir.path().join("none"))
        .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("none"))
        .envs(env())
        .args(["doctor", "--no-system-resolver", "--config"])
        .arg(&config);
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    drop(dir);
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

fn line<'a>(stdout: &'a str, start: &str) -> &'a str {
    stdout
        .lines()
        .find(|l| l.trim_start().starts_with(start))
        .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_shows_the_private_endpoint_and_the_tokens_fingerprint_expiry_and_scopes() {
    let cognito = Cognito::start(3600).await;
    let upstream = Upstream::start_with(UpstreamOptions {
        authorize: Some(cognito.authorize()),
        ..UpstreamOptions::default()
    })
    .await;
    let dns = DnsServer::start(&[
        (GATEWAY_HOST, "127.0.0.1".parse().unwrap()),
        (COGNITO_VPCE, "127.0.0.1".parse().unwrap()),
    ])
    .await;
    let toml = config(
        &dns,
        &upstream,
        &cognito,
        "cognito-doctor",
        &cognito.vpce_endpoint(),
        "client_secret_env = \"COGNITO_CLIENT_SECRET\"",
    );
    let (ok, stdout, stderr) = doctor(&toml).await;
    assert!(ok, "{stdout}\n{stderr}");
    let endpoint = cognito.vpce_endpoint();
    assert_eq!(
        line(&stdout, "✓ credential endpoint"),
        format!(
            "  ✓ credential endpoint {endpoint}/ (in-VPC addresses only): {COGNITO_VPCE} via {} \
             -> 127.0.0.1 (in-VPC)",
            dns.addr
        )
    );
    let token = &cognito.issued()[0];
    let obtained = line(&stdout, "✓ credential Cognito");
    let head = format!(
        "  ✓ credential Cognito GetClientToken at {endpoint}/ (client id \"{CLIENT_ID}\", secret \
         env COGNITO_CLIENT_SECRET ({}), scopes [gateway/invoke], SigV4 with the default AWS \
         chain, in-VPC addresses only): obtained; attaches authorization (Authorization {}), \
         expires in ",
        fingerprint(CLIENT_SECRET.as_bytes()),
        fingerprint(format!("Bearer {token}").as_bytes()),
    );
    assert!(obtained.starts_with(&head), "{obtained}\n{head}");
    assert!(obtained.ends_with(", scopes gateway/invoke"), "{obtained}");
    // "expires in 59m 59s (<RFC 3339>)": within the hour Cognito gave.
    let left = &obtained[head.len()..];
    assert!(
        left.starts_with("59m ") || left.starts_with("1h "),
        "{left}"
    );
    assert!(
        stdout.ends_with(" failed\n") && stdout.contains("all checks passed"),
        "{stdout}"
    );
    for text in [&stdout, &stderr] {
        assert!(!text.contains(CLIENT_SECRET) && !text.contains(token.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn doctor_names_the_missing_allow_client_token_auth_flow_and_the_fix() {
    let cognito = Cognito::start(3600).await;
    cognito.fail_with("OperationNotEnabledException");
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[
        (GATEWAY_HOST, "127.0.0.1".parse().unwrap()),
        (COGNITO_VPCE, "127.0.0.1".parse().unwrap()),
    ])
    .await;
    let toml = config(
        &dns,
        &upstream,
        &cognito,
        "cognito-doctor-off",
        &cognito.vpce_endpoint(),
        "client_secret_env = \"COGNITO_CLIENT_SECRET\"",
    );
    let (ok, stdout, _) = doctor(&toml).await;
    assert!(!ok);
    let lines: Vec<&str> = stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("  ✗ credential Cognito"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(
        lines[at].ends_with(&format!(
            ": Cognito GetClientToken at {}/ answered 400 OperationNotEnabledException: \
             GetClientToken is not enabled for this app client. (the app client needs a client \
             secret and ALLOW_CLIENT_TOKEN_AUTH as its only authentication flow: in the Cognito \
             console, the user pool's App clients, the client, Edit, Authentication flows; or \
             `aws cognito-idp update-user-pool-client --explicit-auth-flows \
             ALLOW_CLIENT_TOKEN_AUTH` with the client's other current settings, which that \
             command otherwise resets. Through a VPC endpoint the user pool must also have no \
             domain)",
            cognito.vpce_endpoint()
        )),
        "{}",
        lines[at]
    );
    assert_eq!(
        lines[at + 1],
        "      cause: Cognito does not allow GetClientToken for this app client: it lacks the \
         ALLOW_CLIENT_TOKEN_AUTH flow (which must be its only authentication flow) or a client \
         secret; through a VPC endpoint, a user pool that has a domain refuses it as well (a \
         user pool with a domain cannot be used through AWS PrivateLink)"
    );
    assert_eq!(
        lines[at + 2],
        "      fix:   in the Cognito console: the user pool, App clients, the client, Edit, \
         Authentication flows: ALLOW_CLIENT_TOKEN_AUTH only (or aws cognito-idp \
         update-user-pool-client --user-pool-id <pool> --client-id <id> --explicit-auth-flows \
         ALLOW_CLIENT_TOKEN_AUTH plus the client's other current settings, which that command \
         otherwise resets); give the client a secret; through a VPC endpoint, delete the user \
         pool's domain (or use agentcore_identity)"
    );
    assert!(line(&stdout, "- mcp").ends_with("needs the route's credential"));
}

#[test]
fn zero_file_flags_configure_the_cognito_source() {
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MCP_VPCE_PROXY_COGNITO_CLIENT_ID", CLIENT_ID)
        .env("MCP_VPCE_PROXY_COGNITO_CLIENT_SECRET_ENV", "COGNITO_SECRET")
        .env("COGNITO_SECRET", CLIENT_SECRET)
        .args([
            "check",
            "--gateway",
            "https://gw-1.gateway.bedrock-agentcore.eu-west-1.amazonaws.com/mcp",
            "--cognito-scopes",
            "gateway/invoke gateway/read",
            "--aws-endpoint",
            "https://vpce-0a1-b2.cognito-idp.eu-west-1.vpce.amazonaws.com",
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let credential = stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("credential"))
        .unwrap()
        .trim()
        .to_string();
    assert_eq!(
        credential,
        format!(
            "Cognito GetClientToken at https://vpce-0a1-b2.cognito-idp.eu-west-1.vpce.amazonaws.com/ \
             (client id \"{CLIENT_ID}\", secret env COGNITO_SECRET ({}), scopes [gateway/invoke, \
             gateway/read], SigV4 with the default AWS chain, in-VPC addresses only)",
            fingerprint(CLIENT_SECRET.as_bytes())
        )
    );
    assert!(!stdout.contains(CLIENT_SECRET));
}

/// The fixture's model check is not vacuous: it refuses what botocore's validator refuses.
#[test]
fn the_fixtures_model_check_refuses_what_botocore_would() {
    use crate::common::aws_api::{check_shape, model};
    let input = &model()["cognito-idp.GetClientToken"]["input"];
    let problems = |value: serde_json::Value| {
        let mut found = Vec::new();
        check_shape(&value, input, "input", &mut found);
        found
    };
    assert_eq!(
        problems(json!({ "ClientID": CLIENT_ID, "Secret": CLIENT_SECRET })),
        [
            "input: required member ClientId is missing",
            "input: unknown member ClientID"
        ]
    );
    assert_eq!(
        problems(json!({ "ClientId": CLIENT_ID, "Secret": "short", "Scopes": "gateway/invoke" })),
        [
            "input.Scopes: \"gateway/invoke\" is not a list",
            "input.Secret: length 5 < min 24"
        ]
    );
    assert!(problems(sample("cognito GetClientToken")["request"].clone()).is_empty());
}
