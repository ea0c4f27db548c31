//! The configuration as users write it: every shipped example and `config/full.toml` pass
//! `check`, which prints every table; the reference in docs/configuration.md names the
//! same keys as `config/full.toml`; the whole TOML may come from
//! `MCP_VPCE_PROXY_CONFIG_TOML` instead of a file (validated alike, named in errors,
//! honoured by `run`, `check` and `doctor`, kept across a reload); errors name the route,
//! say what is wrong with a range, and list every problem; warnings flag what is valid
//! but most likely a mistake.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::common::binary::{proxy, run};
use crate::common::dns::DnsServer;
use crate::common::http::send;
use crate::common::proxy::head;
use crate::common::proxy_process::{free_port, ProxyProcess};
use crate::common::upstream::{Upstream, ENDPOINT_HOST, GATEWAY_HOST};

const SECRETS: [&str; 6] = [
    "cognitosecretvalue0123456789abcdef",
    "env-secret-value",
    "tools-secret-value",
    "file-secret-value",
    "inbound-secret-value-0123456789",
    "oauth-secret-value",
];

fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// The files the shipped examples name, laid out in a temporary directory: the examples'
/// `/run/secrets/`, `/var/log/mcp-vpce-proxy/` and `/etc/mcp-vpce-proxy/` point there.
struct Layout {
    dir: tempfile::TempDir,
}

impl Layout {
    fn new() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        for sub in ["secrets", "log", "etc"] {
            std::fs::create_dir(dir.path().join(sub)).unwrap();
        }
        let secrets = dir.path().join("secrets");
        std::fs::write(secrets.join("gateway-token"), "file-secret-value\n").unwrap();
        std::fs::write(
            secrets.join("inbound-token"),
            "inbound-secret-value-0123456789\n",
        )
        .unwrap();
        std::fs::write(secrets.join("oauth-client-secret"), "oauth-secret-value\n").unwrap();
        std::fs::write(
            secrets.join("cognito-client-secret"),
            "cognitosecretvalue0123456789abcdef\n",
        )
        .unwrap();
        let pki = crate::common::certs::issue(&["ca.example"]);
        std::fs::write(dir.path().join("etc/extra-ca.pem"), &pki.ca_pem).unwrap();
        Layout { dir }
    }

    fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    /// The example `name` from config/, its paths pointing into the layout, written beside.
    fn example(&self, name: &str) -> PathBuf {
        let text = std::fs::read_to_string(repo("config").join(name)).unwrap();
        let path = self.dir.path().join(name);
        std::fs::write(&path, self.rewrite(&text)).unwrap();
        path
    }

    fn rewrite(&self, text: &str) -> String {
        let root = self.path();
        text.replace("/run/secrets/", &format!("{root}/secrets/"))
            .replace("/var/log/mcp-vpce-proxy/", &format!("{root}/log/"))
            .replace("/etc/mcp-vpce-proxy/", &format!("{root}/etc/"))
    }
}

/// `check` with the variables the examples name.
fn check(configure: impl FnOnce(&mut std::process::Command)) -> (bool, String, String) {
    let mut cmd = proxy();
    cmd.arg("check")
        .env("GATEWAY_TOKEN", "env-secret-value")
        .env("TOOLS_GATEWAY_TOKEN", "tools-secret-value");
    configure(&mut cmd);
    run(&mut cmd)
}

fn check_file(path: &Path) -> (bool, String, String) {
    check(|cmd| {
        cmd.arg("--config").arg(path);
    })
}

fn check_text(text: &str) -> (bool, String, String) {
    check(|cmd| {
        cmd.env("MCP_VPCE_PROXY_CONFIG_TOML", text);
    })
}

