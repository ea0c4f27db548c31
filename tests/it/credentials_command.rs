//! `command`: a program prints the gateway token (plain or JSON with an expiry); the proxy
//! caches it until it expires, runs the program once however many requests wait, kills
//! it when it overruns, and never shows its stderr to the agent.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::common::dns::DnsServer;
use crate::common::http::{assert_rpc_error, post_rpc};
use crate::common::proxy::{head, Proxy};
use crate::common::upstream::{Upstream, GATEWAY_HOST};
use serde_json::json;

const INITIALIZE: &str = r#"{"jsonrpc":"2.0","id":3,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"command-test","version":"1"}}}"#;

struct Rig {
    upstream: Upstream,
    _dns: DnsServer,
    proxy: Proxy,
    dir: tempfile::TempDir,
}

/// Writes `script` (a shell script; `$N` is the run number, counted in a file next to
/// it) and starts a route whose credential runs it.
async fn rig(name: &str, script: &str, extra: &str) -> Rig {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("print-token");
    std::fs::write(
        &path,
        format!(
            "#!/bin/sh\nN=$(( $(cat \"$0.runs\" 2>/dev/null || echo 0) + 1 ))\necho $N > \"$0.runs\"\n{script}\n"
        ),
    )
    .unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(GATEWAY_HOST, "127.0.0.1".parse().unwrap())]).await;
    let toml = format!(
        r#"{head}
[[route]]
name = "{name}"
gateway = "https://{GATEWAY_HOST}:{port}/mcp"
ca_file = "{ca}"
[route.credential]
type = "command"
command = ["{script}"]
{extra}
"#,
        head = head(&dns),
        port = upstream.port(),
        ca = upstream.ca_file().display(),
        script = path.display(),
    );
    let proxy = Proxy::start(&toml).await;
    Rig {
        upstream,
        _dns: dns,
        proxy,
        dir,
    }
}

impl Rig {
    fn script(&self) -> PathBuf {
        self.dir.path().join("print-token")
    }
    fn runs(&self) -> usize {
        runs(&self.script())
    }
}

fn runs(script: &Path) -> usize {
    std::fs::read_to_string(script.with_extension("runs"))
        .map(|s| s.trim().parse().unwrap())
        .unwrap_or(0)
}

#[tokio::test]
async fn the_printed_token_is_cached_and_the_program_runs_once_for_concurrent_requests() {
    let rig = rig("cmd-cached", "sleep 0.3; echo \"command-token-$N\"", "").await;
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let url = rig.proxy.url();
        tasks.push(tokio::spawn(
            async move { post_rpc(&url, INITIALIZE).await },
        ));
    }
    for t in tasks {
        let answer = t.await.unwrap();
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(rig.runs(), 1);
    assert!(rig
        .upstream
        .requests()
        .iter()
        .all(|r| r.authorization.as_deref() == Some("Bearer command-token-1")));
}

#[tokio::test]
async fn a_json_expiry_makes_the_proxy_run_the_program_again_before_it() {
    let rig = rig(
        "cmd-expiry",
        r#"printf '{"access_token":"command-token-%s","expires_in":4}' $N"#,
        "",
    )
    .await;
    let mut rounds = 0;
    loop {
        let last = rig
            .upstream
            .requests()
            .last()
            .and_then(|r| r.authorization.clone());
        if last.as_deref() == Some("Bearer command-token-2") {
            break;
        }
        rounds += 1;
        assert!(rounds < 300, "never refreshed");
        let answer = post_rpc(&rig.proxy.url(), INITIALIZE).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(rig.runs(), 2);
}

#[tokio::test]
async fn a_failing_program_gives_a_503_that_shows_none_of_its_stderr() {
    let rig = rig(
        "cmd-failing",
        "echo 'login expired for token eyJhbGciOiJSUzI1NiJ9abcdefgh' >&2; exit 3",
        "",
    )
    .await;
    let answer = post_rpc(&rig.proxy.url(), INITIALIZE).await;
    assert_rpc_error(
        &answer,
        503,
        -31005,
        json!(3),
        &format!(
            "mcp-vpce-proxy: route cmd-failing: no gateway credential: token command {} failed \
             (exit status: 3); its output is in the proxy log",
            rig.script().display()
        ),
    );
    assert!(!answer.body.contains("eyJhbGciOiJSUzI1NiJ9abcdefgh"));
    assert!(!answer.body.contains("login expired"));
}

#[tokio::test]
async fn a_program_that_overruns_its_timeout_is_killed_and_reported() {
    let rig = rig("cmd-slow", "sleep 30; echo late", "timeout = \"500ms\"").await;
    let answer = post_rpc(&rig.proxy.url(), INITIALIZE).await;
    assert_rpc_error(
        &answer,
        503,
        -31005,
        json!(3),
        &format!(
            "mcp-vpce-proxy: route cmd-slow: no gateway credential: token command {} did not answer within 500ms",
            rig.script().display()
        ),
    );
}
