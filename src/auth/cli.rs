//! The credential flags of the zero-file mode. At most one source may be chosen. Every
//! flag can also come from `MCP_VPCE_PROXY_<NAME>`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::Args;

use super::config::{
    default_cache_for, default_fetch_timeout, default_refresh_margin, default_service, ClientAuth,
    CommandConfig, CommandLine, CredentialConfig, OAuth2Config, Sigv4Config,
};

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
    /// OAuth2 token endpoint for client credentials (https, or http on loopback).
    #[arg(long, env = "MCP_VPCE_PROXY_OAUTH_TOKEN_URL", value_name = "URL")]
    pub oauth_token_url: Option<String>,
    /// OAuth2 client id (not a secret).
    #[arg(long, env = "MCP_VPCE_PROXY_OAUTH_CLIENT_ID", value_name = "ID")]
    pub oauth_client_id: Option<String>,
    /// Environment variable holding the OAuth2 client id.
    #[arg(long, env = "MCP_VPCE_PROXY_OAUTH_CLIENT_ID_ENV", value_name = "VAR")]
    pub oauth_client_id_env: Option<String>,
    /// Environment variable holding the OAuth2 client secret.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_OAUTH_CLIENT_SECRET_ENV",
        value_name = "VAR"
    )]
    pub oauth_client_secret_env: Option<String>,
    /// File holding the OAuth2 client secret (re-read at each token fetch).
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_OAUTH_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    pub oauth_client_secret_file: Option<PathBuf>,
    /// Space-separated scopes to request.
    #[arg(long, env = "MCP_VPCE_PROXY_OAUTH_SCOPE", value_name = "SCOPE")]
    pub oauth_scope: Option<String>,
    /// Client authentication at the token endpoint [default: basic].
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_OAUTH_CLIENT_AUTH",
        value_enum,
        value_name = "basic|post"
    )]
    pub oauth_client_auth: Option<ClientAuth>,
    /// Sign requests with AWS SigV4 (AWS_IAM inbound authorizer), credentials from the
    /// standard AWS chain.
    #[arg(long, env = "MCP_VPCE_PROXY_SIGV4", value_parser = BoolishValueParser::new())]
    pub sigv4: bool,
    /// SigV4 signing region [default: read from the gateway host].
    #[arg(long, env = "MCP_VPCE_PROXY_AWS_REGION", value_name = "REGION")]
    pub aws_region: Option<String>,
    /// Command that prints the gateway token (run with /bin/sh -c), cached until expiry.
    #[arg(long, env = "MCP_VPCE_PROXY_TOKEN_COMMAND", value_name = "CMD")]
    pub token_command: Option<String>,
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
        if let Some(oauth) = self.oauth2()? {
            chosen.push(oauth);
        }
        if self.sigv4 {
            chosen.push(CredentialConfig::Sigv4(Sigv4Config {
                region: self.aws_region.clone(),
                service: default_service(),
                profile: None,
            }));
        } else if self.aws_region.is_some() {
            return Err("--aws-region applies only with --sigv4".into());
        }
        if let Some(command) = &self.token_command {
            chosen.push(CredentialConfig::Command(CommandConfig {
                command: CommandLine::Shell(command.clone()),
                cache_for: default_cache_for(),
                refresh_margin: default_refresh_margin(),
                timeout: default_fetch_timeout(),
            }));
        }
        match chosen.len() {
            0 => Ok(None),
            1 => Ok(chosen.pop()),
            _ => Err(
                "choose one credential source (--token-env, --token-file, --passthrough-auth, \
                 --oauth-token-url, --sigv4, --token-command)"
                    .into(),
            ),
        }
    }

    fn oauth2(&self) -> Result<Option<CredentialConfig>, String> {
        let Some(token_url) = &self.oauth_token_url else {
            let stray = [
                ("--oauth-client-id", self.oauth_client_id.is_some()),
                ("--oauth-client-id-env", self.oauth_client_id_env.is_some()),
                (
                    "--oauth-client-secret-env",
                    self.oauth_client_secret_env.is_some(),
                ),
                (
                    "--oauth-client-secret-file",
                    self.oauth_client_secret_file.is_some(),
                ),
                ("--oauth-scope", self.oauth_scope.is_some()),
                ("--oauth-client-auth", self.oauth_client_auth.is_some()),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(format!("{flag} needs --oauth-token-url"));
            }
            return Ok(None);
        };
        Ok(Some(CredentialConfig::Oauth2(OAuth2Config {
            token_url: token_url.clone(),
            client_id: self.oauth_client_id.clone(),
            client_id_env: self.oauth_client_id_env.clone(),
            client_id_file: None,
            client_secret_env: self.oauth_client_secret_env.clone(),
            client_secret_file: self.oauth_client_secret_file.clone(),
            scope: self.oauth_scope.clone(),
            client_auth: self.oauth_client_auth.unwrap_or_default(),
            ca_file: None,
            refresh_margin: default_refresh_margin(),
            timeout: default_fetch_timeout(),
        })))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oauth_flags_make_one_oauth2_source() {
        let args = CredentialArgs {
            oauth_token_url: Some("https://auth.example/oauth2/token".into()),
            oauth_client_id_env: Some("ID".into()),
            oauth_client_secret_env: Some("SECRET".into()),
            oauth_client_auth: Some(ClientAuth::Post),
            ..Default::default()
        };
        let Some(CredentialConfig::Oauth2(c)) = args.to_config().unwrap() else {
            panic!("not oauth2")
        };
        assert_eq!(c.client_auth, ClientAuth::Post);
        assert_eq!(c.client_secret_env.as_deref(), Some("SECRET"));
    }

    #[test]
    fn stray_and_conflicting_flags_are_refused() {
        let stray = CredentialArgs {
            oauth_scope: Some("s".into()),
            ..Default::default()
        };
        assert_eq!(
            stray.to_config().unwrap_err(),
            "--oauth-scope needs --oauth-token-url"
        );
        let two = CredentialArgs {
            sigv4: true,
            token_command: Some("echo t".into()),
            ..Default::default()
        };
        assert!(two.to_config().unwrap_err().starts_with("choose one"));
        let region = CredentialArgs {
            aws_region: Some("us-east-1".into()),
            ..Default::default()
        };
        assert!(region.to_config().is_err());
    }
}
