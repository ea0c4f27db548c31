//! `mcp-vpce-proxy doctor` against the fixtures: every check passes on a working route,
//! and each kind of failure (an address outside the VPC, NXDOMAIN, a refused connection,
//! a certificate for another name, a credential that cannot be had, an MCP error) gets
//! its own ✗ line with a cause and a fix, and a non-zero exit.

use std::net::SocketAddr;
use std::process::{Command, Output};

use crate::common::dns::DnsServer;
use crate::common::proxy::{head, GATEWAY_TOKEN, OUTSIDE};
use crate::common::relay::Relay;
use crate::common::upstream::{Upstream, UpstreamOptions, ENDPOINT_HOST, GATEWAY_HOST};
use serde_json::Value;

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The line of the report that starts with `start` (after the indentation).
    fn line(&self, start: &str) -> &str {
        self.stdout
            .lines()
            .find(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{}", self.stdout))
    }

    /// The `cause:` and `fix:` lines right under the line that starts with `start`.
    fn cause_and_fix(&self, start: &str) -> (&str, &str) {
        let lines: Vec<&str> = self.stdout.lines().collect();
        let at = lines
            .iter()
            .position(|l| l.trim_start().starts_with(start))
            .unwrap_or_else(|| panic!("no line starting with {start:?} in:\n{}", self.stdout));
        let cause = lines[at + 1]
            .trim_start()
            .strip_prefix("cause: ")
            .unwrap_or_else(|| panic!("no cause under {start:?}:\n{}", self.stdout));
        let fix = lines[at + 2]
            .trim_start()
            .strip_prefix("fix:   ")
            .unwrap_or_else(|| panic!("no fix under {start:?}:\n{}", self.stdout));
        (cause, fix)
    }
}

