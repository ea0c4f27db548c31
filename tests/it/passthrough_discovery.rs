//! Passthrough routes for MCP OAuth clients: the discovery documents and challenges a
//! per-user gateway sends name the sidecar's URL, so the agent's own OAuth client (which
//! checks `resource` against the URL it connected to, RFC 9728) works unchanged.

use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, send};
use crate::common::oauth_upstream::{
    OAuthGateway, AUTHORIZATION_SERVER, SCOPE_POOR_TOKEN, USER_TOKEN,
};
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::{ENDPOINT_HOST, GATEWAY_HOST};

struct Fixture {
    gateway: OAuthGateway,
    _dns: DnsServer,
    proxy: Proxy,
}

/// One passthrough route at `local_path` and one route holding its own credential.
async fn fixture(local_path: &str) -> Fixture {
    let gateway = OAuthGateway::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let route = |path: &str, credential: &str| {
        format!(
            "[[route]]\npath = \"{path}\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\ncredential = {credential}\n",
            gateway.port(),
            gateway.pki.ca_file.display()
        )
    };
    let proxy = Proxy::start(&format!(
        "{}\n{}\n{}",
        head(&dns),
        route(local_path, "{ type = \"passthrough\" }"),
        route("/held/mcp", "{ type = \"none\" }")
    ))
    .await;
    Fixture {
        gateway,
        _dns: dns,
        proxy,
    }
}

#[tokio::test]
async fn the_401_challenge_points_at_the_sidecars_metadata() {
    let f = fixture("/mcp").await;
    let answer = post_rpc(
        &f.proxy.url(),
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}"#,
    )
    .await;
    assert_eq!(answer.status, 401);
    assert_eq!(
        answer.headers["www-authenticate"],
        format!(
            r#"Bearer resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp", scope="tools""#,
            f.proxy.addr
        )
    );
}

#[tokio::test]
async fn protected_resource_metadata_names_the_sidecars_resource_url() {
    let f = fixture("/mcp").await;
    for path in [
        "/.well-known/oauth-protected-resource/mcp",
        "/.well-known/oauth-protected-resource",
    ] {
        let answer = send("GET", &f.proxy.url_for(path), &[], "").await;
        assert_eq!(answer.status, 200, "{path}: {}", answer.body);
        let doc = answer.json();
        assert_eq!(
            doc["resource"],
            format!("http://{}/mcp", f.proxy.addr),
            "{path}"
        );
        // Everything else is the gateway's, untouched.
        assert_eq!(doc["authorization_servers"][0], AUTHORIZATION_SERVER);
        assert_eq!(
            doc["scopes_supported"],
            serde_json::json!(["tools", "admin"])
        );
        assert_eq!(
            answer.headers["content-length"],
            answer.body.len().to_string()
        );
    }
    let paths: Vec<String> = f.gateway.seen().into_iter().map(|s| s.path).collect();
    assert_eq!(
        paths,
        [
            "/.well-known/oauth-protected-resource/mcp",
            "/.well-known/oauth-protected-resource"
        ]
    );
}

#[tokio::test]
async fn a_local_path_other_than_the_gateways_is_mapped_both_ways() {
    let f = fixture("/agent/mcp").await;
    let answer = send(
        "GET",
        &f.proxy
            .url_for("/.well-known/oauth-protected-resource/agent/mcp"),
        &[],
        "",
    )
    .await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(
        answer.json()["resource"],
        format!("http://{}/agent/mcp", f.proxy.addr)
    );
    assert_eq!(
        f.gateway.seen()[0].path,
        "/.well-known/oauth-protected-resource/mcp"
    );
    let challenge = post_rpc(
        &f.proxy.url_for("/agent/mcp"),
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    assert!(challenge.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .contains(&format!(
            r#"resource_metadata="http://{}/.well-known/oauth-protected-resource/agent/mcp""#,
            f.proxy.addr
        )));
}

#[tokio::test]
async fn the_users_token_reaches_the_gateway_and_step_up_challenges_are_rewritten() {
    let f = fixture("/mcp").await;
    let ok = send(
        "POST",
        &f.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {USER_TOKEN}")),
        ],
        r#"{"jsonrpc":"2.0","id":7,"method":"ping"}"#,
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert_eq!(ok.json()["id"], 7);
    assert_eq!(
        f.gateway.seen()[0].authorization.as_deref(),
        Some(format!("Bearer {USER_TOKEN}").as_str())
    );

    let step_up = send(
        "POST",
        &f.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {SCOPE_POOR_TOKEN}")),
        ],
        r#"{"jsonrpc":"2.0","id":8,"method":"tools/call","params":{"name":"admin_tool"}}"#,
    )
    .await;
    assert_eq!(step_up.status, 403);
    assert_eq!(
        step_up.headers["www-authenticate"],
        format!(
            r#"Bearer error="insufficient_scope", scope="tools admin", resource_metadata="http://{}/.well-known/oauth-protected-resource/mcp""#,
            f.proxy.addr
        )
    );
}

#[tokio::test]
async fn routes_holding_a_credential_have_no_discovery_and_never_forward_the_callers_token() {
    let f = fixture("/mcp").await;
    let answer = send(
        "GET",
        &f.proxy
            .url_for("/.well-known/oauth-protected-resource/held/mcp"),
        &[],
        "",
    )
    .await;
    assert_eq!(answer.status, 404);
    assert_eq!(
        answer.body,
        "mcp-vpce-proxy: no route for path /.well-known/oauth-protected-resource/held/mcp\n"
    );
    send(
        "POST",
        &f.proxy.url_for("/held/mcp"),
        &[
            ("content-type", "application/json"),
            ("authorization", &format!("Bearer {USER_TOKEN}")),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
    )
    .await;
    let seen = f.gateway.seen();
    assert_eq!(seen.len(), 1, "only the POST reached the gateway");
    assert_eq!(seen[0].authorization, None);
}
