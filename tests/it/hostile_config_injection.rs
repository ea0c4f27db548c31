//! Header injection through configuration: a CR/LF in anything that ends up in a request
//! line or header (a token from the environment or a file, an OAuth client id, the
//! gateway URL, a listener host name) is refused when the configuration is loaded, by
//! `check` as by `run`, with the key named and the secret not echoed.

use std::process::Command;

const INJECTED: &str = "tok-123\r\nX-Evil: 1";

/// Runs `check --config <toml>` with `EVIL_TOKEN` set to a value carrying CR/LF; returns
/// the exit success and stderr.
fn check(dir: &std::path::Path, toml: &str) -> (bool, String) {
    let config = dir.join("proxy.toml");
    std::fs::write(&config, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"))
        .args(["check", "--config"])
        .arg(&config)
        .env("EVIL_TOKEN", INJECTED)
        .env("CLIENT_SECRET", "client-secret-value")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn cr_lf_in_configuration_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{INJECTED}\n")).unwrap();
    let config = dir.path().join("proxy.toml");
    let source = config.display();
    let route = "[[route]]\ngateway = \"https://gw.example/mcp\"\n";
    let cases = [
        (
            format!("{route}credential = {{ type = \"static\", env = \"EVIL_TOKEN\" }}\n"),
            format!("mcp-vpce-proxy: {source}: route \"mcp\" (route[0]).credential: environment variable EVIL_TOKEN contains characters not allowed in a header (CR, LF or other control characters)\n"),
        ),
        (
            format!(
                "{route}credential = {{ type = \"file\", path = \"{}\" }}\n",
                token_file.display()
            ),
            format!(
                "mcp-vpce-proxy: {source}: route \"mcp\" (route[0]).credential: token file {} contains characters not allowed in a header (CR, LF or other control characters)\n",
                token_file.display()
            ),
        ),
        (
            format!("{route}[route.credential]\ntype = \"oauth2\"\ntoken_url = \"https://auth.example/t\"\nclient_id = \"id\\r\\nX-Evil: 1\"\nclient_secret_env = \"CLIENT_SECRET\"\n"),
            format!("mcp-vpce-proxy: {source}: route \"mcp\" (route[0]).credential: client_id contains control characters\n"),
        ),
        (
            "[[route]]\ngateway = \"https://gw.example/mcp\\r\\nX-Evil: 1\"\n".to_string(),
            format!("mcp-vpce-proxy: {source}: route \"mcp\" (route[0]).gateway: not a URL (invalid uri character): \"https://gw.example/mcp\\r\\nX-Evil: 1\"\n"),
        ),
        (
            format!("[inbound]\nallowed_hosts = [\"a.example\\r\\nX-Evil: 1\"]\n{route}"),
            format!("mcp-vpce-proxy: {source}: inbound.allowed_hosts[0]: \"a.example\\r\\nX-Evil: 1\" must be a bare host name (no scheme, port or path)\n"),
        ),
    ];
    for (toml, expected) in cases {
        let (ok, stderr) = check(dir.path(), &toml);
        assert!(!ok, "accepted:\n{toml}");
        assert_eq!(stderr, expected, "{toml}");
        assert!(
            !stderr.contains("tok-123"),
            "the secret was echoed: {stderr}"
        );
    }
}