/// Runs `doctor --config <toml>` as an operator would, without the system resolver (it
/// would send the test's AWS-like names to the machine's real name servers).
async fn doctor(toml: &str, extra: &[&str]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MCP_VPCE_PROXY_") {
            cmd.env_remove(key);
        }
    }
    cmd.args(["doctor", "--no-system-resolver", "--config"])
        .arg(&config)
        .args(extra);
    // The fixtures serve on this runtime while the child runs.
    let Output {
        status,
        stdout,
        stderr,
    } = tokio::task::spawn_blocking(move || cmd.output().expect("the binary runs"))
        .await
        .unwrap();
    drop(dir);
    Run {
        ok: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// A route to the upstream through the VPC endpoint name (private DNS off).
fn endpoint_route(dns: &DnsServer, upstream: &Upstream, credential: &str, path: &str) -> String {
    format!(
        r#"{head}
[[route]]
name = "weather"
gateway = "https://{GATEWAY_HOST}:{port}{path}"
endpoint = "{ENDPOINT_HOST}"
ca_file = "{ca}"
credential = {credential}
"#,
        head = head(dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    )
}

/// A route that dials the gateway's own name (private DNS expected on).
fn gateway_route(dns: &DnsServer, port: u16, ca: &std::path::Path) -> String {
    format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nca_file = \"{}\"\n",
        head(dns),
        ca.display()
    )
}

async fn standard_dns() -> DnsServer {
    DnsServer::start(&[
        (ENDPOINT_HOST, "127.0.0.1".parse().unwrap()),
        (GATEWAY_HOST, OUTSIDE.parse().unwrap()),
    ])
    .await
}

fn token_file(dir: &tempfile::TempDir) -> String {
    let path = dir.path().join("token");
    std::fs::write(&path, GATEWAY_TOKEN).unwrap();
    format!("{{ type = \"file\", path = \"{}\" }}", path.display())
}

#[tokio::test]
async fn a_working_route_passes_every_check() {
    let upstream = Upstream::start().await;
    let dns = standard_dns().await;
    let dir = tempfile::tempdir().unwrap();
    let toml = endpoint_route(&dns, &upstream, &token_file(&dir), "/mcp");
    let run = doctor(&toml, &[]).await;
    assert!(run.ok, "{}\n{}", run.stdout, run.stderr);
    let port = upstream.port();
    let dns_addr = dns.addr;
    assert!(
        run.stdout.starts_with(&format!(
            "route weather (/mcp -> https://{GATEWAY_HOST}:{port}/mcp)\n"
        )),
        "{}",
        run.stdout
    );
    assert_eq!(
        run.line("✓ dns"),
        format!("  ✓ dns        {ENDPOINT_HOST} via {dns_addr} -> 127.0.0.1 (in-VPC)")
    );
    assert_eq!(
        run.line("· dns"),
        format!(
            "  · dns        {GATEWAY_HOST} via {dns_addr} -> 127.0.0.2 (outside): expected with \
             private DNS off; the proxy dials the endpoint and sends this name only in TLS SNI and Host"
        )
    );
    assert!(run
        .line("✓ tcp")
        .starts_with(&format!("  ✓ tcp        127.0.0.1:{port} connected in ")));
    let tls = run.line("✓ tls");
    assert!(
        tls.starts_with(&format!(
            "  ✓ tls        127.0.0.1:{port} SNI {GATEWAY_HOST}: TLSv1.3, ALPN h2, certificate for \
             {GATEWAY_HOST}, issued by mcp-vpce-proxy test CA, valid until "
        )),
        "{tls}"
    );
    // Only a fingerprint of what was attached, never the token.
    let fingerprint =
        mcp_vpce_proxy::auth::secret::fingerprint(format!("Bearer {GATEWAY_TOKEN}").as_bytes());
    assert!(run.line("✓ credential").ends_with(&format!(
        "obtained; attaches authorization (Authorization {fingerprint})"
    )));
    assert!(!run.stdout.contains(GATEWAY_TOKEN) && !run.stderr.contains(GATEWAY_TOKEN));
    let init = run.line("✓ mcp        initialize");
    assert!(
        init.starts_with("  ✓ mcp        initialize: protocol 2025-"),
        "{init}"
    );
    assert!(init.ends_with(", session id present"), "{init}");
    let list = run.line("✓ mcp        tools/list");
    assert!(
        list.starts_with("  ✓ mcp        tools/list: ")
            && list.contains(" tools (DemoTarget___echo, "),
        "{list}"
    );
    assert!(
        run.stdout
            .ends_with("all checks passed: 6 passed, 0 failed\n"),
        "{}",
        run.stdout
    );

    // It went through the route as the proxy would: gateway SNI and Host, the token, and
    // the session was closed afterwards.
    let seen = upstream.requests();
    assert!(seen.iter().all(|r| r.sni.as_deref() == Some(GATEWAY_HOST)));
    assert!(seen
        .iter()
        .all(|r| r.authorization.as_deref() == Some(&format!("Bearer {GATEWAY_TOKEN}") as &str)));
    let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
    assert_eq!(methods, ["POST", "POST", "POST", "DELETE"]);

    let run = doctor(&toml, &["--json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let report: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    assert_eq!(report["ok"], true);
    assert_eq!(report["failed"], 0);
    let checks = report["routes"][0]["checks"].as_array().unwrap();
    let tools = &checks
        .iter()
        .find(|c| c["details"]["tool_count"].is_number())
        .unwrap()["details"];
    let names: Vec<&str> = tools["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap())
        .collect();
    assert_eq!(tools["tool_count"], names.len());
    for tool in [
        "DemoTarget___echo",
        "DemoTarget___get_weather",
        "DemoTarget___slow_progress",
    ] {
        assert!(names.contains(&tool), "{names:?}");
    }
    assert!(
        list.contains(&format!("tools/list: {} tools", names.len())),
        "{list}"
    );
    let tls = checks.iter().find(|c| c["step"] == "tls").unwrap();
    assert_eq!(tls["details"]["alpn"], "h2");
    assert_eq!(tls["details"]["chain"][0]["names"][0], GATEWAY_HOST);
}

#[tokio::test]
async fn a_gateway_name_outside_the_vpc_says_private_dns_is_off() {
    let upstream = Upstream::start().await;
    // A relay where the "public" address points: any dial would be counted.
    let outside: SocketAddr = format!("{OUTSIDE}:{}", upstream.port()).parse().unwrap();
    let relay = Relay::start(outside, upstream.addr).await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, OUTSIDE.parse().unwrap())]).await;
    let run = doctor(
        &gateway_route(&dns, upstream.port(), upstream.ca_file()),
        &[],
    )
    .await;
    assert!(!run.ok);
    assert_eq!(
        run.line("✗ dns"),
        format!(
            "  ✗ dns        {GATEWAY_HOST} via {} resolves to 127.0.0.2, outside the in-VPC ranges (127.0.0.1/32)",
            dns.addr
        )
    );
    let (cause, fix) = run.cause_and_fix("✗ dns");
    assert_eq!(
        cause,
        "gateway name resolves to 127.0.0.2: private DNS is off for this endpoint or this VPC has \
         none, so traffic would leave PrivateLink"
    );
    assert!(
        fix.starts_with(
            "set endpoint = \"vpce-….gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com\" on this route"
        ),
        "{fix}"
    );
    assert_eq!(
        run.line("- tcp"),
        "  - tcp        no address the proxy may dial (see dns)"
    );
    assert_eq!(
        run.line("- mcp"),
        "  - mcp        needs a TLS connection to the gateway"
    );
    assert!(
        run.stderr.contains("doctor: 1 check failed"),
        "{}",
        run.stderr
    );
    assert_eq!(relay.connections(), 0);
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn nxdomain_for_the_gateway_names_the_data_plane_endpoint_pitfall() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[]).await;
    let run = doctor(
        &gateway_route(&dns, upstream.port(), upstream.ca_file()),
        &[],
    )
    .await;
    assert!(!run.ok);
    assert_eq!(
        run.line("✗ dns"),
        format!(
            "  ✗ dns        {GATEWAY_HOST} via {}: NXDOMAIN (no A/AAAA records)",
            dns.addr
        )
    );
    let (cause, fix) = run.cause_and_fix("✗ dns");
    assert!(cause.contains(
        "interface endpoint for the AgentCore data plane (com.amazonaws.us-east-1.bedrock-agentcore) with private DNS"
    ), "{cause}");
    assert!(
        cause.contains("no gateway endpoint (com.amazonaws.us-east-1.bedrock-agentcore.gateway)"),
        "{cause}"
    );
    assert!(fix.starts_with(
        "create an interface endpoint for com.amazonaws.us-east-1.bedrock-agentcore.gateway with private DNS enabled"
    ), "{fix}");
    assert_eq!(upstream.connections(), 0);
}

