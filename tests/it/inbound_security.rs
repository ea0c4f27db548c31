//! A sidecar nobody else can use: client addresses, an inbound client token, the Origin
//! allow-list and the Host check against DNS rebinding, each with the exact answer; and
//! the configuration refuses a listener off loopback that anyone could use.

use std::process::Command;

use crate::common::client;
use crate::common::http::{post_rpc, raw, send};
use crate::common::proxy::{ChildSetup, Mode, Setup, GATEWAY_TOKEN};
use mcp_vpce_proxy::config::{Config, Overrides};

const INIT: &str = r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#;

async fn setup(inbound: &str) -> Setup {
    Setup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        &format!("[inbound]\n{inbound}\n"),
    )
    .await
}

fn post_with(headers: &str) -> String {
    format!(
        "POST /mcp HTTP/1.1\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{INIT}",
        INIT.len()
    )
}

#[tokio::test]
async fn a_host_that_is_not_ours_is_refused() {
    let s = setup("allowed_hosts = [\"mcp-proxy.internal\"]").await;
    let response = raw(
        s.proxy.addr,
        post_with("Host: evil.example:8080\r\n").as_bytes(),
    )
    .await;
    assert!(
        response.starts_with("HTTP/1.1 403 Forbidden\r\n"),
        "{response}"
    );
    assert!(
        response.ends_with("\r\n\r\nmcp-vpce-proxy: Host \"evil.example\" is not a name of this listener (inbound.allowed_hosts)\n"),
        "{response}"
    );
    assert!(s.upstream.requests().is_empty());
    for host in [
        "localhost:1234",
        "127.0.0.1",
        "mcp-proxy.internal",
        "[::1]:80",
    ] {
        let response = raw(
            s.proxy.addr,
            post_with(&format!("Host: {host}\r\n")).as_bytes(),
        )
        .await;
        assert!(!response.contains(" 403 "), "{host}: {response}");
    }
    assert_eq!(s.upstream.requests().len(), 4);
}

#[tokio::test]
async fn an_origin_not_on_the_list_is_403() {
    let s = setup("allowed_origins = [\"https://console.example.com\"]").await;
    let answer = send(
        "POST",
        &s.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("origin", "http://evil.example"),
        ],
        INIT,
    )
    .await;
    assert_eq!(answer.status, 403);
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        answer.body,
        "mcp-vpce-proxy: Origin \"http://evil.example\" is not allowed (inbound.allowed_origins)\n"
    );
    assert!(s.upstream.requests().is_empty());
    let allowed = send(
        "POST",
        &s.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("origin", "https://console.example.com"),
        ],
        INIT,
    )
    .await;
    assert_ne!(allowed.status, 403, "{}", allowed.body);
    assert_eq!(s.upstream.requests().len(), 1);
}

/// An `initialize` POST as a browser page at `origin` sends it.
async fn post_from(s: &Setup, origin: &str) -> crate::common::http::Answer {
    send(
        "POST",
        &s.proxy.url(),
        &[
            ("content-type", "application/json"),
            ("accept", "application/json, text/event-stream"),
            ("origin", origin),
        ],
        r#"{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"page","version":"1"}}}"#,
    )
    .await
}

fn assert_origin_refused(answer: &crate::common::http::Answer, origin: &str) {
    assert_eq!(answer.status, 403, "{origin}: {}", answer.body);
    assert_eq!(answer.headers["content-type"], "text/plain; charset=utf-8");
    assert_eq!(
        answer.body,
        format!("mcp-vpce-proxy: Origin {origin:?} is not allowed (inbound.allowed_origins)\n")
    );
}

