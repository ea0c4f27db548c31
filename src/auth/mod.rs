//! Gateway credentials: one small trait, one file per source.
//!
//! A route holds one `Arc<dyn Credential>`, built once from its `[route.credential]`
//! table. The trait sees the whole outgoing request (head and buffered body) so that
//! sources which sign requests (SigV4) fit the same slot as bearer tokens.
//!
//! | source | file | what it attaches |
//! |---|---|---|
//! | `none`, `passthrough` | `passthrough.rs` | nothing / the caller's own Authorization |
//! | `static` | `static_token.rs` | a bearer token from an environment variable |
//! | `file` | `file_token.rs` | a bearer token from a file, re-read when it changes |
//! | `oauth2` | `oauth2.rs` | a client-credentials access token, cached and refreshed |
//! | `command` | `command.rs` | a token printed by a program, cached until it expires |
//! | `sigv4` | `sigv4.rs` | an AWS SigV4 signature (AWS_IAM inbound authorizer) |
//! | `agentcore_identity` | `agentcore_identity.rs` | an M2M token from AgentCore Identity |
//! | `cognito_client_token` | `cognito_client_token.rs` | an M2M token from Cognito's `GetClientToken` |
//! | `secrets_manager`, `ssm_parameter` | `secrets_manager.rs` | a token stored in AWS, re-read on an interval |
//!
//! The fetching sources share `cache.rs` (single flight, refresh ahead of expiry,
//! backoff) and `fetch_client.rs` (the HTTPS client for token endpoints, proxy-aware, or
//! private: in-VPC addresses only); the AWS API sources share `aws_json.rs` (a signed
//! JSON call and its error) and `config_aws.rs` (their tables, region and endpoint).

#[cfg(feature = "aws")]
mod agentcore_identity;
#[cfg(feature = "aws")]
mod aws_credentials;
#[cfg(feature = "aws")]
mod aws_json;
mod cache;
pub mod cli;
#[cfg(feature = "aws")]
mod cognito_client_token;
mod command;
pub mod config;
mod config_aws;
mod fetch_client;
mod file_token;
mod jwt;
mod oauth2;
mod passthrough;
mod scrub;
pub mod secret;
mod secret_source;
#[cfg(feature = "aws")]
mod secrets_manager;
#[cfg(feature = "aws")]
mod sigv4;
mod static_token;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::SystemTime;

use http::HeaderValue;

pub use config::CredentialConfig;

pub use file_token::FileToken;
pub use passthrough::{NoCredential, Passthrough};
pub use static_token::StaticToken;

#[cfg(feature = "aws")]
pub use sigv4::{region_from_gateway_host, sign_request, SigningInput};

pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a credential could not be had. The message is shown to the agent and logged, so it
/// never contains the secret itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialError(pub String);

impl std::fmt::Display for CredentialError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What `/readyz` and `/routes` may show about a route's credential.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialState {
    /// A request arriving now would get a credential: one is cached and unexpired, or
    /// none was fetched yet and no fetch has failed (the first request fetches it).
    pub ready: bool,
    /// When the credential in use expires, if known.
    pub expires_at: Option<SystemTime>,
    /// Why the last fetch failed, while it has not succeeded since.
    pub last_error: Option<String>,
}

impl CredentialState {
    /// A source that needs nothing fetched: always ready, never expires.
    pub fn always_ready() -> Self {
        CredentialState {
            ready: true,
            expires_at: None,
            last_error: None,
        }
    }
}

pub trait Credential: Send + Sync {
    /// Attaches the credential to an upstream request. `body` is the request body as it
    /// will be sent (empty for GET/DELETE), for sources that sign it.
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>>;

    /// Attaches the credential at once when no waiting is needed (a static token, a
    /// cached one still fresh), so that most requests cost no boxed future; `None`: call
    /// [`apply`](Credential::apply). A source that signs the body never answers here.
    fn apply_now(&self, _parts: &mut http::request::Parts) -> Option<Result<(), CredentialError>> {
        None
    }

    /// True when the caller's own `Authorization` must reach the gateway.
    fn forwards_caller_authorization(&self) -> bool {
        false
    }

    /// True when `invalidate` can make the next `apply` yield a different credential, so
    /// that a request refused with 401 is worth one replay.
    fn refreshable(&self) -> bool {
        false
    }

    /// The gateway refused the credential (401): drop any cached copy so that the next
    /// `apply` fetches or re-reads a fresh one.
    fn invalidate(&self) {}

    /// The credential's health: ready or not, expiry, last fetch error.
    fn state(&self) -> CredentialState {
        CredentialState::always_ready()
    }

    /// Whether a usable credential is at hand now (for `/readyz`), or why not. Sources
    /// that fetch credentials report a failed or expired fetch here.
    fn ready(&self) -> Result<(), String> {
        let state = self.state();
        if state.ready {
            Ok(())
        } else {
            Err(state
                .last_error
                .unwrap_or_else(|| "no credential fetched yet".into()))
        }
    }

    /// What `check` and logs may show: the source and a fingerprint, never the value.
    fn describe(&self) -> String;

    /// The service a fetching source calls (token endpoint, AWS API), for `doctor`.
    fn source_endpoint(&self) -> Option<&SourceEndpoint> {
        None
    }
}

