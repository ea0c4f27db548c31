//! `secrets_manager` and `ssm_parameter`: the gateway token read from AWS through the
//! services' VPC endpoints, read again on an interval and on a 401, so that a rotation
//! reaches the gateway without a restart. The loopback services check every call against
//! botocore's model and its SigV4 signature; the gateway accepts only the token the store
//! holds now.

#![cfg(feature = "aws")]

use std::time::Duration;

use crate::common::aws::ChildProxy;
use crate::common::aws_api::sample;
use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, Answer};
use crate::common::proxy::head;
use crate::common::secret_store::{
    Kind, SecretStore, AWS_SECRET_KEY, KEY_ID, PARAMETER, SECRETS_VPCE, SECRET_ID, SSM_VPCE,
};
use crate::common::upstream::{Upstream, UpstreamOptions, GATEWAY_HOST};

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":"stored-1","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"stored-test","version":"1"}}}"#;

struct Rig {
    upstream: Upstream,
    proxy: ChildProxy,
    _dns: DnsServer,
}

impl Rig {
    /// Gateway accepting only the store's current token; the store reached through its
    /// VPC endpoint name; `credential` the rest of the credential table.
    async fn start(store: &SecretStore, name: &str, credential: &str) -> Rig {
        let upstream = Upstream::start_with(UpstreamOptions {
            authorize: Some(store.authorize()),
            ..UpstreamOptions::default()
        })
        .await;
        let dns = DnsServer::start(&[
            (GATEWAY_HOST, "127.0.0.1".parse().unwrap()),
            (SECRETS_VPCE, "127.0.0.1".parse().unwrap()),
            (SSM_VPCE, "127.0.0.1".parse().unwrap()),
        ])
        .await;
        let toml = format!(
            r#"{head}
[[route]]
name = "{name}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
endpoint = "{endpoint}"
ca_file = "{store_ca}"
{credential}
"#,
            head = head(&dns),
            port = upstream.port(),
            ca = upstream.ca_file().display(),
            endpoint = store.vpce_endpoint(),
            store_ca = store.api.ca_file().display(),
        );
        let proxy = ChildProxy::start(
            &toml,
            &[
                ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
                ("AWS_SECRET_ACCESS_KEY", AWS_SECRET_KEY.to_string()),
            ],
            "debug",
        )
        .await;
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

    fn assert_ok(&self, answer: &Answer) {
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, self.proxy.logs());
    }
}

