//! A bearer token read once from an environment variable.

use http::header::AUTHORIZATION;
use http::HeaderValue;

use super::{bearer_value, BoxFuture, Credential, CredentialError};
use crate::auth::secret::fingerprint;

pub struct StaticToken {
    env: String,
    value: HeaderValue,
}

impl StaticToken {
    pub fn from_env(env: &str) -> Result<Self, String> {
        let token = std::env::var(env)
            .map_err(|_| format!("environment variable {env} is not set (or not UTF-8)"))?;
        let value = bearer_value(&token, &format!("environment variable {env}"))?;
        Ok(StaticToken {
            env: env.to_string(),
            value,
        })
    }
}

impl Credential for StaticToken {
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>> {
        let applied = self.apply_now(parts).unwrap_or(Ok(()));
        Box::pin(async { applied })
    }

    fn apply_now(&self, parts: &mut http::request::Parts) -> Option<Result<(), CredentialError>> {
        parts.headers.insert(AUTHORIZATION, self.value.clone());
        Some(Ok(()))
    }

    fn describe(&self) -> String {
        format!(
            "static bearer token from env {} ({})",
            self.env,
            fingerprint(self.value.as_bytes())
        )
    }
}