#[tokio::test]
async fn a_refused_connection_names_the_address_and_the_port() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dns = standard_dns().await;
    let pki = crate::common::certs::issue(&[GATEWAY_HOST]);
    let toml = format!(
        "{}\n[[route]]\ngateway = \"https://{GATEWAY_HOST}:{port}/mcp\"\nendpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n",
        head(&dns),
        pki.ca_file.display()
    );
    let run = doctor(&toml, &[]).await;
    assert!(!run.ok);
    assert!(run.line("✓ dns").contains("-> 127.0.0.1 (in-VPC)"));
    assert_eq!(
        run.line("✗ tcp"),
        format!("  ✗ tcp        127.0.0.1:{port}: connection refused")
    );
    let (cause, fix) = run.cause_and_fix("✗ tcp");
    assert!(cause.starts_with(&format!(
        "nothing accepts connections on port {port} at this address"
    )));
    assert!(fix.starts_with("gateway URLs use port 443"), "{fix}");
    assert_eq!(
        run.line("- tls"),
        "  - tls        no TCP connection to shake hands on"
    );
    // The credential is diagnosed all the same.
    assert_eq!(
        run.line("✓ credential"),
        "  ✓ credential none: nothing to attach"
    );
}

#[tokio::test]
async fn a_certificate_for_another_name_is_named() {
    let upstream = Upstream::start_with(UpstreamOptions {
        cert_names: vec!["not-the-gateway.example.com".into()],
        ..UpstreamOptions::default()
    })
    .await;
    let dns = standard_dns().await;
    let run = doctor(
        &endpoint_route(&dns, &upstream, "{ type = \"none\" }", "/mcp"),
        &[],
    )
    .await;
    assert!(!run.ok);
    let tls = run.line("✗ tls");
    assert!(
        tls.starts_with(&format!(
            "  ✗ tls        127.0.0.1:{} SNI {GATEWAY_HOST}: invalid peer certificate: ",
            upstream.port()
        )),
        "{tls}"
    );
    assert!(
        tls.contains("; presented certificate for not-the-gateway.example.com, issued by mcp-vpce-proxy test CA"),
        "{tls}"
    );
    let (cause, fix) = run.cause_and_fix("✗ tls");
    assert!(cause.starts_with(&format!(
        "the certificate is for not-the-gateway.example.com, not for {GATEWAY_HOST}: this address is not the gateway's endpoint"
    )), "{cause}");
    assert!(
        fix.starts_with("set endpoint to the DNS name of a gateway endpoint"),
        "{fix}"
    );
    assert_eq!(
        run.line("- mcp"),
        "  - mcp        needs a TLS connection to the gateway"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn a_credential_that_cannot_be_had_fails_its_own_line_only() {
    let upstream = Upstream::start().await;
    let dns = standard_dns().await;
    let toml = endpoint_route(
        &dns,
        &upstream,
        "{ type = \"static\", env = \"DOCTOR_TEST_SURELY_UNSET_TOKEN\" }",
        "/mcp",
    );
    let run = doctor(&toml, &[]).await;
    assert!(!run.ok);
    // The network path is diagnosed although `run` would refuse this configuration.
    assert!(run.line("✓ tcp").contains("connected in"));
    assert!(run.line("✓ tls").contains("ALPN h2"));
    assert_eq!(
        run.line("✗ credential"),
        "  ✗ credential static token from env DOCTOR_TEST_SURELY_UNSET_TOKEN: environment variable DOCTOR_TEST_SURELY_UNSET_TOKEN is not set (or not UTF-8)"
    );
    let (cause, fix) = run.cause_and_fix("✗ credential");
    assert_eq!(
        cause,
        "the proxy cannot read its credential source, so no request would carry one"
    );
    assert!(fix.starts_with("set DOCTOR_TEST_SURELY_UNSET_TOKEN in the proxy's environment"));
    assert_eq!(
        run.line("- mcp"),
        "  - mcp        needs the route's credential"
    );
    assert!(upstream.requests().is_empty());
}

#[tokio::test]
async fn an_mcp_error_is_reported_with_the_gateways_answer() {
    let upstream = Upstream::start().await;
    let dns = standard_dns().await;
    let run = doctor(
        &endpoint_route(&dns, &upstream, "{ type = \"none\" }", "/wrong"),
        &[],
    )
    .await;
    assert!(!run.ok);
    assert!(run.line("✓ tls").contains("ALPN h2"));
    assert_eq!(
        run.line("✗ mcp"),
        "  ✗ mcp        initialize: HTTP 404: not found"
    );
    let (cause, fix) = run.cause_and_fix("✗ mcp");
    assert_eq!(cause, "the gateway has no MCP endpoint at /wrong");
    assert_eq!(
        fix,
        "use the gateway URL exactly as AgentCore shows it (it ends in /mcp)"
    );
    assert!(
        run.stdout.ends_with("doctor: 4 passed, 1 failed\n"),
        "{}",
        run.stdout
    );
}

#[tokio::test]
async fn an_unusable_configuration_is_one_failed_check() {
    let run = doctor(
        "[[route]]\ngateway = \"http://gw.example.com/mcp\"\n",
        &["--json"],
    )
    .await;
    assert!(!run.ok);
    let report: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(report["ok"], false);
    assert_eq!(report["global"][0]["step"], "config");
    assert!(report["global"][0]["summary"].as_str().unwrap().ends_with(
        "route \"mcp\" (route[0]).gateway: must be an https:// URL, got scheme \"http\""
    ));
}

/// Issue 17: an OAuth 2.0 token URL that does not resolve or connect (what a Cognito
/// user-pool domain always is inside a VPC without egress) gets the PrivateLink cause and
/// the three ways out. The token URL here is a closed loopback port (no DNS involved).
#[tokio::test]
async fn an_unreachable_token_url_names_the_cognito_privatelink_limit_and_the_ways_out() {
    let upstream = Upstream::start().await;
    let dns = standard_dns().await;
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let token_url = format!("https://{}/oauth2/token", closed.local_addr().unwrap());
    drop(closed);
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("client-secret");
    std::fs::write(&secret, "doctor-client-secret").unwrap();
    let credential = format!(
        "{{ type = \"oauth2\", token_url = \"{token_url}\", client_id = \"proxy\", \
         client_secret_file = \"{}\" }}",
        secret.display()
    );
    let run = doctor(&endpoint_route(&dns, &upstream, &credential, "/mcp"), &[]).await;
    assert!(!run.ok);
    let host = "127.0.0.1";
    let failed = run.line("✗ credential");
    assert!(
        failed.contains(&format!(
            ": token endpoint {token_url}: client error (Connect): "
        )) && failed.contains("Connection refused"),
        "{failed}"
    );
    let (cause, fix) = run.cause_and_fix("✗ credential");
    assert_eq!(
        cause,
        format!(
            "the token endpoint {host} does not resolve or accept connections from here. Cognito \
             user-pool domains / the token endpoint are not reachable over PrivateLink: AWS does \
             not serve the OAuth 2.0 client-credentials flow (nor any user-pool domain) through \
             the cognito-idp interface endpoint, so inside a VPC without internet egress this \
             URL stays out of reach"
        )
    );
    assert_eq!(
        fix,
        "three ways out: (1) give the token request a route out: a NAT gateway, or an HTTP proxy \
         in HTTPS_PROXY (with the VPC endpoints' names in NO_PROXY); (2) type = \
         \"agentcore_identity\": AgentCore Identity fetches the Cognito token for you and is \
         reached through the com.amazonaws.us-east-1.bedrock-agentcore interface endpoint; (3) \
         type = \"cognito_client_token\": Cognito's GetClientToken API through the \
         com.amazonaws.us-east-1.cognito-idp interface endpoint (an app client with a secret and \
         ALLOW_CLIENT_TOKEN_AUTH, a user pool without a domain)"
    );
    // The endpoint line before it says where the token URL points.
    assert_eq!(
        run.line("· credential endpoint"),
        format!(
            "  · credential endpoint {token_url}: {host} -> 127.0.0.1 (in-VPC): inside the VPC"
        )
    );
    assert!(!run.stdout.contains("doctor-client-secret"));
}
