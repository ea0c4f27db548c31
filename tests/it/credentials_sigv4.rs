//! SigV4 (the AWS_IAM inbound authorizer): the signer passes the AWS test-suite vectors,
//! and a real forwarded request carries a signature that an independent implementation
//! accepts, with credentials from the environment, an ECS container-credentials endpoint
//! and IMDSv2, refreshed before they expire.
//!
//! Tests that need AWS environment variables run the proxy as a child process, so that
//! no variable leaks into another test of this binary.

#![cfg(feature = "aws")]

use std::path::Path;
use std::time::Duration;

use crate::common::aws::{credentials, verify_sigv4, ChildProxy, CredentialKind, CredentialServer};
use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, send};
use crate::common::proxy::{head, Proxy, OUTSIDE};
use crate::common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use aws_credential_types::Credentials;
use http::{HeaderMap, HeaderName, HeaderValue, Request};
use mcp_vpce_proxy::auth::{sign_request, SigningInput};
use serde_json::Value;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"sigv4-test","version":"1"}}}"#;

// ---- The test-suite vectors --------------------------------------------------------

struct Vector {
    name: String,
    context: Value,
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: String,
    expected: Vec<(String, String)>,
}

/// `METHOD PATH HTTP/1.1`, `Name:value` lines, a blank line, the body.
fn parse_http(text: &str) -> (String, String, Vec<(String, String)>, String) {
    let (head, body) = text.split_once("\n\n").unwrap_or((text, ""));
    let mut lines = head.lines();
    let request_line: Vec<&str> = lines.next().unwrap().split(' ').collect();
    let headers = lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (k, v) = l.split_once(':').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    (
        request_line[0].to_string(),
        request_line[1..request_line.len() - 1].join(" "),
        headers,
        body.to_string(),
    )
}

