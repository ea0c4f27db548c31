//! The proxy binary as a user runs it: a clean `MCP_VPCE_PROXY_*` environment, and its
//! exit status and output.

use std::process::{Command, Output};

/// `mcp-vpce-proxy` with no `MCP_VPCE_PROXY_*` setting leaking in from the caller.
pub fn proxy() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
    for (key, _) in std::env::vars() {
        if key.starts_with("MCP_VPCE_PROXY_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

/// Runs it to the end: (success, stdout, stderr).
pub fn run(cmd: &mut Command) -> (bool, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("the binary runs");
    (
        status.success(),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}