#[test]
fn every_shipped_example_passes_check_without_warnings_and_never_prints_a_secret() {
    let layout = Layout::new();
    let mut names: Vec<String> = std::fs::read_dir(repo("config"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    for expected in [
        "audit.toml",
        "full.toml",
        "multi-route.toml",
        "oauth2.toml",
        "private-dns-off.toml",
        "private-dns-on.toml",
        "tool-policy.toml",
    ] {
        assert!(names.iter().any(|n| n == expected), "config/{expected}");
    }
    for name in &names {
        let (ok, out, err) = check_file(&layout.example(name));
        assert!(ok, "{name}: {err}");
        assert!(out.starts_with("configuration OK: "), "{name}: {out}");
        assert_eq!(err, "", "{name} has warnings");
        for secret in SECRETS {
            assert!(
                !out.contains(secret) && !err.contains(secret),
                "{name} printed a secret"
            );
        }
    }
}

#[test]
fn the_new_examples_show_oauth2_a_tool_policy_and_audit() {
    let layout = Layout::new();
    let oauth2 = std::fs::read_to_string(repo("config/oauth2.toml")).unwrap();
    assert!(
        oauth2.contains("is not reachable through a VPC interface")
            && oauth2.contains("HTTPS_PROXY")
            && oauth2.contains("`agentcore_identity` credential"),
        "the Cognito/PrivateLink caveat and the ways out"
    );
    let (ok, out, err) = check_file(&layout.example("oauth2.toml"));
    assert!(ok, "{err}");
    assert!(
        out.contains("  credential       oauth2 client credentials from https://my-domain.auth.us-east-1.amazoncognito.com/oauth2/token"),
        "{out}"
    );

    let (ok, out, err) = check_file(&layout.example("tool-policy.toml"));
    assert!(ok, "{err}");
    assert!(out.contains(
        "  tools            allow [Billing___get_*, Billing___list_*, x_amz_bedrock_agentcore_search] except [*___delete_*]\n"
    ), "{out}");
    assert!(out.contains(
        "  policy           allow_methods [initialize, notifications/*, tools/*, ping]; requests_per_second 10/s, burst 20; max_in_flight 8; validate true; max_batch 64; max_filter_bytes 8388608; log_arguments false\n"
    ), "{out}");

    let (ok, out, err) = check_file(&layout.example("audit.toml"));
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!(
            "audit: file {}/log/audit.jsonl, rotated at 104857600 bytes, 5 rotated files kept; queue 4096 records or 16777216 bytes\n",
            layout.path()
        )),
        "{out}"
    );
}

#[test]
fn full_toml_sets_every_table_and_check_prints_each() {
    let layout = Layout::new();
    let path = layout.example("full.toml");
    let (ok, out, err) = check_file(&path);
    assert!(ok, "{err}");
    let root = layout.path();
    for expected in [
        "configuration OK: 9 routes, listening on 127.0.0.1:8080\n".to_string(),
        format!("source: {}\n", path.display()),
        "unix socket: /run/mcp-vpce-proxy/agent.sock (mode 0660)\n".to_string(),
        "inbound\n  allowed_clients  127.0.0.0/8, 10.0.0.0/16\n".to_string(),
        format!("  token            from file {root}/secrets/inbound-token (sha256:"),
        "  allowed_origins  https://console.example.com\n  allowed_hosts    IP addresses, localhost, mcp-proxy.internal\n".to_string(),
        format!("audit: file {root}/log/audit.jsonl, rotated at 104857600 bytes, 5 rotated files kept; queue 4096 records or 16777216 bytes\n"),
        "limits\n\
         \x20 max_connections                    4096\n\
         \x20 h2_max_concurrent_streams          256\n\
         \x20 max_header_bytes                   65536\n\
         \x20 header_read_timeout                30s\n\
         \x20 body_read_timeout                  1m\n\
         \x20 idle_connection_timeout            1m\n\
         \x20 h2_keep_alive_interval             30s\n\
         \x20 h2_keep_alive_timeout              20s\n\
         \x20 max_buffered_bytes_per_connection  25165824\n\
         \x20 max_buffered_bytes                 268435456\n\
         \x20 shutdown_grace                     30s\n".to_string(),
        "  policy           allow_methods [initialize, notifications/*, tools/*, ping]; requests_per_second 20/s, burst 40; max_in_flight 16; validate true; max_batch 64; max_filter_bytes 8388608; log_arguments false\n".to_string(),
    ] {
        assert!(out.contains(&expected), "missing {expected:?} in:\n{out}");
    }
    for route in [
        "tools",
        "files",
        "oauth",
        "program",
        "iam",
        "identity",
        "cognito",
        "secret",
        "parameter",
    ] {
        assert!(out.contains(&format!("route {route}\n")), "{out}");
    }
}

/// `section.key` for every key of the TOML in `text` (commented alternatives included),
/// `[[route]]` and its sub-tables as `route` and `route.policy`.
fn keys(text: &str) -> BTreeSet<String> {
    let mut table = String::new();
    let mut out = BTreeSet::new();
    for line in text.lines() {
        let line = line.trim_start().trim_start_matches('#').trim_start();
        if let Some(header) = line.strip_prefix('[') {
            let name = header.trim_start_matches('[').split(']').next().unwrap();
            if !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || "_.".contains(c))
            {
                table = name.to_string();
            }
            continue;
        }
        if let Some((key, _)) = line.split_once(" = ") {
            let key = key.trim();
            if !key.is_empty()
                && key
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                out.insert(if table.is_empty() {
                    key.to_string()
                } else {
                    format!("{table}.{key}")
                });
            }
        }
    }
    out
}