/// The MCP transport lets a local server answer pages of its own machine: a DNS-rebinding
/// page keeps its own name in its Origin, so `localhost`, `127.0.0.1` and `[::1]` (any
/// port, http or https, in any case) are pages served from here.
#[tokio::test]
async fn a_page_on_this_machine_is_served_by_default() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    let origins = [
        "http://localhost:3000",
        "http://127.0.0.1:3000",
        "http://[::1]:5173",
        "https://localhost",
        "http://LOCALHOST:3000",
    ];
    for origin in origins {
        let answer = post_from(&s, origin).await;
        assert_eq!(answer.status, 200, "{origin}: {}", answer.body);
        assert!(
            answer.body.contains(r#""id":1"#),
            "{origin}: {}",
            answer.body
        );
    }
    assert_eq!(s.upstream.requests().len(), origins.len());
}

#[tokio::test]
async fn a_foreign_origin_is_refused_by_default() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    assert_origin_refused(
        &post_from(&s, "http://evil.example").await,
        "http://evil.example",
    );
    let answer = send(
        "GET",
        &s.proxy.url(),
        &[("origin", "https://evil.example:3000")],
        "",
    )
    .await;
    assert_origin_refused(&answer, "https://evil.example:3000");
    assert!(s.upstream.requests().is_empty());
    // Agents (no Origin) are unaffected.
    let agent = client::connect(&s.proxy.url()).await;
    agent.list_all_tools().await.unwrap();
    agent.cancel().await.unwrap();
}

/// Names that start like a local one, user information that puts a foreign host after the
/// `@`, and the opaque `null` (sandboxed frames and `file:` pages of any site) are foreign.
#[tokio::test]
async fn origins_that_only_look_local_are_refused() {
    let s = Setup::start(Mode::PrivateDnsOff).await;
    for origin in [
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
        "http://localhost@evil.example",
        "http://localhost:3000/path",
        "null",
    ] {
        assert_origin_refused(&post_from(&s, origin).await, origin);
    }
    assert!(s.upstream.requests().is_empty());
}

#[tokio::test]
async fn local_pages_can_be_turned_away_and_listed_ones_are_served() {
    let s = setup(
        "allow_local_origins = false\nallowed_origins = [\"https://console.example.com\", \"http://localhost:5173\"]",
    )
    .await;
    assert_origin_refused(
        &post_from(&s, "http://localhost:3000").await,
        "http://localhost:3000",
    );
    assert_eq!(post_from(&s, "http://localhost:5173").await.status, 200);
    assert_eq!(
        post_from(&s, "https://console.example.com").await.status,
        200
    );
    assert_eq!(s.upstream.requests().len(), 2);
}

#[tokio::test]
async fn clients_outside_allowed_clients_are_refused() {
    let s = setup("allowed_clients = [\"10.0.0.0/8\"]").await;
    let answer = post_rpc(&s.proxy.url(), INIT).await;
    assert_eq!(answer.status, 403);
    assert_eq!(
        answer.body,
        "mcp-vpce-proxy: client address 127.0.0.1 is not in inbound.allowed_clients\n"
    );
    assert_eq!(s.upstream.connections(), 0);
    let s = setup("allowed_clients = [\"10.0.0.0/8\", \"127.0.0.1/32\"]").await;
    assert_ne!(post_rpc(&s.proxy.url(), INIT).await.status, 403);
}

#[tokio::test]
async fn the_inbound_token_is_required_and_never_reaches_the_gateway() {
    let token = "inbound-secret-0123456789";
    // The proxy binary as a child, so that the variable is set in its environment alone.
    let s = ChildSetup::start_with(
        Mode::PrivateDnsOff,
        Default::default(),
        "[inbound]\ntoken_env = \"INBOUND_SECURITY_TEST_TOKEN\"\n",
        &[("INBOUND_SECURITY_TEST_TOKEN", token.to_string())],
    )
    .await;

    for auth in [None, Some("Bearer wrong-token-0123456789"), Some(token)] {
        let mut headers = vec![("content-type", "application/json")];
        if let Some(a) = auth {
            headers.push(("authorization", a));
        }
        let answer = send("POST", &s.proxy.url(), &headers, INIT).await;
        assert_eq!(answer.status, 401, "{auth:?}");
        assert_eq!(
            answer.headers["www-authenticate"],
            "Bearer realm=\"mcp-vpce-proxy\""
        );
        assert_eq!(
            answer.body,
            "mcp-vpce-proxy: missing or wrong client token: send Authorization: Bearer <inbound token>\n"
        );
        assert!(!answer.body.contains(token));
    }
    assert!(s.upstream.requests().is_empty());

    let agent = client::connect_with_bearer(&s.proxy.url(), token).await;
    agent.list_all_tools().await.unwrap();
    agent.cancel().await.unwrap();
    let seen = s.upstream.requests();
    assert!(!seen.is_empty());
    for r in &seen {
        assert_eq!(
            r.authorization.as_deref(),
            Some(format!("Bearer {GATEWAY_TOKEN}").as_str()),
            "the gateway sees the route's credential, never the inbound token"
        );
    }
}