fn vectors() -> Vec<Vector> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/sigv4");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(root).unwrap() {
        let dir = entry.unwrap().path();
        if !dir.is_dir() {
            continue;
        }
        let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
        let (method, path, headers, body) = parse_http(&read("request.txt"));
        let (_, _, expected, _) = parse_http(&read("header-signed-request.txt"));
        out.push(Vector {
            name: dir.file_name().unwrap().to_string_lossy().into_owned(),
            context: serde_json::from_str(&read("context.json")).unwrap(),
            method,
            path,
            headers,
            body,
            expected,
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

fn header_map(pairs: &[(String, String)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (k, v) in pairs {
        map.append(
            HeaderName::from_bytes(k.to_ascii_lowercase().as_bytes()).unwrap(),
            HeaderValue::from_str(v).unwrap(),
        );
    }
    map
}

#[test]
fn the_signer_passes_the_aws_sigv4_test_suite() {
    let vectors = vectors();
    assert!(vectors.len() >= 20, "vectors: {}", vectors.len());
    for v in &vectors {
        let c = &v.context;
        let host = &v.headers.iter().find(|(k, _)| k == "Host").unwrap().1;
        let (mut parts, ()) = Request::builder()
            .method(v.method.as_str())
            .uri(format!("https://{host}{}", v.path))
            .body(())
            .unwrap()
            .into_parts();
        parts.headers = header_map(&v.headers);
        let credentials = Credentials::new(
            c["credentials"]["access_key_id"].as_str().unwrap(),
            c["credentials"]["secret_access_key"].as_str().unwrap(),
            c["credentials"]["token"].as_str().map(str::to_string),
            None,
            "vectors",
        );
        let time = humantime::parse_rfc3339(c["timestamp"].as_str().unwrap()).unwrap();
        sign_request(
            &mut parts,
            v.body.as_bytes(),
            &credentials,
            &SigningInput {
                region: c["region"].as_str().unwrap(),
                service: c["service"].as_str().unwrap(),
                time,
                content_sha256_header: c["sign_body"] == true,
            },
        )
        .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        for name in [
            "Authorization",
            "X-Amz-Date",
            "X-Amz-Security-Token",
            "x-amz-content-sha256",
        ] {
            let expected = v
                .expected
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str());
            let got = parts
                .headers
                .get(name.to_ascii_lowercase().as_str())
                .map(|h| h.to_str().unwrap());
            assert_eq!(got, expected, "{}: {name}", v.name);
        }
    }
}

#[test]
fn the_independent_verifier_accepts_every_vector_and_refuses_a_changed_body() {
    for v in vectors() {
        let secret = v.context["credentials"]["secret_access_key"]
            .as_str()
            .unwrap();
        let headers = header_map(&v.expected);
        let signed = verify_sigv4(&v.method, &v.path, &headers, v.body.as_bytes(), secret)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(signed.access_key_id, "AKIDEXAMPLE");
        assert_eq!(
            (signed.region.as_str(), signed.service.as_str()),
            ("us-east-1", "service")
        );
        if v.method == "POST" && !headers.contains_key("x-amz-content-sha256") {
            assert!(verify_sigv4(&v.method, &v.path, &headers, b"tampered", secret).is_err());
        }
    }
}

// ---- Real forwarded requests ---------------------------------------------------------

/// Upstream recording bodies, DNS with private DNS off (the gateway name resolves
/// "outside", the route dials the VPC endpoint name), and the TOML of a sigv4 route.
async fn gateway() -> (Upstream, DnsServer, String) {
    let upstream = Upstream::start_with(UpstreamOptions {
        record_bodies: true,
        ..UpstreamOptions::default()
    })
    .await;
    let dns = DnsServer::start(&[
        (ENDPOINT_HOST, "127.0.0.1".parse().unwrap()),
        (GATEWAY_HOST, OUTSIDE.parse().unwrap()),
    ])
    .await;
    let toml = format!(
        r#"{head}
[[route]]
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
credential = {{ type = "sigv4" }}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    (upstream, dns, toml)
}

/// Checks every request the upstream saw: signed for bedrock-agentcore in the gateway's
/// region over the gateway's Host and the body; returns the access key ids used.
fn verify_all(upstream: &Upstream, secret_of: impl Fn(&str) -> String) -> Vec<String> {
    let seen = upstream.requests();
    assert!(!seen.is_empty());
    seen.iter()
        .map(|r| {
            assert_eq!(r.status, 200);
            assert_eq!(
                r.host.as_deref(),
                Some(format!("{GATEWAY_HOST}:{}", upstream.port()).as_str())
            );
            let auth = r.authorization.clone().unwrap_or_default();
            let key_id = auth
                .split("Credential=")
                .nth(1)
                .and_then(|c| c.split('/').next())
                .unwrap_or_default()
                .to_string();
            let signed = verify_sigv4(
                r.method.as_str(),
                &r.path,
                &r.headers,
                &r.body,
                &secret_of(&key_id),
            )
            .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(signed.region, "us-east-1");
            assert_eq!(signed.service, "bedrock-agentcore");
            assert!(signed.signed_headers.contains(&"host".to_string()));
            key_id
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_signed_with_credentials_from_the_environment() {
    let (upstream, _dns, toml) = gateway().await;
    let secret = "env-secret-key-wJalrXUtnFEMIK7MDENGbPxRfiCY";
    let proxy = ChildProxy::start(
        &toml,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENVTEST000000001".to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ],
        "info",
    )
    .await;
    for _ in 0..3 {
        let answer = post_rpc(&proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
    }
    let keys = verify_all(&upstream, |_| secret.to_string());
    assert_eq!(keys, ["AKIAENVTEST000000001"; 3]);
    // Long-lived keys carry no session token.
    assert!(upstream.requests()[0]
        .headers
        .get("x-amz-security-token")
        .is_none());
}

/// Temporary credentials from `kind`, living 6 s: the proxy refreshes them from 3 s on,
/// and every request is signed with valid ones.
async fn temporary_credentials_are_picked_up_and_refreshed(kind: CredentialKind) {
    let (upstream, _dns, toml) = gateway().await;
    let server = CredentialServer::start(kind, Duration::from_secs(6)).await;
    let proxy = ChildProxy::start(&toml, &[server.env()], "info").await;
    let mut rounds = 0;
    while server.issued() < 2 || upstream.requests().len() < 2 {
        rounds += 1;
        assert!(
            rounds < 400,
            "no refresh; issued {}\n{}",
            server.issued(),
            proxy.logs()
        );
        let answer = post_rpc(&proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let name = server.kind_name();
    let secret_of = |key_id: &str| {
        (1..=server.issued())
            .map(|n| credentials(name, n))
            .find(|(id, _, _)| id == key_id)
            .map(|(_, secret, _)| secret)
            .unwrap_or_else(|| panic!("unknown key {key_id}"))
    };
    let keys = verify_all(&upstream, secret_of);
    assert_eq!(keys.first(), Some(&credentials(name, 1).0));
    assert_eq!(keys.last(), Some(&credentials(name, server.issued()).0));
    let last = upstream.requests().last().unwrap().clone();
    assert_eq!(
        last.headers["x-amz-security-token"],
        credentials(name, server.issued()).2.as_str()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn ecs_container_credentials_are_picked_up_and_refreshed() {
    temporary_credentials_are_picked_up_and_refreshed(CredentialKind::Ecs).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn imds_credentials_are_picked_up_and_refreshed() {
    temporary_credentials_are_picked_up_and_refreshed(CredentialKind::Imds).await;
}

#[tokio::test]
async fn a_gateway_host_without_a_region_needs_an_explicit_one() {
    let dns = DnsServer::start(&[]).await;
    let toml = format!(
        "{}\n[[route]]\ngateway = \"https://gw.example.com/mcp\"\ncredential = {{ type = \"sigv4\" }}\n",
        head(&dns)
    );
    let error = Proxy::try_start(&toml).await.err().unwrap();
    assert_eq!(
        error,
        "route[0]: cannot tell the signing region from the gateway host gw.example.com \
         (expected <id>.gateway.bedrock-agentcore.<region>.amazonaws.com); set `region`"
    );
    let with_region = toml.replace(
        "{ type = \"sigv4\" }",
        "{ type = \"sigv4\", region = \"eu-central-1\" }",
    );
    let proxy = Proxy::try_start(&with_region).await;
    assert!(proxy.is_ok(), "{:?}", proxy.err());
}

// ---- Trace context and the query ----------------------------------------------------

const AGENT_TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

async fn sigv4_proxy(toml: &str, secret: &str) -> ChildProxy {
    ChildProxy::start(
        toml,
        &[
            ("AWS_ACCESS_KEY_ID", "AKIAENVTEST000000001".to_string()),
            ("AWS_SECRET_ACCESS_KEY", secret.to_string()),
        ],
        "info",
    )
    .await
}

/// The AWS SDKs leave W3C Trace Context and Baggage out of the signature, since
/// whatever relays the request may rewrite them; so does the proxy: the gateway
/// accepts the request whatever `traceparent` reaches it.
#[tokio::test(flavor = "multi_thread")]
async fn a_sigv4_route_still_verifies_with_traceparent_changed_after_signing() {
    let (upstream, _dns, toml) = gateway().await;
    let secret = "env-secret-key-wJalrXUtnFEMIK7MDENGbPxRfiCY";
    let proxy = sigv4_proxy(&toml, secret).await;
    let answer = send(
        "POST",
        &proxy.url(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("traceparent", AGENT_TRACEPARENT),
            ("tracestate", "rojo=00f067aa0ba902b7"),
            ("baggage", "userId=alice"),
        ],
        INITIALIZE,
    )
    .await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
    verify_all(&upstream, |_| secret.to_string());
    let seen = &upstream.requests()[0];
    let signed = verify_sigv4(
        seen.method.as_str(),
        &seen.path,
        &seen.headers,
        &seen.body,
        secret,
    )
    .unwrap();
    for header in ["traceparent", "tracestate", "baggage"] {
        assert!(
            seen.headers.contains_key(header),
            "{header} reaches the gateway"
        );
        assert!(
            !signed.signed_headers.iter().any(|h| h == header),
            "{header} is not signed"
        );
    }
    // Anything on the way rewrites the trace context: the signature still holds.
    let mut rewritten = seen.headers.clone();
    rewritten.insert(
        "traceparent",
        HeaderValue::from_static("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"),
    );
    rewritten.insert("tracestate", HeaderValue::from_static("congo=t61rcWkgMzE"));
    rewritten.remove("baggage");
    verify_sigv4(
        seen.method.as_str(),
        &seen.path,
        &rewritten,
        &seen.body,
        secret,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    // A signed header changed after signing is still caught.
    rewritten.insert("content-type", HeaderValue::from_static("text/plain"));
    assert!(verify_sigv4(
        seen.method.as_str(),
        &seen.path,
        &rewritten,
        &seen.body,
        secret
    )
    .is_err());
}

/// A bare `+` in a query is a space to some readers and a plus to others; the proxy
/// forwards it as `%2B`, which every reader (and the signer) takes for a plus.
#[tokio::test(flavor = "multi_thread")]
async fn a_plus_in_the_agents_query_is_forwarded_and_signed_as_percent_2b() {
    let (upstream, _dns, toml) = gateway().await;
    let secret = "env-secret-key-wJalrXUtnFEMIK7MDENGbPxRfiCY";
    let proxy = sigv4_proxy(&toml, secret).await;
    let answer = post_rpc(&format!("{}?q=a+b&sort=c%20d", proxy.url()), INITIALIZE).await;
    assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.logs());
    assert_eq!(upstream.requests()[0].path, "/mcp?q=a%2Bb&sort=c%20d");
    verify_all(&upstream, |_| secret.to_string());
}