#[test]
fn the_reference_and_full_toml_name_the_same_keys() {
    let docs = std::fs::read_to_string(repo("docs/configuration.md")).unwrap();
    let start = docs
        .find("## Reference: every key and its default")
        .unwrap();
    let end = start + docs[start..].find("## Validation and errors").unwrap();
    let mut reference = BTreeSet::new();
    for block in docs[start..end].split("```toml\n").skip(1) {
        reference.extend(keys(block.split("```").next().unwrap()));
    }
    let full = keys(&std::fs::read_to_string(repo("config/full.toml")).unwrap());
    assert!(full.len() > 80, "{full:?}");
    let only_docs: Vec<&String> = reference.difference(&full).collect();
    let only_full: Vec<&String> = full.difference(&reference).collect();
    assert!(
        only_docs.is_empty() && only_full.is_empty(),
        "only in docs/configuration.md: {only_docs:?}; only in config/full.toml: {only_full:?}"
    );
}

const ONE_ROUTE: &str = "[[route]]\nname = \"weather\"\n\
    gateway = \"https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp\"\n\
    endpoint = \"vpce-0a-b.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com\"\n\
    credential = { type = \"static\", env = \"GATEWAY_TOKEN\" }\n";

#[test]
fn the_whole_configuration_can_come_from_one_variable() {
    let text = format!("listen = \"127.0.0.1:8181\"\n[audit]\nto = \"stdout\"\n{ONE_ROUTE}");
    let (ok, out, err) = check_text(&text);
    assert!(ok, "{err}");
    assert!(
        out.starts_with("configuration OK: 1 route, listening on 127.0.0.1:8181\nsource: $MCP_VPCE_PROXY_CONFIG_TOML\n"),
        "{out}"
    );
    assert!(out.contains("audit: stdout; "), "{out}");
    assert!(out.contains("route weather\n"), "{out}");
    assert!(!out.contains("env-secret-value"));
    // Flags and variables override the text as they override a file.
    let (ok, out, err) = check(|cmd| {
        cmd.env("MCP_VPCE_PROXY_CONFIG_TOML", &text)
            .env("MCP_VPCE_PROXY_LISTEN", "127.0.0.1:8282")
            .args(["--token-env", "TOOLS_GATEWAY_TOKEN"]);
    });
    assert!(ok, "{err}");
    assert!(out.contains("listening on 127.0.0.1:8282\n"), "{out}");
    assert!(
        out.contains(
            "  credential       static bearer token from env TOOLS_GATEWAY_TOKEN (sha256:"
        ),
        "{out}"
    );
}

#[test]
fn the_variable_is_validated_like_a_file_and_named_in_errors() {
    let (ok, _, err) = check_text("[[route]]\ngateway = \"http://gw.example.com/mcp\"\n");
    assert!(!ok);
    assert_eq!(
        err,
        "mcp-vpce-proxy: $MCP_VPCE_PROXY_CONFIG_TOML: route \"mcp\" (route[0]).gateway: must be an https:// URL, got scheme \"http\"\n"
    );
    let (ok, _, err) = check_text("this is not TOML [");
    assert!(!ok);
    assert!(
        err.starts_with("mcp-vpce-proxy: $MCP_VPCE_PROXY_CONFIG_TOML: TOML parse error at line 1"),
        "{err}"
    );
    let (ok, _, err) = check_text(" \n");
    assert!(!ok);
    assert_eq!(
        err,
        "mcp-vpce-proxy: $MCP_VPCE_PROXY_CONFIG_TOML is set but empty; put the TOML configuration in it, or unset it\n"
    );
}

#[test]
fn a_file_and_the_variable_together_are_refused_by_every_command() {
    let layout = Layout::new();
    let file = layout.example("private-dns-on.toml");
    let expected = format!(
        "mcp-vpce-proxy: the configuration is given twice: as a file ({}, from --config or \
         MCP_VPCE_PROXY_CONFIG) and as text in MCP_VPCE_PROXY_CONFIG_TOML; give one of them\n",
        file.display()
    );
    for command in ["check", "run", "doctor", "healthcheck"] {
        let (ok, out, err) = run(proxy()
            .arg(command)
            .env("MCP_VPCE_PROXY_CONFIG", &file)
            .env("MCP_VPCE_PROXY_CONFIG_TOML", ONE_ROUTE)
            .env("GATEWAY_TOKEN", "env-secret-value"));
        assert!(!ok, "{command} accepted both");
        if command == "doctor" {
            // The doctor reports an unusable configuration as its failed check.
            assert!(out.contains("the configuration is given twice"), "{out}");
            assert!(
                err.starts_with("mcp-vpce-proxy: doctor: 1 check failed"),
                "{err}"
            );
        } else {
            assert_eq!(err, expected, "{command}");
        }
    }
}

