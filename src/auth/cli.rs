//! The credential flags of the zero-file mode. At most one source may be chosen.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::Args;

use super::config::CredentialConfig;

#[derive(Debug, Clone, Default, Args)]
pub struct CredentialArgs {
    /// Environment variable holding the gateway bearer token.
    #[arg(long, env = "MCP_VPCE_PROXY_TOKEN_ENV", value_name = "VAR")]
    pub token_env: Option<String>,
    /// File holding the gateway bearer token (re-read when it changes).
    #[arg(long, env = "MCP_VPCE_PROXY_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// Forward the agent's own Authorization header instead of attaching a credential.
    #[arg(long, env = "MCP_VPCE_PROXY_PASSTHROUGH_AUTH", value_parser = BoolishValueParser::new())]
    pub passthrough_auth: bool,
}

impl CredentialArgs {
    /// The credential the flags describe, `None` when no credential flag was given.
    pub fn to_config(&self) -> Result<Option<CredentialConfig>, String> {
        let mut chosen = Vec::new();
        if let Some(env) = &self.token_env {
            chosen.push(CredentialConfig::Static { env: env.clone() });
        }
        if let Some(path) = &self.token_file {
            chosen.push(CredentialConfig::File { path: path.clone() });
        }
        if self.passthrough_auth {
            chosen.push(CredentialConfig::Passthrough);
        }
        match chosen.len() {
            0 => Ok(None),
            1 => Ok(chosen.pop()),
            _ => Err(
                "choose one credential source (--token-env, --token-file, --passthrough-auth, ...)"
                    .into(),
            ),
        }
    }
}
