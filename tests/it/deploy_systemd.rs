//! The systemd deployment as docs/deploy-systemd.md installs it: the documented install
//! steps run in a temporary root (every absolute path of the steps, the unit and the
//! configuration moved under it; `aws` answers with a made-up token), then the service's
//! start is done as systemd would (credentials copied to the credentials directory,
//! `LogsDirectory=` created, `Environment=` with `%d` expanded) and the unit's
//! `ExecStart=` is run as `check`. `systemd-analyze verify` and `security` judge the
//! installed unit.

use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::common::binary::run;
use crate::common::repo_files::{marked_block, read, repo, tool};

const UNIT: &str = "mcp-vpce-proxy.service";
const BINARY: &str = "/usr/local/bin/mcp-vpce-proxy";
const TOKEN: &str = "token-from-secrets-manager";
/// The absolute prefixes the install steps, the unit and the configuration use.
const ROOTED: [&str; 4] = ["/etc/", "/usr/local/", "/var/", "/run/"];

/// `text` with every absolute path under one of [`ROOTED`] moved under `root`.
fn rooted(text: &str, root: &Path) -> String {
    let mut out = text.to_string();
    for prefix in ROOTED {
        for before in [' ', '=', ':', '"', '\n'] {
            out = out.replace(
                &format!("{before}{prefix}"),
                &format!("{before}{}{prefix}", root.display()),
            );
        }
    }
    out
}

/// `Key=Value` lines of a unit; a key given again adds a value.
fn unit_settings(text: &str) -> HashMap<String, Vec<String>> {
    let mut settings: HashMap<String, Vec<String>> = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with('[') {
            continue;
        }
        if let Some((key, value)) = line.split_once('=') {
            settings
                .entry(key.to_string())
                .or_default()
                .push(value.to_string());
        }
    }
    settings
}

/// Runs the documented install steps under `root`, from the repository root (the
/// unpacked directory of the docs has the same relative paths).
fn install(root: &Path) {
    for dir in ["usr/local/bin", "etc/systemd/system", "var/log", "run"] {
        std::fs::create_dir_all(root.join(dir)).unwrap();
    }
    let steps = marked_block("docs/deploy-systemd.md", "install-steps: systemd").replace(
        "target/pgo/mcp-vpce-proxy",
        env!("CARGO_BIN_EXE_mcp-vpce-proxy"),
    );
    let script = format!(
        "set -euo pipefail\n\
         aws() {{ printf '%s\\n' \"$*\" >>'{calls}'; printf '%s\\n' '{TOKEN}'; }}\n{}",
        rooted(&steps, root),
        calls = root.join("aws-calls").display(),
    );
    let (ok, out, err) = run(Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo("")));
    assert!(ok, "the install steps failed:\n{script}\n{out}{err}");
}