#[test]
fn doctor_reads_the_variable() {
    let (ok, out, _) = run(proxy().args(["doctor", "--no-system-resolver"]).env(
        "MCP_VPCE_PROXY_CONFIG_TOML",
        "[[route]]\ngateway = \"http://gw.example.com/mcp\"\n",
    ));
    assert!(!ok);
    assert!(
        out.contains("$MCP_VPCE_PROXY_CONFIG_TOML: route \"mcp\" (route[0]).gateway: must be an https:// URL"),
        "{out}"
    );
}

#[test]
fn errors_name_the_route_say_what_is_wrong_and_list_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        r#"[limits]
max_connections = 0
[inbound]
allowed_clients = ["10.0.0.0/33", "10.0.0.0/8"]
allowed_origins = ["https://console.example.com/app"]
[audit]
to = "file"
queue = 0
[[route]]
name = "tools"
gateway = "https://a.example.com/mcp"
[[route]]
name = "billing"
path = "/mcp"
gateway = "http://b.example.com/mcp"
preferred_ranges = ["10.1.0.0/99"]
[route.policy]
allow_tools = [""]
requests_per_second = 1.0
burst = 0
"#,
    )
    .unwrap();
    let (ok, _, err) = run(proxy().args(["check", "--config"]).arg(&path));
    assert!(!ok);
    let f = path.display();
    assert_eq!(
        err,
        format!(
            "mcp-vpce-proxy: {f}: inbound.allowed_clients[0]: \"10.0.0.0/33\": the prefix length 33 is more than 32, the longest an IPv4 prefix can be\n\
             {f}: route \"billing\" (route[1]).preferred_ranges[0]: \"10.1.0.0/99\": the prefix length 99 is more than 32, the longest an IPv4 prefix can be\n\
             {f}: limits.max_connections: must be greater than 0\n\
             {f}: audit.queue: must be at least 1\n\
             {f}: audit.path: is required with to = \"file\"\n\
             {f}: inbound.allowed_origins[0]: \"https://console.example.com/app\" is not an origin like https://app.example.com (scheme, host and optional port only)\n\
             {f}: route \"billing\" (route[1]).path: \"/mcp\" is already the path of route \"tools\" (route[0]); each route needs a path of its own\n\
             {f}: route \"billing\" (route[1]).gateway: must be an https:// URL, got scheme \"http\"\n\
             {f}: route \"billing\" (route[1]).policy.allow_tools[0]: an empty pattern matches nothing; remove it\n\
             {f}: route \"billing\" (route[1]).policy.burst: must be at least 1\n"
        )
    );
    // A range given as a flag is read the same way.
    let (ok, _, err) = run(proxy().args([
        "check",
        "--gateway",
        "https://gw.example.com/mcp",
        "--private-range",
        "10.0.0.0/33",
    ]));
    assert!(!ok);
    assert!(
        err.contains("'--private-range <CIDR>': \"10.0.0.0/33\": the prefix length 33 is more than 32, the longest an IPv4 prefix can be"),
        "{err}"
    );
}

