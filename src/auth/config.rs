//! The `[route.credential]` table: where a route's gateway credential comes from.
//!
//! Every setting is declared once here, with its default; `validate` checks at load what
//! can be checked without contacting anything (URLs, files, environment variables).

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

/// Where the route's gateway credential comes from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// No credential is attached; the caller's Authorization is removed.
    #[default]
    None,
    /// The caller's own Authorization header goes to the gateway unchanged.
    Passthrough,
    /// A bearer token read from an environment variable at start.
    Static { env: String },
    /// A bearer token read from a file, re-read when the file changes.
    File { path: PathBuf },
    /// An OAuth 2.0 client-credentials token (the CUSTOM_JWT inbound authorizer).
    Oauth2(OAuth2Config),
    /// A token printed by a program (the escape hatch for any identity system).
    Command(CommandConfig),
    /// AWS SigV4 signatures (the AWS_IAM inbound authorizer).
    Sigv4(Sigv4Config),
    /// An M2M token obtained through AgentCore Identity (stays on PrivateLink).
    AgentcoreIdentity(AgentCoreIdentityConfig),
    /// An M2M token from Cognito's `GetClientToken` API (reachable over PrivateLink).
    CognitoClientToken(CognitoClientTokenConfig),
    /// A bearer token stored in AWS Secrets Manager, re-read on an interval and a 401.
    SecretsManager(SecretsManagerConfig),
    /// A bearer token stored in an SSM parameter, re-read on an interval and a 401.
    SsmParameter(SsmParameterConfig),
}

pub use super::config_aws::{CognitoClientTokenConfig, SecretsManagerConfig, SsmParameterConfig};