#[test]
fn the_documented_install_starts_a_configuration_check_accepts_with_the_units_environment() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    install(root);

    // What the steps left: the binary, the configuration, the token (root only), the unit.
    let binary = root.join(BINARY.trim_start_matches('/'));
    assert!(binary.metadata().unwrap().permissions().mode() & 0o111 != 0);
    let token_file = root.join("etc/mcp-vpce-proxy/gateway-token");
    let mode = token_file.metadata().unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file is root-only");
    assert_eq!(std::fs::read_to_string(&token_file).unwrap().trim(), TOKEN);
    // The secret the steps read is the one the instance role may read.
    let calls = std::fs::read_to_string(root.join("aws-calls")).unwrap();
    let secret_id = calls
        .split_whitespace()
        .skip_while(|w| *w != "--secret-id")
        .nth(1)
        .expect("--secret-id");
    let policy: serde_json::Value =
        serde_json::from_str(&read("deploy/systemd/instance-role-policy.json")).unwrap();
    let resource = policy["Statement"][0]["Resource"].as_str().unwrap();
    assert!(
        resource.ends_with(&format!(":secret:{secret_id}-*")),
        "{resource}"
    );

    let unit_text = std::fs::read_to_string(root.join("etc/systemd/system").join(UNIT)).unwrap();
    assert_eq!(unit_text, read("deploy/systemd/mcp-vpce-proxy.service"));
    let unit = unit_settings(&unit_text);
    let config_path = root.join("etc/mcp-vpce-proxy/config.toml");
    let config = std::fs::read_to_string(&config_path).unwrap();
    assert_eq!(config, read("deploy/systemd/config.toml"));

    // The service starts as systemd starts it.
    let credentials = root.join("run/credentials").join(UNIT);
    std::fs::create_dir_all(&credentials).unwrap();
    for credential in unit.get("LoadCredential").into_iter().flatten() {
        let (id, source) = credential.split_once(':').unwrap();
        let copy = credentials.join(id);
        std::fs::copy(rooted(&format!(" {source}"), root).trim(), &copy)
            .unwrap_or_else(|e| panic!("LoadCredential={credential}: {e}"));
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400)).unwrap();
    }
    let logs: Vec<String> = unit
        .get("LogsDirectory")
        .into_iter()
        .flatten()
        .map(|d| format!("/var/log/{d}/"))
        .collect();
    for dir in &logs {
        std::fs::create_dir_all(root.join(dir.trim_start_matches('/'))).unwrap();
    }
    // The configuration writes only where the unit lets it (ProtectSystem=strict).
    let audit_path = toml::from_str::<toml::Value>(&config).unwrap()["audit"]["path"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        logs.iter().any(|d| audit_path.starts_with(d.as_str())),
        "audit path {audit_path} outside LogsDirectory= {logs:?}"
    );
    std::fs::write(&config_path, rooted(&config, root)).unwrap();

    let exec = rooted(&format!("={}", unit["ExecStart"][0]), root);
    let mut args = exec[1..].split_whitespace();
    let program = args.next().unwrap();
    assert_eq!(Path::new(program), binary);
    assert_eq!(args.next(), Some("run"));
    let mut cmd = Command::new(program);
    cmd.arg("check")
        .args(args)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .env("CREDENTIALS_DIRECTORY", &credentials);
    for assignment in unit.get("Environment").into_iter().flatten() {
        let (key, value) = assignment.split_once('=').unwrap();
        cmd.env(key, value.replace("%d", &credentials.display().to_string()));
    }
    let (ok, out, err) = run(&mut cmd);
    assert!(ok, "check with the unit's environment: {err}");
    assert!(out.starts_with("configuration OK"), "{out}");
    let in_credentials = credentials.join("gateway-token").display().to_string();
    assert!(out.contains(&in_credentials), "{out}");
    assert!(out.contains("VPC endpoint; private DNS off"), "{out}");
    assert!(!out.contains(TOKEN), "{out}");
    assert!(
        std::fs::metadata(rooted(&format!(" {audit_path}"), root).trim()).is_ok(),
        "check opens the audit file"
    );

    if !tool("systemd-analyze") {
        return;
    }
    // verify wants ExecStart's program to exist: the installed unit with the installed
    // binary's path under the root.
    let verify_dir = tempfile::tempdir().unwrap();
    let unit_copy = verify_dir.path().join(UNIT);
    std::fs::write(
        &unit_copy,
        unit_text.replace(BINARY, &binary.display().to_string()),
    )
    .unwrap();
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .arg("verify")
        .arg(&unit_copy));
    assert!(ok, "systemd-analyze verify: {out}{err}");
    // It only warns about unknown settings and specifiers: any output is a finding.
    assert_eq!(format!("{out}{err}"), "", "systemd-analyze verify");
    // Exposure score at most 2.0 of 10 ("OK"): losing a hardening line fails here.
    let (ok, out, err) = run(Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--threshold=20"])
        .arg(format!("--root={}", root.display()))
        .arg(UNIT));
    let verdict = out.lines().last().unwrap_or_default().to_string();
    assert!(ok, "{verdict}\n{err}");
    assert!(verdict.contains("exposure level"), "{out}");
    println!("{verdict}");
}

#[test]
fn the_unit_is_hardened_notify_with_its_secret_as_a_credential() {
    let unit = unit_settings(&read("deploy/systemd/mcp-vpce-proxy.service"));
    let one = |key: &str| -> &str {
        unit.get(key)
            .and_then(|v| v.last())
            .unwrap_or_else(|| panic!("{key}= missing"))
    };
    for (key, value) in [
        ("Type", "notify"),
        ("ExecReload", "/bin/kill -HUP $MAINPID"),
        (
            "LoadCredential",
            "gateway-token:/etc/mcp-vpce-proxy/gateway-token",
        ),
        ("Environment", "MCP_VPCE_PROXY_TOKEN_FILE=%d/gateway-token"),
        ("LogsDirectory", "mcp-vpce-proxy"),
        ("DynamicUser", "yes"),
        ("NoNewPrivileges", "yes"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("MemoryMax", "256M"),
        ("WatchdogSec", "30s"),
    ] {
        assert_eq!(one(key), value, "{key}");
    }
    assert_eq!(unit["SystemCallFilter"][0], "@system-service");
    // Secrets never in the environment: no EnvironmentFile, no token in Environment=.
    assert!(!unit.contains_key("EnvironmentFile"));
    assert_eq!(unit["Environment"].len(), 1);
}

/// The documented alternative to the token file: the configuration with an
/// agentcore_identity credential instead is valid as written.
#[test]
fn the_documented_agentcore_identity_variant_is_a_valid_configuration() {
    let dir = tempfile::tempdir().unwrap();
    let audit = dir.path().join("audit.jsonl");
    let config = read("deploy/systemd/config.toml").replace(
        "/var/log/mcp-vpce-proxy/audit.jsonl",
        &audit.display().to_string(),
    ) + &marked_block(
        "docs/deploy-systemd.md",
        "variant: systemd agentcore_identity",
    );
    let file = dir.path().join("config.toml");
    std::fs::write(&file, config).unwrap();
    let (ok, out, err) = run(crate::common::binary::proxy()
        .args(["check", "--config"])
        .arg(&file));
    assert!(ok, "{err}");
    assert!(out.contains("AgentCore Identity M2M token"), "{out}");
}
