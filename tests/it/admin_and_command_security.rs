//! The admin listener gets the agent listener's protections, and a failing token command
//! never shows its stderr to the agent.
//!
//! Admin: connections that send no complete request head are closed after
//! `limits.header_read_timeout`; at most `admin::MAX_CONNECTIONS` are served at once (the
//! others get a 503 and are closed, and a flood of them at a low file-descriptor limit no
//! longer starves the agent listener); the Host (or `:authority`) must be an IP literal,
//! `localhost` or a name in `admin_hosts` (421 otherwise, against DNS rebinding), read
//! strictly and only once (400).
//!
//! Token command: the agent's answer says the command failed, with its exit status, and
//! points to the log; the log carries the command's stderr only scrubbed of secrets (the
//! same for an AWS profile's `credential_process`). A command that overruns its timeout
//! is killed with its whole process group.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use crate::common::dns::DnsServer;
use crate::common::http::{post_rpc, raw, send};
use crate::common::proxy::head;
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use mcp_vpce_proxy::config::{Config, Overrides};
use mcp_vpce_proxy::listener::admin::MAX_CONNECTIONS;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":7,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"admin-test","version":"1"}}}"#;

/// Only a guard against a hung test, never a bound that is asserted.
const GUARD: Duration = Duration::from_secs(60);

/// The proxy in-process as `run` starts it (agent and admin listener from one
/// configuration), with a gateway fixture behind it.
struct Running {
    agent: SocketAddr,
    admin: SocketAddr,
    _upstream: Upstream,
    _dns: DnsServer,
    _stop: tokio::sync::oneshot::Sender<()>,
}

