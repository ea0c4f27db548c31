//! AgentCore Identity: the proxy gets an M2M token through the two SigV4-signed calls on
//! the data-plane endpoint and attaches it; the loopback identity service checks each
//! call's signature with an independent implementation.

#![cfg(feature = "aws")]

use crate::common::aws::{ChildProxy, IdentityService, WORKLOAD_ACCESS_TOKEN};
use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc};
use crate::common::proxy::head;
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":"init-1","method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"identity-test","version":"1"}}}"#;
const KEY_ID: &str = "AKIAIDENTITYTEST0001";
const SECRET: &str = "identity-secret-key-wJalrXUtnFEMIK7MDENG";

async fn setup(identity: &IdentityService, secret: &str) -> (Upstream, DnsServer, ChildProxy) {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "identity"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "agentcore_identity"
workload_name = "proxy-workload"
provider_name = "gateway-cognito"
scopes = ["gateway/invoke"]
endpoint = "{endpoint}"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        endpoint = identity.endpoint(),
    );
    let proxy = ChildProxy::start(
        &toml,
        &[
            ("AWS_ACCESS_KEY_ID", KEY_ID.to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ],
        "info",
    )
    .await;
    (upstream, dns, proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_m2m_token_from_agentcore_identity_reaches_the_gateway() {
    let identity = IdentityService::start(SECRET, "us-east-1", 3600).await;
    let (upstream, _dns, proxy) = setup(&identity, SECRET).await;
    for _ in 0..3 {
        let answer = post_rpc(&proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
    }
    let tokens = identity.tokens();
    assert_eq!(tokens.len(), 1, "cached: one token for three requests");
    let expected = format!("Bearer {}", tokens[0]);
    assert!(upstream
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some(expected.as_str())));

    let calls = identity.calls();
    let paths: Vec<&str> = calls.iter().map(|c| c.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/identities/GetWorkloadAccessToken",
            "/identities/oauth2/token"
        ]
    );
    assert_eq!(calls[0].body, json!({ "workloadName": "proxy-workload" }));
    assert_eq!(
        calls[1].body,
        json!({
            "workloadIdentityToken": WORKLOAD_ACCESS_TOKEN,
            "resourceCredentialProviderName": "gateway-cognito",
            "scopes": ["gateway/invoke"],
            "oauth2Flow": "M2M",
        })
    );
    for call in &calls {
        let signed = call.signed.as_ref().unwrap();
        assert_eq!(signed.access_key_id, KEY_ID);
        assert_eq!(signed.region, "us-east-1");
        assert_eq!(signed.service, "bedrock-agentcore");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refused_signature_is_a_503_that_names_the_call() {
    let identity = IdentityService::start(SECRET, "us-east-1", 3600).await;
    let (upstream, _dns, proxy) = setup(&identity, "a-different-secret-key-000000000000").await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        message.starts_with(&format!(
            "mcp-vpce-proxy: route identity: no gateway credential: AgentCore Identity {}/identities/GetWorkloadAccessToken answered 403 InvalidSignatureException: signature mismatch",
            identity.endpoint()
        )),
        "{message}"
    );
    assert_rpc_error(&answer, 503, -31005, json!("init-1"), &message);
    assert!(upstream.requests().is_empty());
}
