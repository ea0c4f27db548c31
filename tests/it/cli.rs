//! The command line as users type it: `check` on a shipped example, zero-file mode from
//! flags and `MCP_VPCE_PROXY_*` variables, and errors that name the file and key (every
//! shipped example is checked in `configuration.rs`).

use crate::common::binary::{proxy, run};
use std::path::Path;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("config")
        .join(name)
        .display()
        .to_string()
}

#[test]
fn check_prints_the_effective_route() {
    let (ok, out, err) = run(proxy()
        .args(["check", "--config", &example("private-dns-off.toml")])
        .args(["--listen", "127.0.0.1:9000", "--token-env", "T"])
        .env("T", "abc"));
    assert!(ok, "{err}");
    assert!(
        out.contains("configuration OK: 1 route, listening on 127.0.0.1:9000\n"),
        "{out}"
    );
    assert!(out.contains("route weather\n"), "{out}");
    assert!(out.contains(
        "  dial             vpce-0123456789abcdef0-abcd1234.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com (VPC endpoint; private DNS off)\n"
    ), "{out}");
    // --token-env replaced the file's credential; only a fingerprint is shown.
    assert!(
        out.contains("  credential       static bearer token from env T (sha256:"),
        "{out}"
    );
}

#[test]
fn tool_lists_come_from_the_environment_as_comma_separated_lists() {
    let (ok, out, err) = run(proxy()
        .arg("check")
        .env(
            "MCP_VPCE_PROXY_GATEWAY",
            "https://gw-1.gateway.bedrock-agentcore.us-west-2.amazonaws.com/mcp",
        )
        .env("MCP_VPCE_PROXY_TOKEN_ENV", "T")
        .env("T", "abc")
        .env("MCP_VPCE_PROXY_DENY_TOOL", "A___*, B___x"));
    assert!(ok, "{err}");
    assert!(
        out.contains("  tools            every tool but [A___*, B___x]\n"),
        "{out}"
    );
}

#[test]
fn zero_file_mode_reads_the_environment() {
    let (ok, out, err) = run(proxy()
        .arg("check")
        .env(
            "MCP_VPCE_PROXY_GATEWAY",
            "https://gw-1.gateway.bedrock-agentcore.us-west-2.amazonaws.com/mcp",
        )
        .env(
            "MCP_VPCE_PROXY_ENDPOINT",
            "vpce-1-a.gateway.bedrock-agentcore.us-west-2.vpce.amazonaws.com",
        )
        .env("MCP_VPCE_PROXY_LISTEN", "127.0.0.1:8181")
        .env("MCP_VPCE_PROXY_DNS_SERVER", "10.0.0.2,10.0.0.3:5353")
        .env("MCP_VPCE_PROXY_PRIVATE_RANGE", "10.0.0.0/16")
        .env("MCP_VPCE_PROXY_ALLOW_PUBLIC", "true"));
    assert!(ok, "{err}");
    assert!(out.contains("listening on 127.0.0.1:8181"), "{out}");
    assert!(
        out.contains("dns: 10.0.0.2, 10.0.0.3:5353; in-VPC ranges: 10.0.0.0/16\n"),
        "{out}"
    );
    assert!(out.contains("  gateway          https://gw-1.gateway.bedrock-agentcore.us-west-2.amazonaws.com/mcp\n"), "{out}");
    assert!(out.contains("  require_private  false\n"), "{out}");
    // A flag overrides the variable.
    let (ok, out, _) = run(proxy()
        .args(["check", "--listen", "127.0.0.1:8282"])
        .env("MCP_VPCE_PROXY_GATEWAY", "https://gw-1.example.com/mcp")
        .env("MCP_VPCE_PROXY_LISTEN", "127.0.0.1:8181"));
    assert!(ok);
    assert!(out.contains("listening on 127.0.0.1:8282"), "{out}");
}