/// How the client authenticates to the token endpoint (RFC 6749 2.3.1).
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ClientAuth {
    /// `client_secret_basic`: HTTP Basic with the form-encoded id and secret.
    #[default]
    Basic,
    /// `client_secret_post`: id and secret in the form body.
    Post,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct OAuth2Config {
    /// The token endpoint; https, or http on a loopback address.
    pub token_url: String,
    /// The client id itself (not a secret), or where to read it.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_id_env: Option<String>,
    #[serde(default)]
    pub client_id_file: Option<PathBuf>,
    /// Where the client secret is: an environment variable or a file (re-read at each
    /// fetch, so a rotated secret is picked up).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Space-separated scopes to request.
    #[serde(default)]
    pub scope: Option<String>,
    #[serde(default)]
    pub client_auth: ClientAuth,
    /// Extra PEM CA certificates trusted for the token endpoint.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Refresh this long before the token expires (capped at half the token's lifetime,
    /// so that short-lived tokens are not fetched on every request).
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Time allowed for one fetch.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// The command to run: a string goes to `/bin/sh -c`, a list is run as is (no shell).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub enum CommandLine {
    Shell(String),
    Argv(Vec<String>),
}

impl CommandLine {
    /// Program and arguments.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell(s) => vec!["/bin/sh".into(), "-c".into(), s.clone()],
            CommandLine::Argv(v) => v.clone(),
        }
    }

    /// The program's name, for logs: arguments may hold secrets, so they are not shown,
    /// and neither are the `NAME=value` assignments a shell line may start with.
    pub fn program(&self) -> String {
        let first = match self {
            CommandLine::Shell(s) => s
                .split_whitespace()
                .find(|word| !word.contains('='))
                .unwrap_or(""),
            CommandLine::Argv(v) => v.first().map(String::as_str).unwrap_or(""),
        };
        first.to_string()
    }
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CommandConfig {
    pub command: CommandLine,
    /// How long a token without a known expiry (no JSON `expires_in`/`expires_at`, no JWT
    /// `exp`) is used before the command runs again.
    #[serde(default = "default_cache_for", with = "humantime_serde")]
    pub cache_for: Duration,
    /// Refresh this long before the token expires (capped at half the token's lifetime,
    /// so that short-lived tokens are not fetched on every request).
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Time allowed for one fetch.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Sigv4Config {
    /// The signing region; default: read from the gateway host
    /// (`<id>.gateway.bedrock-agentcore.<region>.amazonaws.com`).
    #[serde(default)]
    pub region: Option<String>,
    /// The signing service name.
    #[serde(default = "default_service")]
    pub service: String,
    /// A named profile of the shared AWS config files instead of the default chain's.
    #[serde(default)]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AgentCoreIdentityConfig {
    /// The workload identity's name (`GetWorkloadAccessToken`'s `workloadName`).
    pub workload_name: String,
    /// The OAuth2 credential provider (`resourceCredentialProviderName`).
    pub provider_name: String,
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Default: read from the gateway host.
    #[serde(default)]
    pub region: Option<String>,
    /// The data-plane endpoint; default `https://bedrock-agentcore.<region>.amazonaws.com`
    /// (resolves to the interface endpoint when its private DNS is on).
    #[serde(default)]
    pub endpoint: Option<String>,
    /// A named profile for the AWS credentials that sign the two calls.
    #[serde(default)]
    pub profile: Option<String>,
    /// Extra PEM CA certificates trusted for the endpoint.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Refresh this long before the token expires (capped at half the token's lifetime,
    /// so that short-lived tokens are not fetched on every request).
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Time allowed for one fetch.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

pub(crate) fn default_refresh_margin() -> Duration {
    Duration::from_secs(300)
}
pub(crate) fn default_fetch_timeout() -> Duration {
    Duration::from_secs(10)
}
pub(crate) fn default_cache_for() -> Duration {
    Duration::from_secs(300)
}
pub(crate) fn default_service() -> String {
    "bedrock-agentcore".into()
}

impl CredentialConfig {
    /// The source's name, for metrics labels and messages.
    pub fn source(&self) -> &'static str {
        match self {
            CredentialConfig::None => "none",
            CredentialConfig::Passthrough => "passthrough",
            CredentialConfig::Static { .. } => "static",
            CredentialConfig::File { .. } => "file",
            CredentialConfig::Oauth2(_) => "oauth2",
            CredentialConfig::Command(_) => "command",
            CredentialConfig::Sigv4(_) => "sigv4",
            CredentialConfig::AgentcoreIdentity(_) => "agentcore_identity",
            CredentialConfig::CognitoClientToken(_) => "cognito_client_token",
            CredentialConfig::SecretsManager(_) => "secrets_manager",
            CredentialConfig::SsmParameter(_) => "ssm_parameter",
        }
    }

    /// What can be checked at load without contacting anything.
    pub fn validate(&self) -> Result<(), String> {
        match self {
            CredentialConfig::Oauth2(c) => c.validate(),
            CredentialConfig::Command(c) => c.validate(),
            CredentialConfig::Sigv4(c) => {
                if let Some(region) = &c.region {
                    check_region(region)?;
                }
                check_label("service", &c.service)
            }
            CredentialConfig::AgentcoreIdentity(c) => c.validate(),
            CredentialConfig::CognitoClientToken(c) => c.validate(),
            CredentialConfig::SecretsManager(c) => c.validate(),
            CredentialConfig::SsmParameter(c) => c.validate(),
            _ => Ok(()),
        }
    }
}

impl OAuth2Config {
    fn validate(&self) -> Result<(), String> {
        check_fetch_url("token_url", &self.token_url)?;
        let ids = [
            self.client_id.is_some(),
            self.client_id_env.is_some(),
            self.client_id_file.is_some(),
        ];
        if ids.iter().filter(|x| **x).count() != 1 {
            return Err("give exactly one of client_id, client_id_env, client_id_file".into());
        }
        if self.client_secret_env.is_some() == self.client_secret_file.is_some() {
            return Err("give exactly one of client_secret_env, client_secret_file".into());
        }
        self.client_id_source().read()?;
        self.client_secret_source().read()?;
        if let Some(scope) = &self.scope {
            if scope.trim().is_empty() || scope.chars().any(|c| c.is_control()) {
                return Err(format!(
                    "scope {scope:?} must be non-empty and free of control characters"
                ));
            }
        }
        if let Some(ca) = &self.ca_file {
            crate::upstream::tls::read_ca_file(ca)?;
        }
        check_timeout(self.timeout)
    }

    pub fn client_id_source(&self) -> super::secret_source::SecretSource {
        use super::secret_source::SecretSource;
        match (&self.client_id, &self.client_id_env, &self.client_id_file) {
            (Some(id), _, _) => SecretSource::Literal(id.clone(), "client_id"),
            (_, Some(env), _) => SecretSource::Env(env.clone(), "client id"),
            (_, _, Some(path)) => SecretSource::File(path.clone(), "client id"),
            _ => SecretSource::Missing("client id"),
        }
    }

    pub fn client_secret_source(&self) -> super::secret_source::SecretSource {
        use super::secret_source::SecretSource;
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(env), _) => SecretSource::Env(env.clone(), "client secret"),
            (_, Some(path)) => SecretSource::File(path.clone(), "client secret"),
            _ => SecretSource::Missing("client secret"),
        }
    }
}

impl CommandConfig {
    fn validate(&self) -> Result<(), String> {
        let argv = self.command.argv();
        if argv.iter().all(|a| a.trim().is_empty()) || self.command.program().is_empty() {
            return Err("command is empty".into());
        }
        if self.cache_for.is_zero() {
            return Err("cache_for must be greater than 0".into());
        }
        check_timeout(self.timeout)
    }
}

