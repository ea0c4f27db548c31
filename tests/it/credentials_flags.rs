//! The zero-file credential flags (and their `MCP_VPCE_PROXY_*` variables), as `check`
//! shows them.

use std::process::Command;

const GATEWAY: &str = "https://gw-1.gateway.bedrock-agentcore.eu-west-1.amazonaws.com/mcp";

fn proxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .arg("check");
    cmd
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `credential` line of `check` output.
fn credential_line(stdout: &str) -> String {
    stdout
        .lines()
        .find_map(|l| l.trim().strip_prefix("credential"))
        .map(|l| l.trim().to_string())
        .unwrap_or_else(|| panic!("no credential line in:\n{stdout}"))
}

const SECRET: &str = "flag-secret-Pq7z";

fn fingerprint() -> String {
    mcp_vpce_proxy::auth::secret::Secret::new(SECRET).fingerprint()
}

#[test]
fn oauth_flags_configure_client_credentials() {
    let (ok, stdout, stderr) = run(proxy()
        .args(["--gateway", GATEWAY])
        .args(["--oauth-token-url", "https://auth.example.com/oauth2/token"])
        .args(["--oauth-client-id-env", "CLIENT_ID"])
        .args(["--oauth-client-secret-env", "CLIENT_SECRET"])
        .args(["--oauth-scope", "gateway/invoke"])
        .args(["--oauth-client-auth", "post"])
        .env("CLIENT_ID", "proxy-client")
        .env("CLIENT_SECRET", SECRET));
    assert!(ok, "{stderr}");
    assert_eq!(
        credential_line(&stdout),
        format!(
            "oauth2 client credentials from https://auth.example.com/oauth2/token (client id \
             env CLIENT_ID, secret env CLIENT_SECRET ({}), client_secret_post, scope \"gateway/invoke\")",
            fingerprint()
        )
    );
    assert!(!stdout.contains(SECRET));
}

#[test]
fn oauth_settings_come_from_the_environment_too() {
    let (ok, stdout, stderr) = run(proxy()
        .env("MCP_VPCE_PROXY_GATEWAY", GATEWAY)
        .env(
            "MCP_VPCE_PROXY_OAUTH_TOKEN_URL",
            "https://auth.example.com/t",
        )
        .env("MCP_VPCE_PROXY_OAUTH_CLIENT_ID_ENV", "CLIENT_ID")
        .env("MCP_VPCE_PROXY_OAUTH_CLIENT_SECRET_ENV", "CLIENT_SECRET")
        .env("CLIENT_ID", "proxy-client")
        .env("CLIENT_SECRET", SECRET));
    assert!(ok, "{stderr}");
    assert_eq!(
        credential_line(&stdout),
        format!(
            "oauth2 client credentials from https://auth.example.com/t (client id env CLIENT_ID, \
             secret env CLIENT_SECRET ({}), client_secret_basic)",
            fingerprint()
        )
    );
}

#[test]
fn a_missing_client_secret_is_an_error_at_load() {
    let (ok, _, stderr) = run(proxy()
        .args(["--gateway", GATEWAY])
        .args(["--oauth-token-url", "https://auth.example.com/t"])
        .args(["--oauth-client-id", "proxy-client"])
        .args(["--oauth-client-secret-env", "NOT_SET_ANYWHERE"]));
    assert!(!ok);
    assert!(
        stderr.trim_end().ends_with(
            "client secret: environment variable NOT_SET_ANYWHERE is not set (or not UTF-8)"
        ),
        "{stderr}"
    );
}

#[test]
fn sigv4_flags_sign_with_the_given_region() {
    let (ok, stdout, stderr) = run(proxy().args([
        "--gateway",
        GATEWAY,
        "--sigv4",
        "--aws-region",
        "eu-central-1",
    ]));
    assert!(ok, "{stderr}");
    assert_eq!(
        credential_line(&stdout),
        "AWS SigV4 (service bedrock-agentcore, region eu-central-1, credentials from the default AWS chain)"
    );
    let (ok, stdout, _) = run(proxy()
        .env("MCP_VPCE_PROXY_GATEWAY", GATEWAY)
        .env("MCP_VPCE_PROXY_SIGV4", "true"));
    assert!(ok);
    assert!(
        credential_line(&stdout).contains("region eu-west-1"),
        "{stdout}"
    );
}

#[test]
fn token_command_flag_runs_through_the_shell() {
    let (ok, stdout, stderr) = run(proxy()
        .args(["--gateway", GATEWAY])
        .args(["--token-command", "print-gateway-token --password hunter2"]));
    assert!(ok, "{stderr}");
    assert_eq!(
        credential_line(&stdout),
        "token printed by command print-gateway-token (cached until it expires, else for 5m)"
    );
    assert!(!stdout.contains("hunter2"));
}

#[test]
fn two_credential_sources_are_refused() {
    let (ok, _, stderr) = run(proxy()
        .args(["--gateway", GATEWAY, "--sigv4"])
        .args(["--token-command", "x"]));
    assert!(!ok);
    assert!(stderr.contains("choose one credential source"), "{stderr}");
}
