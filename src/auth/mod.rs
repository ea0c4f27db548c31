//! Gateway credentials: one small trait, one file per source.
//!
//! A route holds one `Arc<dyn Credential>`, built once from its `[route.credential]`
//! table. The trait sees the whole outgoing request (head and buffered body) so that
//! sources which sign requests (SigV4) fit the same slot as bearer tokens.

pub mod cli;
pub mod config;
mod file_token;
mod passthrough;
mod static_token;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use http::HeaderValue;

pub use config::CredentialConfig;

pub use file_token::FileToken;
pub use passthrough::{NoCredential, Passthrough};
pub use static_token::StaticToken;

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

pub trait Credential: Send + Sync {
    /// Attaches the credential to an upstream request. `body` is the request body as it
    /// will be sent (empty for GET/DELETE), for sources that sign it.
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>>;

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

    /// Whether a usable credential is at hand now (for `/readyz`), or why not. Sources
    /// that fetch credentials report a failed or expired fetch here.
    fn ready(&self) -> Result<(), String> {
        Ok(())
    }

    /// What `check` and logs may show: the source and a fingerprint, never the value.
    fn describe(&self) -> String;
}

/// Builds the credential a route's configuration asks for.
pub fn build(config: &CredentialConfig) -> Result<Arc<dyn Credential>, String> {
    Ok(match config {
        CredentialConfig::None => Arc::new(NoCredential),
        CredentialConfig::Passthrough => Arc::new(Passthrough),
        CredentialConfig::Static { env } => Arc::new(StaticToken::from_env(env)?),
        CredentialConfig::File { path } => Arc::new(FileToken::open(path)?),
    })
}

/// Validation at load: the source exists and yields a usable header value.
pub fn check(config: &CredentialConfig) -> Result<(), String> {
    build(config).map(|_| ())
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