/// The endpoint a fetching source calls, and how it is dialed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceEndpoint {
    /// The URL called, as messages name it.
    pub url: String,
    /// Its host (a name or an address, without brackets) and port.
    pub host: String,
    pub port: u16,
    /// Dialed only at in-VPC addresses through the proxy's resolver (`require_private`);
    /// otherwise through the system resolver or `HTTPS_PROXY`.
    pub private: bool,
}

impl SourceEndpoint {
    pub fn new(url: &str, private: bool) -> SourceEndpoint {
        let uri: Option<http::Uri> = url.parse().ok();
        let host = uri
            .as_ref()
            .and_then(|u| u.host())
            .unwrap_or("")
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri
            .as_ref()
            .and_then(|u| {
                u.port_u16().or(Some(if u.scheme_str() == Some("http") {
                    80
                } else {
                    443
                }))
            })
            .unwrap_or(443);
        SourceEndpoint {
            url: url.to_string(),
            host,
            port,
            private,
        }
    }
}

/// What a credential may need to know about its route.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    /// The route's name, for metrics and logs.
    pub route: &'a str,
    /// The gateway's host name: the SigV4 region is read from it.
    pub gateway_host: &'a str,
    /// The route's resolver and in-VPC ranges, for sources whose endpoint must stay
    /// inside the VPC.
    pub dns: &'a Arc<crate::upstream::dns::Dns>,
}

/// Builds the credential a route's configuration asks for. Nothing is fetched here: the
/// fetching sources fetch on the first request (and `check` never calls a token endpoint).
pub fn build(
    config: &CredentialConfig,
    context: &Context<'_>,
) -> Result<Arc<dyn Credential>, String> {
    config.validate()?;
    Ok(match config {
        CredentialConfig::None => Arc::new(NoCredential),
        CredentialConfig::Passthrough => Arc::new(Passthrough),
        CredentialConfig::Static { env } => Arc::new(StaticToken::from_env(env)?),
        CredentialConfig::File { path } => Arc::new(FileToken::open(path)?),
        CredentialConfig::Oauth2(c) => Arc::new(oauth2::OAuth2::build(c, context)?),
        CredentialConfig::Command(c) => Arc::new(command::TokenCommand::build(c, context)?),
        #[cfg(feature = "aws")]
        CredentialConfig::Sigv4(c) => Arc::new(sigv4::Sigv4::build(c, context)?),
        #[cfg(feature = "aws")]
        CredentialConfig::AgentcoreIdentity(c) => {
            Arc::new(agentcore_identity::AgentCoreIdentity::build(c, context)?)
        }
        #[cfg(feature = "aws")]
        CredentialConfig::CognitoClientToken(c) => {
            Arc::new(cognito_client_token::CognitoClientToken::build(c, context)?)
        }
        #[cfg(feature = "aws")]
        CredentialConfig::SecretsManager(c) => {
            Arc::new(secrets_manager::build_secrets_manager(c, context)?)
        }
        #[cfg(feature = "aws")]
        CredentialConfig::SsmParameter(c) => {
            Arc::new(secrets_manager::build_ssm_parameter(c, context)?)
        }
        #[cfg(not(feature = "aws"))]
        CredentialConfig::Sigv4(_)
        | CredentialConfig::AgentcoreIdentity(_)
        | CredentialConfig::CognitoClientToken(_)
        | CredentialConfig::SecretsManager(_)
        | CredentialConfig::SsmParameter(_) => {
            return Err(
                "this build has no AWS support (cargo feature `aws` is off); rebuild with it"
                    .into(),
            )
        }
    })
}

/// Validation at load: the source exists and yields a usable header value. Needs no
/// runtime and contacts nothing.
pub fn check(config: &CredentialConfig) -> Result<(), String> {
    config.validate()?;
    match config {
        CredentialConfig::Static { env } => StaticToken::from_env(env).map(|_| ()),
        CredentialConfig::File { path } => FileToken::open(path).map(|_| ()),
        _ => Ok(()),
    }
}

/// A JWT's claims (unverified: for showing scopes and expiry, never for trusting them).
pub fn jwt_claims(token: &str) -> Option<serde_json::Value> {
    jwt::claims(token)
}

/// Turns a token into an `Authorization` value: `Bearer <token>` unless the text already
/// carries a scheme. Rejects what cannot be a header (CR, LF and other controls), so a
/// token can never inject a header.
pub fn bearer_value(token: &str, origin: &str) -> Result<HeaderValue, String> {
    let token = token.trim();
    if token.is_empty() {
        return Err(format!("{origin} is empty"));
    }
    let text = if token.len() > 7 && token[..7].eq_ignore_ascii_case("bearer ") {
        token.to_string()
    } else {
        format!("Bearer {token}")
    };
    let mut value = HeaderValue::from_str(&text)
        .map_err(|_| format!("{origin} contains characters not allowed in a header (CR, LF or other control characters)"))?;
    value.set_sensitive(true);
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_values_are_prefixed_once_and_reject_injection() {
        assert_eq!(bearer_value(" abc \n", "t").unwrap(), "Bearer abc");
        assert_eq!(bearer_value("Bearer abc", "t").unwrap(), "Bearer abc");
        assert!(bearer_value("abc\r\nX-Evil: 1", "t")
            .unwrap_err()
            .contains("not allowed"));
        assert!(bearer_value("  ", "t").unwrap_err().contains("empty"));
        assert!(!format!("{:?}", bearer_value("abc", "t").unwrap()).contains("abc"));
    }
}