/// `globals` are top-level keys (`admin_hosts = [...]`), `limits` the `[limits]` table.
async fn start(globals: &str, limits: &str) -> Running {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"admin = "127.0.0.1:0"
{globals}
{head}
[limits]
{limits}
[[route]]
name = "admin-test"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    let config = Config::parse(&toml, "admin.toml", &Overrides::default())
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    let proxy = mcp_vpce_proxy::cmd::app::Proxy::start(&config)
        .await
        .unwrap();
    let (agent, admin) = (proxy.local_addr(), proxy.admin_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(proxy.run(async move {
        let _ = stopped.await;
    }));
    Running {
        agent,
        admin,
        _upstream: upstream,
        _dns: dns,
        _stop: stop,
    }
}

/// A raw admin request with the given Host header lines, answered and closed.
async fn admin_get(admin: SocketAddr, path: &str, host_lines: &str) -> String {
    raw(
        admin,
        format!("GET {path} HTTP/1.1\r\n{host_lines}Connection: close\r\n\r\n").as_bytes(),
    )
    .await
}

fn status_line(response: &str) -> &str {
    response.lines().next().unwrap_or("")
}

/// Waits until the peer closes `stream` (EOF or reset); fails after the guard.
async fn closed_by_peer(mut stream: TcpStream, what: &str) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut buf = [0u8; 1024];
    let result = tokio::time::timeout(GUARD, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(result.is_ok(), "{what}: still open after {GUARD:?}");
    seen
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_connections_without_a_complete_head_are_closed_after_the_header_read_timeout() {
    let proxy = start("", "header_read_timeout = \"1s\"").await;
    // 50 partial HTTP/1 heads, 5 connections that send nothing, 5 half HTTP/2 prefaces:
    // together under the connection cap, so every one of them is being served.
    let mut held = Vec::new();
    for i in 0..60 {
        let mut stream = TcpStream::connect(proxy.admin).await.unwrap();
        let sent: &[u8] = match i % 12 {
            10 => b"",
            11 => b"PRI * HTTP/2.0\r\n",
            _ => b"GET /routes HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: aaaa",
        };
        stream.write_all(sent).await.unwrap();
        held.push(stream);
    }
    let waits: Vec<_> = held
        .into_iter()
        .enumerate()
        .map(|(i, s)| {
            tokio::spawn(async move { closed_by_peer(s, &format!("connection {i}")).await })
        })
        .collect();
    for wait in waits {
        let answer = wait.await.unwrap();
        // hyper closes a timed-out head without an answer; nothing else may come back.
        assert!(
            answer.is_empty() || answer.starts_with(b"HTTP/1.1 408"),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    // And the listener serves as before.
    let answer = admin_get(proxy.admin, "/healthz", "Host: 127.0.0.1\r\n").await;
    assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn admin_connections_over_the_cap_are_refused_while_agents_are_served() {
    // Long enough that the holders keep their slots for the whole test.
    let proxy = start("", "header_read_timeout = \"10m\"").await;
    let mut holders = Vec::new();
    for _ in 0..MAX_CONNECTIONS {
        let mut stream = TcpStream::connect(proxy.admin).await.unwrap();
        stream
            .write_all(b"GET /routes HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await
            .unwrap();
        holders.push(stream);
    }
    // The listener accepts in order: these come after every holder took its slot.
    for _ in 0..10 {
        let stream = TcpStream::connect(proxy.admin).await.unwrap();
        let answer = closed_by_peer(stream, "a connection over the cap").await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{answer}"
        );
        assert!(
            answer.ends_with("\r\n\r\nmcp-vpce-proxy: admin: too many connections, try again\n"),
            "{answer}"
        );
    }
    let answer = post_rpc(&format!("http://{}/mcp", proxy.agent), INITIALIZE).await;
    assert_eq!(answer.status, 200, "{}", answer.body);

    // Once the holders go, the admin listener serves again.
    drop(holders);
    let deadline = Instant::now() + GUARD;
    loop {
        let answer = admin_get(proxy.admin, "/healthz", "Host: 127.0.0.1\r\n").await;
        if status_line(&answer) == "HTTP/1.1 200 OK" {
            break;
        }
        assert!(Instant::now() < deadline, "admin still refusing: {answer}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The proxy binary with at most `nofile` file descriptors, its admin listener on.
struct LimitedProxy {
    child: std::process::Child,
    agent: SocketAddr,
    admin: SocketAddr,
    log: std::path::PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for LimitedProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LimitedProxy {
    async fn start(route: &str, dns: &DnsServer, nofile: u32) -> LimitedProxy {
        use crate::common::proxy_process::free_port;
        let (agent, admin) = (free_port(), free_port());
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        std::fs::write(
            &config,
            format!(
                "admin = \"127.0.0.1:{admin}\"\n{}\n{route}",
                head(dns).replace("127.0.0.1:0", &format!("127.0.0.1:{agent}"))
            ),
        )
        .unwrap();
        let log = dir.path().join("proxy.log");
        let child = std::process::Command::new("sh")
            .args([
                "-c",
                &format!("ulimit -n {nofile} && exec \"$0\" \"$@\""),
                env!("CARGO_BIN_EXE_mcp-vpce-proxy"),
                "run",
                "--log-level",
                "warn",
                "--config",
            ])
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let proxy = LimitedProxy {
            child,
            agent: ([127, 0, 0, 1], agent).into(),
            admin: ([127, 0, 0, 1], admin).into(),
            log,
            _dir: dir,
        };
        let deadline = Instant::now() + GUARD;
        for addr in [proxy.agent, proxy.admin] {
            while TcpStream::connect(addr).await.is_err() {
                assert!(Instant::now() < deadline, "not listening: {}", proxy.log());
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        proxy
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_flood_at_a_low_descriptor_limit_leaves_the_agents_served() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let route = format!(
        "[[route]]\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\nca_file = \"{}\"\n",
        upstream.port(),
        upstream.ca_file().display()
    );
    // About 20 descriptors at rest, the admin cap, and room for a few agents: a flood of
    // admin connections held open used to take them all ("Too many open files").
    let proxy = LimitedProxy::start(&route, &dns, 128).await;
    let mut flood = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(proxy.admin).await.unwrap();
        let _ = stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n")
            .await;
        flood.push(stream);
    }
    // Those over the cap are answered and closed; the first ones stay, half-sent.
    let over = flood.split_off(MAX_CONNECTIONS.min(flood.len()));
    for (i, stream) in over.into_iter().enumerate() {
        let answer = closed_by_peer(stream, &format!("flood connection {i}")).await;
        assert!(
            answer.starts_with(b"HTTP/1.1 503 "),
            "{}",
            String::from_utf8_lossy(&answer)
        );
    }
    for _ in 0..3 {
        let answer = post_rpc(&format!("http://{}/mcp", proxy.agent), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}\n{}", answer.body, proxy.log());
    }
    assert!(
        !proxy.log().contains("Too many open files"),
        "{}",
        proxy.log()
    );
    drop(flood);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_that_is_not_the_admin_listeners_is_refused() {
    let proxy = start(r#"admin_hosts = ["proxy.internal"]"#, "").await;
    let port = proxy.admin.port();
    for path in ["/routes", "/metrics", "/readyz", "/healthz"] {
        for host in [
            "evil.example",
            &format!("evil.example:{port}"),
            "127.0.0.1.nip.io",
        ] {
            let answer = admin_get(proxy.admin, path, &format!("Host: {host}\r\n")).await;
            assert_eq!(
                status_line(&answer),
                "HTTP/1.1 421 Misdirected Request",
                "{path} {host}: {answer}"
            );
            let name = host.split(':').next().unwrap();
            assert!(
                answer.ends_with(&format!(
                    "\r\n\r\nmcp-vpce-proxy: admin: Host \"{name}\" is not a name of this admin listener: \
                     use an IP address, localhost, or a name listed in admin_hosts\n"
                )),
                "{answer}"
            );
            assert!(!answer.contains("admin-test"), "{answer}");
        }
    }
    // An absolute-form target names the host too.
    let answer = raw(
        proxy.admin,
        b"GET http://evil.example/routes HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(
        status_line(&answer),
        "HTTP/1.1 421 Misdirected Request",
        "{answer}"
    );

    // IP literals (a kubelet probes the pod IP), localhost and the configured names.
    for host in [
        format!("127.0.0.1:{port}"),
        "127.0.0.1".into(),
        format!("[::1]:{port}"),
        "10.1.2.3:9901".into(),
        "localhost".into(),
        format!("LocalHost:{port}"),
        "proxy.internal".into(),
        format!("proxy.internal.:{port}"),
    ] {
        let answer = admin_get(proxy.admin, "/routes", &format!("Host: {host}\r\n")).await;
        assert_eq!(status_line(&answer), "HTTP/1.1 200 OK", "{host}: {answer}");
        assert!(answer.contains("\"admin-test\""), "{answer}");
    }
    // What an HTTP client sends by itself.
    let answer = send("GET", &format!("http://{}/metrics", proxy.admin), &[], "").await;
    assert_eq!(answer.status, 200, "{}", answer.body);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_hosts_or_a_malformed_host_are_refused() {
    let proxy = start("", "").await;
    let answer = admin_get(
        proxy.admin,
        "/routes",
        "Host: 127.0.0.1\r\nHost: evil.example\r\n",
    )
    .await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
    assert!(
        answer.ends_with("\r\n\r\nmcp-vpce-proxy: admin: more than one Host header\n"),
        "{answer}"
    );
    let answer = admin_get(
        proxy.admin,
        "/routes",
        "Host: localhost\r\nHost: localhost\r\n",
    )
    .await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
    for host in [
        "user@localhost",
        "evil.example@127.0.0.1",
        "\"localhost\"",
        "localhost, evil.example",
        "localhost\tx",
        "127.1",
        "[::1",
        "localhost:http",
    ] {
        let answer = admin_get(proxy.admin, "/routes", &format!("Host: {host}\r\n")).await;
        assert_eq!(
            status_line(&answer),
            "HTTP/1.1 400 Bad Request",
            "{host:?}: {answer}"
        );
        assert!(
            answer.contains("mcp-vpce-proxy: admin: the Host "),
            "{answer}"
        );
        assert!(!answer.contains("admin-test"), "{answer}");
    }
    // HTTP/1.1 needs a Host.
    let answer = raw(
        proxy.admin,
        b"GET /routes HTTP/1.1\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status_line(&answer), "HTTP/1.1 400 Bad Request", "{answer}");
}

#[tokio::test(flavor = "multi_thread")]
async fn h2_authorities_are_checked_like_hosts() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    let proxy = start("", "").await;
    let stream = TcpStream::connect(proxy.admin).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(connection);
    for (authority, status) in [
        ("evil.example:9901", 421),
        ("localhost:9901", 200),
        ("127.0.0.1", 200),
    ] {
        let request = http::Request::get(format!("http://{authority}/routes"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        let response = tokio::time::timeout(GUARD, sender.send_request(request))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(response.status(), status, "{authority}");
        let _ = response.into_body().collect().await;
    }
}

/// Secrets a token command writes to stderr before failing, in every form the log
/// scrubber must recognise; none may reach the agent or the log.
const STDERR_SECRETS: [&str; 10] = [
    "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhZ2VudCJ9.c2lnbmF0dXJlLXNlY3JldA",
    "S3cr3t-client-Value_42",
    "hunter2-password",
    "opaque session value",
    "bEaRer-tok-9f8e7d",
    "0123456789abcdef0123456789abcdef01234567",
    "json-tok-value",
    "refresh-val",
    "cookie-val-1",
    "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MA",
];

/// The child's log once a line contains `needle` (fails after the guard).
async fn logs_once_they_hold(proxy: &crate::common::aws::ChildProxy, needle: &str) -> String {
    let deadline = Instant::now() + GUARD;
    loop {
        let logs = proxy.logs();
        if logs.contains(needle) {
            return logs;
        }
        assert!(Instant::now() < deadline, "no {needle} in the log:\n{logs}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_token_command_shows_no_stderr_to_the_agent_and_only_scrubbed_stderr_in_the_log()
{
    let [jwt, client_secret, password, session, bearer, hex, json_token, refresh, cookie, b64] =
        STDERR_SECRETS;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("get-token");
    std::fs::write(
        &script,
        format!(
            r#"#!/bin/sh
printf 'token="%s"\tclient_secret:\t%s\n' '{jwt}' '{client_secret}' >&2
printf 'login failed for bob: password = %s, session="%s"\n' '{password}' '{session}' >&2
printf 'sent Authorization: Bearer %s; retry with %s or %s\n' '{bearer}' '{hex}' '{b64}' >&2
printf '{{"error":"denied","access_token":"%s","refresh_token": "%s"}}\n' '{json_token}' '{refresh}' >&2
printf 'cookie=%s\n' '{cookie}' >&2
exit 3
"#
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "cmd-stderr"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "command"
command = ["{script}"]
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        script = script.display(),
    );
    let proxy = crate::common::aws::ChildProxy::start(&toml, &[], "trace").await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        message,
        format!(
            "mcp-vpce-proxy: route cmd-stderr: no gateway credential: token command {} failed \
             (exit status: 3); its output is in the proxy log",
            script.display()
        )
    );

    // The test reads the log from a pipe: wait for the lines of this request.
    // The access line of the refused request comes last.
    let logs = logs_once_they_hold(&proxy, "\"reason\":\"credential\"").await;
    let line = logs
        .lines()
        .find(|l| l.contains("\"token command failed\""))
        .unwrap();
    let logged: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(logged["level"], "WARN", "{line}");
    assert_eq!(logged["route"], "cmd-stderr", "{line}");
    let stderr = logged["stderr"].as_str().unwrap();
    assert!(stderr.contains("login failed for bob"), "{stderr}");
    assert!(stderr.contains("[redacted]"), "{stderr}");
    assert!(stderr.len() <= 520, "{}", stderr.len());
    for secret in STDERR_SECRETS {
        assert!(
            !answer.body.contains(secret),
            "the answer holds {secret}: {}",
            answer.body
        );
        if let Some(l) = logs.lines().find(|l| l.contains(secret)) {
            panic!("the log holds {secret}: {l}");
        }
    }
    // Nor any line of stderr, scrubbed or not, in the answer.
    assert!(!answer.body.contains("login failed"), "{}", answer.body);
    assert!(!answer.body.contains("[redacted]"), "{}", answer.body);
}

/// An AWS profile's `credential_process` failing the same way: `aws-config` quotes its
/// stderr in the error, which reached the agent's answer; now only the log has it, scrubbed.
#[cfg(feature = "aws")]
#[tokio::test(flavor = "multi_thread")]
async fn a_failing_aws_credential_process_shows_no_stderr_to_the_agent() {
    let [jwt, client_secret, password, ..] = STDERR_SECRETS;
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("aws-creds");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nprintf 'token=\"%s\"\\tclient_secret:\\t%s\\npassword: %s\\n' '{jwt}' '{client_secret}' '{password}' >&2\nexit 4\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let aws_config = dir.path().join("aws-config");
    std::fs::write(
        &aws_config,
        format!(
            "[profile leaky]\ncredential_process = {}\n",
            script.display()
        ),
    )
    .unwrap();
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "aws-process"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "sigv4"
profile = "leaky"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    let proxy = crate::common::aws::ChildProxy::start(
        &toml,
        &[("AWS_CONFIG_FILE", aws_config.display().to_string())],
        "trace",
    )
    .await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    let message = answer.json()["error"]["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.ends_with("(its output is in the proxy log)"),
        "{message}"
    );
    let logs = logs_once_they_hold(&proxy, "\"reason\":\"credential\"").await;
    assert!(logs.contains("\"AWS credential_process failed\""), "{logs}");
    for secret in [jwt, client_secret, password] {
        assert!(
            !answer.body.contains(secret),
            "the answer holds {secret}: {}",
            answer.body
        );
        if let Some(l) = logs.lines().find(|l| l.contains(secret)) {
            panic!("the log holds {secret}: {l}");
        }
    }
}

/// The live processes (not zombies) whose command line is exactly `argv`.
fn live_processes(argv: &[&str]) -> Vec<u32> {
    let wanted: Vec<u8> = argv
        .iter()
        .flat_map(|a| [a.as_bytes(), b"\0"].concat())
        .collect();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // The state follows the parenthesised command name.
        let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
        if cmdline == wanted && !matches!(state, Some(Some('Z' | 'X')) | None) {
            found.push(pid);
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_command_that_overruns_is_killed_with_everything_it_started() {
    // A duration no other process uses, so that the test finds its own sleeps.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    let seconds = format!("{}.{nanos}", 500 + std::process::id() % 400);
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "cmd-group"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "command"
command = ["sh", "-c", "sleep {seconds} & sleep {seconds}"]
timeout = "1s"
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
    );
    let proxy = crate::common::proxy::Proxy::start(&toml).await;
    let answer = post_rpc(&proxy.url(), INITIALIZE).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(
        answer
            .body
            .contains("token command sh did not answer within 1s"),
        "{}",
        answer.body
    );
    let deadline = Instant::now() + GUARD;
    loop {
        let alive = live_processes(&["sleep", &seconds]);
        if alive.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still running after the timeout: {alive:?} (sleep {seconds})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