#[test]
fn check_warns_about_a_gateway_without_path_an_endpoint_in_another_region_and_an_open_admin() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("proxy.toml");
    std::fs::write(
        &path,
        "admin = \"0.0.0.0:9901\"\n[[route]]\nname = \"weather\"\n\
         gateway = \"https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com\"\n\
         endpoint = \"vpce-0a-b.gateway.bedrock-agentcore.eu-west-1.vpce.amazonaws.com\"\n",
    )
    .unwrap();
    let (ok, out, err) = run(proxy().args(["check", "--config"]).arg(&path));
    assert!(ok, "{err}");
    assert!(out.starts_with("configuration OK: "), "{out}");
    let f = path.display();
    assert_eq!(
        err,
        format!(
            "warning: {f}: admin: 0.0.0.0:9901 is not a loopback address: /metrics, /readyz and /routes (route names, gateway URLs, credential state) answer anyone who can reach it, without authentication; keep it on 127.0.0.1 unless a probe needs it, and then allow only the prober to reach the port (security group, NetworkPolicy)\n\
             warning: {f}: route \"weather\" (route[0]).gateway: \"https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com\" has no path: AgentCore gateways serve MCP at /mcp, so requests to this URL will most likely be answered 404; did you mean \"https://gw-1.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp\"?\n\
             warning: {f}: route \"weather\" (route[0]).endpoint: \"vpce-0a-b.gateway.bedrock-agentcore.eu-west-1.vpce.amazonaws.com\" is an endpoint in eu-west-1, but the gateway is in us-east-1: an interface endpoint reaches the gateways of its own region only; use the DNS name of an endpoint in us-east-1\n"
        )
    );
    // In the zero-file mode the warning names the flag.
    let (ok, _, err) = run(proxy().args([
        "check",
        "--gateway",
        "https://gw.example.com/mcp",
        "--admin",
        "10.0.0.5:9901",
    ]));
    assert!(ok, "{err}");
    assert!(
        err.starts_with("warning: command line: --admin (MCP_VPCE_PROXY_ADMIN): 10.0.0.5:9901 is not a loopback address"),
        "{err}"
    );
}

/// The proxy run from `MCP_VPCE_PROXY_CONFIG_TOML`: it serves, and a SIGHUP validates the
/// same text again, taking a rotated inbound token file (the text itself cannot change).
#[tokio::test]
async fn run_serves_from_the_variable_and_a_reload_rereads_the_files_it_names() {
    let upstream = Upstream::start().await;
    let dns = DnsServer::start(&[(ENDPOINT_HOST, "127.0.0.1".parse().unwrap())]).await;
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("inbound-token");
    std::fs::write(&token_file, "first-inbound-token-0123456789\n").unwrap();
    let (port, admin) = (free_port(), free_port());
    let text = format!(
        "admin = \"127.0.0.1:{admin}\"\n{}[inbound]\ntoken_file = \"{}\"\n\
         [[route]]\nname = \"from-variable\"\ngateway = \"https://{GATEWAY_HOST}:{}/mcp\"\n\
         endpoint = \"{ENDPOINT_HOST}\"\nca_file = \"{}\"\n",
        head(&dns).replace("127.0.0.1:0", &format!("127.0.0.1:{port}")),
        token_file.display(),
        upstream.port(),
        upstream.ca_file().display()
    );
    let proxy_process = ProxyProcess::spawn(
        proxy()
            .args(["run", "--log-level", "warn", "--watch-config"])
            .env("MCP_VPCE_PROXY_CONFIG_TOML", &text),
        port,
    )
    .await;
    let admin_get = |path: &'static str| async move {
        send("GET", &format!("http://127.0.0.1:{admin}{path}"), &[], "")
            .await
            .body
    };
    // The admin listener answers once the SIGHUP handler is installed.
    admin_get("/healthz").await;
    let ping = |token: &'static str| async move {
        let bearer = format!("Bearer {token}");
        send(
            "POST",
            &format!("http://127.0.0.1:{port}/mcp"),
            &[
                ("content-type", "application/json"),
                ("accept", "application/json, text/event-stream"),
                ("authorization", bearer.as_str()),
            ],
            r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#,
        )
        .await
        .status
        .as_u16()
    };
    // Let in: the request reaches the gateway (whatever it answers a bare ping).
    assert_ne!(ping("first-inbound-token-0123456789").await, 401);
    assert_eq!(upstream.requests().len(), 1);
    assert_eq!(ping("second-inbound-token-0123456789").await, 401);

    std::fs::write(&token_file, "second-inbound-token-0123456789\n").unwrap();
    proxy_process.hangup();
    let reloaded = "mcp_vpce_proxy_config_reloads_total{result=\"ok\"} 1";
    let deadline = Instant::now() + Duration::from_secs(20);
    while !admin_get("/metrics").await.contains(reloaded) {
        assert!(
            Instant::now() < deadline,
            "no reload within 20 s: {}",
            proxy_process.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_ne!(ping("second-inbound-token-0123456789").await, 401);
    assert_eq!(upstream.requests().len(), 2);
    assert_eq!(ping("first-inbound-token-0123456789").await, 401);
    assert_eq!(upstream.requests().len(), 2);
    assert!(
        proxy_process.log().contains(
            "--watch-config needs --config FILE (the text of MCP_VPCE_PROXY_CONFIG_TOML cannot change while the process runs); nothing to watch"
        ),
        "{}",
        proxy_process.log()
    );
}