fn bearer(token: &str) -> Option<String> {
    Some(format!("Bearer {token}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rotated_secret_is_picked_up_on_the_refresh_interval() {
    let store =
        SecretStore::start(Kind::SecretsManager, "gateway-token-v1", "gateway-token-v1").await;
    let rig = Rig::start(
        &store,
        "sm-interval",
        "type = \"secrets_manager\"\nsecret_id = \"mcp/gateway-token\"\nrefresh_interval = \"1s\"",
    )
    .await;
    rig.assert_ok(&rig.initialize().await);
    rig.assert_ok(&rig.initialize().await);
    assert_eq!(store.api.calls().len(), 1, "cached between reads");
    store.rotate_with_grace("gateway-token-v2", "gateway-token-v2");
    // Both tokens work during the grace period: the switch to v2 comes from reading the
    // secret again on the interval, not from a 401.
    let mut rounds = 0;
    while rig.authorizations().last().map(|(_, a)| a.clone()) != Some(bearer("gateway-token-v2")) {
        rounds += 1;
        assert!(rounds < 200, "the rotation was not picked up");
        tokio::time::sleep(Duration::from_millis(100)).await;
        rig.assert_ok(&rig.initialize().await);
    }
    assert!(rig
        .authorizations()
        .iter()
        .all(|(status, _)| *status == 200));
    rig.assert_ok(&rig.initialize().await);
    // The call is exactly what botocore sends, signed for secretsmanager.
    store.api.assert_calls_fit_the_model(Some(KEY_ID));
    let calls = store.api.calls();
    assert!(calls.len() >= 2);
    assert!(calls
        .iter()
        .all(|c| c.body == sample("secretsmanager GetSecretValue")["request"]));
    assert_eq!(
        calls[0].target.as_deref(),
        Some("secretsmanager.GetSecretValue")
    );
    let logs = rig.proxy.logs();
    for token in ["gateway-token-v1", "gateway-token-v2"] {
        assert!(!logs.contains(token), "{token} in the log");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_401_after_rotation_reads_the_secret_again_and_replays() {
    let store =
        SecretStore::start(Kind::SecretsManager, "gateway-token-v1", "gateway-token-v1").await;
    let rig = Rig::start(
        &store,
        "sm-401",
        "type = \"secrets_manager\"\nsecret_id = \"mcp/gateway-token\"\nrefresh_interval = \"1h\"",
    )
    .await;
    rig.assert_ok(&rig.initialize().await);
    store.rotate("gateway-token-v2", "gateway-token-v2");
    rig.assert_ok(&rig.initialize().await);
    assert_eq!(
        rig.authorizations(),
        [
            (200, bearer("gateway-token-v1")),
            (401, bearer("gateway-token-v1")),
            (200, bearer("gateway-token-v2")),
        ]
    );
    assert_eq!(store.api.calls().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_key_of_a_staged_secret_is_the_token() {
    let store = SecretStore::start(
        Kind::SecretsManager,
        r#"{"username":"proxy","token":"gateway-token-json-1"}"#,
        "gateway-token-json-1",
    )
    .await;
    let rig = Rig::start(
        &store,
        "sm-json",
        "type = \"secrets_manager\"\nsecret_id = \"mcp/gateway-token\"\nversion_stage = \"AWSCURRENT\"\njson_key = \"token\"",
    )
    .await;
    rig.assert_ok(&rig.initialize().await);
    assert_eq!(
        rig.authorizations(),
        [(200, bearer("gateway-token-json-1"))]
    );
    assert_eq!(
        store.api.calls()[0].body,
        sample("secretsmanager GetSecretValue with stage")["request"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ssm_securestring_parameter_is_decrypted_and_rotates_on_a_401() {
    let store = SecretStore::start(Kind::Ssm, "gateway-token-v1", "gateway-token-v1").await;
    let rig = Rig::start(
        &store,
        "ssm",
        &format!("type = \"ssm_parameter\"\nname = \"{PARAMETER}\""),
    )
    .await;
    rig.assert_ok(&rig.initialize().await);
    store.rotate("gateway-token-v2", "gateway-token-v2");
    rig.assert_ok(&rig.initialize().await);
    assert_eq!(
        rig.authorizations(),
        [
            (200, bearer("gateway-token-v1")),
            (401, bearer("gateway-token-v1")),
            (200, bearer("gateway-token-v2")),
        ]
    );
    store.api.assert_calls_fit_the_model(Some(KEY_ID));
    let calls = store.api.calls();
    assert_eq!(calls[0].target.as_deref(), Some("AmazonSSM.GetParameter"));
    assert!(calls
        .iter()
        .all(|c| c.body == sample("ssm GetParameter")["request"]));
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_reach_the_agent_with_the_iam_action_or_the_name_to_check() {
    let store = SecretStore::start(Kind::SecretsManager, "t", "t").await;
    store.fail_with("secretsmanager AccessDeniedException");
    let rig = Rig::start(
        &store,
        "sm-denied",
        "type = \"secrets_manager\"\nsecret_id = \"mcp/gateway-token\"",
    )
    .await;
    let answer = rig.initialize().await;
    let body = answer.json();
    assert_eq!(answer.status, 503, "{body}");
    let denied = sample("secretsmanager AccessDeniedException");
    assert_eq!(
        body["error"]["message"],
        format!(
            "mcp-vpce-proxy: route sm-denied: no gateway credential: Secrets Manager \
             GetSecretValue at {}/ answered 400 AccessDeniedException: {} (the proxy's AWS \
             identity may not call secretsmanager:GetSecretValue on the secret {SECRET_ID} (its \
             IAM policy, the resource policy, or the VPC endpoint policy))",
            store.vpce_endpoint(),
            denied["response"]["body"]["Message"].as_str().unwrap()
        )
    );
    assert!(rig.upstream.requests().is_empty());

    let ssm = SecretStore::start(Kind::Ssm, "t", "t").await;
    ssm.fail_with("ssm ParameterNotFound");
    let rig = Rig::start(
        &ssm,
        "ssm-missing",
        &format!("type = \"ssm_parameter\"\nname = \"{PARAMETER}\""),
    )
    .await;
    let answer = rig.initialize().await;
    assert_eq!(
        answer.json()["error"]["message"],
        format!(
            "mcp-vpce-proxy: route ssm-missing: no gateway credential: SSM GetParameter at {}/ \
             answered 400 ParameterNotFound (no parameter {PARAMETER} in this region: check the \
             name and the region or endpoint)",
            ssm.vpce_endpoint()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_binary_secret_is_refused_with_what_to_store_instead() {
    let store = SecretStore::start(Kind::SecretsManager, "gateway-token-bin", "x").await;
    store.store_binary();
    let rig = Rig::start(
        &store,
        "sm-binary",
        "type = \"secrets_manager\"\nsecret_id = \"mcp/gateway-token\"",
    )
    .await;
    let answer = rig.initialize().await;
    assert_eq!(
        answer.json()["error"]["message"],
        format!(
            "mcp-vpce-proxy: route sm-binary: no gateway credential: Secrets Manager \
             GetSecretValue at {}/: the secret {SECRET_ID} holds binary data (SecretBinary); \
             store the token as a secret string",
            store.vpce_endpoint()
        )
    );
}