fn parse(toml: &str) -> Result<Config, String> {
    Config::parse(toml, "t.toml", &Overrides::default()).map_err(|e| e.to_string())
}

/// `mcp-vpce-proxy check --config t.toml` on `toml` with `envs` (and no
/// `MCP_VPCE_PROXY_*` variable of the machine): the error as `parse` words it, the
/// `mcp-vpce-proxy: ` prefix of the binary's message removed.
fn check_in_child(toml: &str, envs: &[(&str, &str)]) -> Result<(), String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("t.toml"), toml).unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MCP_VPCE_PROXY_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .args(["check", "--config", "t.toml"])
        .current_dir(dir.path())
        .envs(envs.iter().copied())
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    Err(stderr
        .strip_prefix("mcp-vpce-proxy: ")
        .unwrap_or(&stderr)
        .trim_end()
        .to_string())
}

#[test]
fn a_listener_off_loopback_needs_clients_or_a_token() {
    let route = "[[route]]\ngateway = \"https://gw.example/mcp\"\n";
    assert_eq!(
        parse(&format!("listen = \"0.0.0.0:8080\"\n{route}")).unwrap_err(),
        "t.toml: inbound.allowed_clients: listening on 0.0.0.0:8080, which is not a loopback address, \
         needs inbound.allowed_clients or an inbound token (inbound.token_env / inbound.token_file); \
         allowed_clients = [\"0.0.0.0/0\", \"::/0\"] admits everyone on purpose"
    );
    parse(&format!(
        "listen = \"0.0.0.0:8080\"\n[inbound]\nallowed_clients = [\"10.0.0.0/16\"]\n{route}"
    ))
    .unwrap();
    // With a token from an environment variable: validated by the binary's `check`
    // (the same validation, on a file of the same name), the variable set in the
    // child's environment alone, since every test shares this process's environment.
    let with_token = "[inbound]\ntoken_env = \"INBOUND_SECURITY_TEST_TOKEN_2\"\n";
    let check_with_token = |toml: String| {
        check_in_child(
            &toml,
            &[("INBOUND_SECURITY_TEST_TOKEN_2", "inbound-secret-0123456789")],
        )
    };
    check_with_token(format!("listen = \"0.0.0.0:8080\"\n{with_token}{route}")).unwrap();
    let err = check_with_token(format!(
        "{with_token}{route}[route.credential]\ntype = \"passthrough\"\n"
    ))
    .unwrap_err();
    assert!(
        err.starts_with("t.toml: inbound.token_env: an inbound token cannot be used with route \"mcp\" (route[0]), whose credential is passthrough"),
        "{err}"
    );
}

#[test]
fn check_warns_about_a_listener_open_to_everyone() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("open.toml");
    std::fs::write(
        &file,
        "listen = \"0.0.0.0:8080\"\n[inbound]\nallowed_clients = [\"0.0.0.0/0\"]\n[[route]]\ngateway = \"https://gw.example/mcp\"\n",
    )
    .unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MCP_VPCE_PROXY_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd
        .arg("check")
        .arg("--config")
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(
            &format!("warning: {}: inbound.allowed_clients: listening on 0.0.0.0:8080 with allowed_clients admitting every address and no inbound token", file.display())
        ),
        "{stderr}"
    );
}
