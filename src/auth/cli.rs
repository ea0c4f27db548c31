//! The credential flags of the zero-file mode. At most one source may be chosen. Every
//! flag can also come from `MCP_VPCE_PROXY_<NAME>`.

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::Args;

use super::config::{
    default_cache_for, default_fetch_timeout, default_refresh_margin, default_service, ClientAuth,
    CognitoClientTokenConfig, CommandConfig, CommandLine, CredentialConfig, OAuth2Config,
    SecretsManagerConfig, Sigv4Config, SsmParameterConfig,
};
use super::config_aws::default_refresh_interval;

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
    /// AWS region of --sigv4 [default: read from the gateway host], --cognito-*,
    /// --secrets-manager-*, --ssm-parameter [default: from --aws-endpoint or AWS_REGION].
    #[arg(long, env = "MCP_VPCE_PROXY_AWS_REGION", value_name = "REGION")]
    pub aws_region: Option<String>,
    /// Cognito app client id: get the token from Cognito's GetClientToken API (reachable
    /// through the cognito-idp VPC endpoint, unlike a user pool's token URL).
    #[arg(long, env = "MCP_VPCE_PROXY_COGNITO_CLIENT_ID", value_name = "ID")]
    pub cognito_client_id: Option<String>,
    /// Environment variable holding the Cognito app client id.
    #[arg(long, env = "MCP_VPCE_PROXY_COGNITO_CLIENT_ID_ENV", value_name = "VAR")]
    pub cognito_client_id_env: Option<String>,
    /// Environment variable holding the Cognito app client secret.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_COGNITO_CLIENT_SECRET_ENV",
        value_name = "VAR"
    )]
    pub cognito_client_secret_env: Option<String>,
    /// File holding the Cognito app client secret (re-read at each token fetch).
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_COGNITO_CLIENT_SECRET_FILE",
        value_name = "FILE"
    )]
    pub cognito_client_secret_file: Option<PathBuf>,
    /// Space-separated Cognito scopes (resource-server-identifier/scope-name).
    #[arg(long, env = "MCP_VPCE_PROXY_COGNITO_SCOPES", value_name = "SCOPES")]
    pub cognito_scopes: Option<String>,
    /// Send GetClientToken without a SigV4 signature [default: signed].
    #[arg(long, env = "MCP_VPCE_PROXY_COGNITO_UNSIGNED", value_parser = BoolishValueParser::new())]
    pub cognito_unsigned: bool,
    /// Secrets Manager secret (name or ARN) holding the gateway token, re-read on an
    /// interval and on a 401.
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_SECRETS_MANAGER_SECRET_ID",
        value_name = "ID"
    )]
    pub secrets_manager_secret_id: Option<String>,
    /// The secret's version stage [default: AWSCURRENT].
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_SECRETS_MANAGER_VERSION_STAGE",
        value_name = "STAGE"
    )]
    pub secrets_manager_version_stage: Option<String>,
    /// SSM parameter (name or ARN; SecureString is decrypted) holding the gateway token,
    /// re-read on an interval and on a 401.
    #[arg(long, env = "MCP_VPCE_PROXY_SSM_PARAMETER", value_name = "NAME")]
    pub ssm_parameter: Option<String>,
    /// The stored value is a JSON object: the token is this key's value.
    #[arg(long, env = "MCP_VPCE_PROXY_SECRET_JSON_KEY", value_name = "KEY")]
    pub secret_json_key: Option<String>,
    /// How often the secret or parameter is read again [default: 5m].
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_SECRET_REFRESH_INTERVAL",
        value_name = "DURATION"
    )]
    pub secret_refresh_interval: Option<humantime::Duration>,
    /// The AWS API endpoint of --cognito-*, --secrets-manager-*, --ssm-parameter (a VPC
    /// endpoint's DNS name) [default: the regional name].
    #[arg(long, env = "MCP_VPCE_PROXY_AWS_ENDPOINT", value_name = "URL")]
    pub aws_endpoint: Option<String>,
    /// Dial that endpoint only at in-VPC addresses [default: true for a vpce- name].
    #[arg(
        long,
        env = "MCP_VPCE_PROXY_AWS_ENDPOINT_PRIVATE",
        value_parser = BoolishValueParser::new(),
        value_name = "BOOL"
    )]
    pub aws_endpoint_private: Option<bool>,
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
        let aws_apis = self.aws_apis()?;
        if self.sigv4 {
            chosen.push(CredentialConfig::Sigv4(Sigv4Config {
                region: self.aws_region.clone(),
                service: default_service(),
                profile: None,
            }));
        } else if self.aws_region.is_some() && aws_apis.is_empty() {
            return Err(
                "--aws-region applies only with --sigv4, --cognito-client-id(-env), \
                 --secrets-manager-secret-id or --ssm-parameter"
                    .into(),
            );
        }
        chosen.extend(aws_apis);
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
                 --oauth-token-url, --sigv4, --token-command, --cognito-client-id(-env), \
                 --secrets-manager-secret-id, --ssm-parameter)"
                    .into(),
            ),
        }
    }

    /// The sources that call an AWS API: Cognito's GetClientToken, Secrets Manager, SSM.
    fn aws_apis(&self) -> Result<Vec<CredentialConfig>, String> {
        let mut chosen = Vec::new();
        let cognito = self.cognito_client_id.is_some() || self.cognito_client_id_env.is_some();
        if cognito {
            chosen.push(CredentialConfig::CognitoClientToken(
                CognitoClientTokenConfig {
                    region: self.aws_region.clone(),
                    client_id: self.cognito_client_id.clone(),
                    client_id_env: self.cognito_client_id_env.clone(),
                    client_id_file: None,
                    client_secret_env: self.cognito_client_secret_env.clone(),
                    client_secret_file: self.cognito_client_secret_file.clone(),
                    scopes: self
                        .cognito_scopes
                        .as_deref()
                        .unwrap_or("")
                        .split_whitespace()
                        .map(str::to_string)
                        .collect(),
                    endpoint: self.aws_endpoint.clone(),
                    ca_file: None,
                    require_private: self.aws_endpoint_private,
                    unsigned: self.cognito_unsigned,
                    profile: None,
                    refresh_margin: default_refresh_margin(),
                    timeout: default_fetch_timeout(),
                },
            ));
        } else {
            let stray = [
                (
                    "--cognito-client-secret-env",
                    self.cognito_client_secret_env.is_some(),
                ),
                (
                    "--cognito-client-secret-file",
                    self.cognito_client_secret_file.is_some(),
                ),
                ("--cognito-scopes", self.cognito_scopes.is_some()),
                ("--cognito-unsigned", self.cognito_unsigned),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{flag} needs --cognito-client-id or --cognito-client-id-env"
                ));
            }
        }
        let refresh_interval = self
            .secret_refresh_interval
            .map_or_else(default_refresh_interval, Into::into);
        if let Some(secret_id) = &self.secrets_manager_secret_id {
            chosen.push(CredentialConfig::SecretsManager(SecretsManagerConfig {
                secret_id: secret_id.clone(),
                version_stage: self.secrets_manager_version_stage.clone(),
                json_key: self.secret_json_key.clone(),
                region: self.aws_region.clone(),
                endpoint: self.aws_endpoint.clone(),
                ca_file: None,
                require_private: self.aws_endpoint_private,
                profile: None,
                refresh_interval,
                timeout: default_fetch_timeout(),
            }));
        } else if self.secrets_manager_version_stage.is_some() {
            return Err("--secrets-manager-version-stage needs --secrets-manager-secret-id".into());
        }
        if let Some(name) = &self.ssm_parameter {
            chosen.push(CredentialConfig::SsmParameter(SsmParameterConfig {
                name: name.clone(),
                json_key: self.secret_json_key.clone(),
                region: self.aws_region.clone(),
                endpoint: self.aws_endpoint.clone(),
                ca_file: None,
                require_private: self.aws_endpoint_private,
                profile: None,
                refresh_interval,
                timeout: default_fetch_timeout(),
            }));
        }
        let stored = self.secrets_manager_secret_id.is_some() || self.ssm_parameter.is_some();
        if !stored {
            let stray = [
                ("--secret-json-key", self.secret_json_key.is_some()),
                (
                    "--secret-refresh-interval",
                    self.secret_refresh_interval.is_some(),
                ),
            ];
            if let Some((flag, _)) = stray.iter().find(|(_, given)| *given) {
                return Err(format!(
                    "{flag} needs --secrets-manager-secret-id or --ssm-parameter"
                ));
            }
        }
        if chosen.is_empty() && (self.aws_endpoint.is_some() || self.aws_endpoint_private.is_some())
        {
            return Err("--aws-endpoint and --aws-endpoint-private need \
                 --cognito-client-id(-env), --secrets-manager-secret-id or --ssm-parameter"
                .into());
        }
        Ok(chosen)
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
        let stray = CredentialArgs {
            cognito_scopes: Some("gateway/invoke".into()),
            ..Default::default()
        };
        assert_eq!(
            stray.to_config().unwrap_err(),
            "--cognito-scopes needs --cognito-client-id or --cognito-client-id-env"
        );
        let stray = CredentialArgs {
            secret_json_key: Some("token".into()),
            ..Default::default()
        };
        assert_eq!(
            stray.to_config().unwrap_err(),
            "--secret-json-key needs --secrets-manager-secret-id or --ssm-parameter"
        );
    }

    #[test]
    fn aws_api_flags_make_their_sources() {
        let args = CredentialArgs {
            cognito_client_id_env: Some("ID".into()),
            cognito_client_secret_file: Some("/run/secrets/cognito".into()),
            cognito_scopes: Some("gateway/invoke gateway/read".into()),
            aws_region: Some("eu-west-1".into()),
            aws_endpoint: Some("https://vpce-1.cognito-idp.eu-west-1.vpce.amazonaws.com".into()),
            ..Default::default()
        };
        let Some(CredentialConfig::CognitoClientToken(c)) = args.to_config().unwrap() else {
            panic!("not cognito_client_token")
        };
        assert_eq!(c.scopes, ["gateway/invoke", "gateway/read"]);
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        assert!(!c.unsigned);
        let args = CredentialArgs {
            secrets_manager_secret_id: Some("gw-token".into()),
            secret_json_key: Some("token".into()),
            secret_refresh_interval: Some("90s".parse().unwrap()),
            ..Default::default()
        };
        let Some(CredentialConfig::SecretsManager(c)) = args.to_config().unwrap() else {
            panic!("not secrets_manager")
        };
        assert_eq!(c.refresh_interval, std::time::Duration::from_secs(90));
        assert_eq!(c.json_key.as_deref(), Some("token"));
        let both = CredentialArgs {
            secrets_manager_secret_id: Some("a".into()),
            ssm_parameter: Some("/b".into()),
            ..Default::default()
        };
        assert!(both.to_config().unwrap_err().starts_with("choose one"));
    }
}