#[test]
fn errors_name_the_file_and_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[route]]\ngateway = \"http://gw.example.com/mcp\"\n",
            "route \"mcp\" (route[0]).gateway: must be an https:// URL, got scheme \"http\"",
        ),
        (
            "[[route]]\ngateway = \"https://gw.example.com/mcp\"\nendpoint = \"https://vpce-1.example.com\"\n",
            "route \"mcp\" (route[0]).endpoint: \"https://vpce-1.example.com\" must be a bare DNS name, without scheme or path",
        ),
        (
            "[[route]]\ngateway = \"https://a.example.com/mcp\"\n[[route]]\ngateway = \"https://b.example.com/mcp\"\n",
            "route \"mcp\" (route[1]).path: \"/mcp\" is already the path of route \"mcp\" (route[0]); each route needs a path of its own",
        ),
        (
            "[[route]]\ngateway = \"https://gw.example.com/mcp\"\ncredential = { type = \"static\", env = \"SURELY_NOT_SET_4711\" }\n",
            "route \"mcp\" (route[0]).credential: environment variable SURELY_NOT_SET_4711 is not set (or not UTF-8)",
        ),
        (
            "[[route]]\ngateway = \"https://gw.example.com/mcp\"\naddresses = [\"vpce.example.com\"]\n",
            "route \"mcp\" (route[0]).addresses[0]: \"vpce.example.com\" is not an IP address or IP:PORT",
        ),
        ("[dns]\nservers = [\"10.0.0.2\"]\n", "route: no route configured"),
        (
            "[[route]]\ngateway = \"https://gw.example.com/mcp\"\nconect_timeout = \"1s\"\n",
            "unknown field `conect_timeout`",
        ),
    ];
    for (i, (text, expected)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("case{i}.toml"));
        std::fs::write(&path, text).unwrap();
        let (ok, _, err) = run(proxy().args(["check", "--config"]).arg(&path));
        assert!(!ok, "case {i} was accepted");
        assert!(
            err.starts_with(&format!("mcp-vpce-proxy: {}: ", path.display())),
            "case {i}: {err}"
        );
        assert!(err.contains(expected), "case {i}: {err}");
    }
}

#[test]
fn check_refuses_a_bad_policy_and_audit_table_with_the_file_and_every_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "[audit]\nto = \"stdout\"\nqueue = 0\n\
         [[route]]\ngateway = \"https://a.example.com/mcp\"\n\
         [[route]]\npath = \"/b\"\ngateway = \"https://b.example.com/mcp\"\n\
         [route.policy]\ndeny_tools = [\"x_*\", \"\"]\nrequests_per_second = -1.0\n",
    )
    .unwrap();
    let (ok, out, err) = run(proxy().args(["check", "--config"]).arg(&path));
    assert!(!ok, "accepted: {out}");
    let file = path.display().to_string();
    // One line per problem, each naming the file and, inside a route, the route.
    let lines: Vec<&str> = err.trim_end().lines().collect();
    assert_eq!(
        lines,
        [
            format!("mcp-vpce-proxy: {file}: audit.queue: must be at least 1"),
            format!("{file}: route \"b\" (route[1]).policy.deny_tools[1]: an empty pattern matches nothing; remove it"),
            format!("{file}: route \"b\" (route[1]).policy.requests_per_second: must be a number >= 0, got -1"),
        ],
        "{err}"
    );
    // A table whose only fault is a number: reported on its key.
    std::fs::write(
        &path,
        "[[route]]\ngateway = \"https://a.example.com/mcp\"\n\
         [route.policy]\nrequests_per_second = -1.0\n",
    )
    .unwrap();
    let (ok, _, err) = run(proxy().args(["check", "--config"]).arg(&path));
    assert!(!ok);
    assert!(
        err.starts_with(&format!(
            "mcp-vpce-proxy: {file}: route \"mcp\" (route[0]).policy.requests_per_second: must be a number >= 0"
        )),
        "{err}"
    );
}

#[test]
fn a_token_with_a_line_break_inside_is_refused_at_load() {
    let (ok, _, err) = run(proxy()
        .args([
            "check",
            "--gateway",
            "https://gw.example.com/mcp",
            "--token-env",
            "TOKEN_WITH_NEWLINE",
        ])
        .env("TOKEN_WITH_NEWLINE", "abc\r\nX-Injected: yes"));
    assert!(!ok);
    assert!(
        err.contains("contains characters not allowed in a header"),
        "{err}"
    );
    assert!(
        !err.contains("X-Injected"),
        "the value leaked into the error: {err}"
    );
}

#[test]
fn help_lists_the_documented_flags() {
    let (ok, out, _) = run(proxy().args(["run", "--help"]));
    assert!(ok);
    for flag in [
        "--config",
        "--listen",
        "--gateway",
        "--endpoint",
        "--token-env",
        "--token-file",
        "--ca-file",
        "--dns-server",
        "--private-range",
        "--allow-public",
        "MCP_VPCE_PROXY_GATEWAY",
        "MCP_VPCE_PROXY_CONFIG_TOML",
    ] {
        assert!(out.contains(flag), "missing {flag}");
    }
}