impl AgentCoreIdentityConfig {
    fn validate(&self) -> Result<(), String> {
        check_label("workload_name", &self.workload_name)?;
        check_label("provider_name", &self.provider_name)?;
        for scope in &self.scopes {
            if scope.is_empty() || scope.chars().any(|c| c.is_control() || c == ' ') {
                return Err(format!("scopes: {scope:?} is not a scope"));
            }
        }
        if let Some(region) = &self.region {
            check_region(region)?;
        }
        if let Some(endpoint) = &self.endpoint {
            check_fetch_url("endpoint", endpoint)?;
        }
        if let Some(ca) = &self.ca_file {
            crate::upstream::tls::read_ca_file(ca)?;
        }
        check_timeout(self.timeout)
    }
}

/// A fetch must be allowed some time.
fn check_timeout(timeout: Duration) -> Result<(), String> {
    if timeout.is_zero() {
        return Err("timeout must be greater than 0".into());
    }
    Ok(())
}

/// Names sent in JSON bodies or signatures: letters, digits, `-`, `_`, `.`.
fn check_label(key: &str, value: &str) -> Result<(), String> {
    if value.is_empty()
        || !value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(format!(
            "{key} {value:?} must be non-empty letters, digits, '-', '_', '.'"
        ));
    }
    Ok(())
}

/// An AWS region name like `us-east-1`.
pub fn check_region(region: &str) -> Result<(), String> {
    let ok = !region.is_empty()
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && region.contains('-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "region {region:?} is not an AWS region name like us-east-1"
        ))
    }
}

/// Endpoints the proxy fetches credentials from: https, or plain http only on a loopback
/// address (a local identity agent, tests), since the request carries a client secret or
/// returns a token.
pub fn check_fetch_url(key: &str, value: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = value
        .parse()
        .map_err(|e| format!("{key} is not a URL ({e}): {value:?}"))?;
    let host = uri
        .host()
        .ok_or_else(|| format!("{key} {value:?} has no host"))?;
    if uri.authority().is_some_and(|a| a.as_str().contains('@')) {
        return Err(format!("{key} must not contain user information"));
    }
    match uri.scheme_str() {
        Some("https") => Ok(uri),
        Some("http") if is_loopback(host) => Ok(uri),
        Some("http") => Err(format!(
            "{key} {value:?} must be https (plain http only on a loopback address)"
        )),
        _ => Err(format!("{key} {value:?} must be an https:// URL")),
    }
}

/// `127.0.0.0/8`, `[::1]` or `localhost`.
pub fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_urls_must_be_https_except_on_loopback() {
        assert!(check_fetch_url("token_url", "https://auth.example.com/oauth2/token").is_ok());
        assert!(check_fetch_url("token_url", "http://127.0.0.1:9000/token").is_ok());
        assert!(check_fetch_url("token_url", "http://[::1]:9000/token").is_ok());
        assert!(check_fetch_url("token_url", "http://localhost/token").is_ok());
        assert_eq!(
            check_fetch_url("token_url", "http://auth.example.com/token").unwrap_err(),
            "token_url \"http://auth.example.com/token\" must be https (plain http only on a loopback address)"
        );
        assert!(
            check_fetch_url("token_url", "https://u:p@auth.example.com/t")
                .unwrap_err()
                .contains("user information")
        );
    }

    #[test]
    fn oauth2_tables_parse_with_defaults_and_reject_typos() {
        #[derive(Deserialize)]
        struct Holder {
            credential: CredentialConfig,
        }
        let h: Holder = toml::from_str(
            "[credential]\ntype = \"oauth2\"\ntoken_url = \"https://a.example/t\"\nclient_id = \"id\"\nclient_secret_env = \"S\"\n",
        )
        .unwrap();
        let CredentialConfig::Oauth2(c) = h.credential else {
            panic!("not oauth2")
        };
        assert_eq!(c.client_auth, ClientAuth::Basic);
        assert_eq!(c.refresh_margin, Duration::from_secs(300));
        let e = toml::from_str::<Holder>(
            "[credential]\ntype = \"oauth2\"\ntoken_url = \"https://a.example/t\"\nclient_id = \"id\"\nclient_secert_env = \"S\"\n",
        )
        .err()
        .unwrap();
        assert!(e.to_string().contains("client_secert_env"), "{e}");
    }

    #[test]
    fn a_command_is_shown_by_its_program_only() {
        let shell = CommandLine::Shell("VAULT_TOKEN=s3cr3t X=1 vault read -field=token k".into());
        assert_eq!(shell.program(), "vault");
        let argv = CommandLine::Argv(vec!["/bin/get-token".into(), "--password=pw".into()]);
        assert_eq!(argv.program(), "/bin/get-token");
    }

    #[test]
    fn regions_are_checked() {
        assert!(check_region("us-east-1").is_ok());
        assert!(check_region("US-EAST-1").is_err());
        assert!(check_region("useast1").is_err());
    }
}
