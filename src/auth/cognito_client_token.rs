//! An M2M access token from Amazon Cognito's `GetClientToken` API (`cognito-idp`, JSON
//! 1.1). Unlike the client-credentials flow at a user pool's token endpoint (a domain
//! that is not reachable over PrivateLink), this API is served by the `cognito-idp`
//! interface endpoint, so a VPC without egress can get the gateway's Cognito token.
//!
//! The call carries the app client's id and secret (`ClientId`, `Secret`, optional
//! `Scopes`) and is SigV4-signed with the standard AWS credential chain as the SDKs do
//! (Cognito does not evaluate IAM for it; `unsigned = true` skips the signature). The
//! answer's `ExpiresIn` drives the refresh; the token is cached by `cache.rs`.

use std::time::{Duration, SystemTime};

use http::HeaderValue;
use serde_json::{json, Value};

use super::aws_credentials::AwsCredentials;
use super::aws_json::{printable, AwsError, AwsJsonApi, Call, ServiceError};
use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::CognitoClientTokenConfig;
use super::config_aws::check_client_secret;
use super::fetch_client::FetchClient;
use super::secret_source::SecretSource;
use super::{bearer_value, jwt, BoxFuture, Context, SourceEndpoint};
use crate::auth::secret::fingerprint;

const SERVICE: &str = "cognito-idp";
const TARGET: &str = "AWSCognitoIdentityProviderService.GetClientToken";
/// Cognito always sends `ExpiresIn`; should it not, and the token is not a JWT either.
const UNKNOWN_EXPIRY_REFRESH: Duration = Duration::from_secs(15 * 60);

pub struct CognitoClientToken;

impl CognitoClientToken {
    pub fn build(
        config: &CognitoClientTokenConfig,
        context: &Context<'_>,
    ) -> Result<CachedBearer, String> {
        let endpoint = config.endpoint()?;
        let client = if endpoint.require_private {
            FetchClient::private(config.ca_file.as_deref(), context.dns.clone())?
        } else {
            FetchClient::new(config.ca_file.as_deref())?
        };
        let credentials = (!config.unsigned).then(|| {
            AwsCredentials::new(
                context.route,
                "cognito_client_token_aws",
                &endpoint.region,
                config.profile.as_deref(),
            )
        });
        let api = AwsJsonApi::new(
            &endpoint.url,
            &endpoint.region,
            SERVICE,
            credentials,
            client,
        )?;
        let client_secret = config.client_secret_source();
        let secret_fingerprint = client_secret
            .read()
            .map(|s| s.fingerprint())
            .unwrap_or_else(|_| "unreadable".into());
        let description = format!(
            "Cognito GetClientToken at {} (client id {}, secret {} ({secret_fingerprint}), scopes [{}], {}{})",
            api.url(&Call::Target(TARGET)),
            config.client_id_source().describe(),
            client_secret.describe(),
            config.scopes.join(", "),
            if config.unsigned {
                "unsigned".to_string()
            } else {
                format!(
                    "SigV4 with {}",
                    config
                        .profile
                        .as_ref()
                        .map_or("the default AWS chain".to_string(), |p| format!("profile {p}"))
                )
            },
            if endpoint.require_private {
                ", in-VPC addresses only"
            } else {
                ""
            },
        );
        let source = SourceEndpoint::new(&api.url(&Call::Target(TARGET)), endpoint.require_private);
        let fetcher = ClientTokenCall {
            api,
            region: endpoint.region.clone(),
            client_id: config.client_id_source(),
            client_secret,
            scopes: config.scopes.clone(),
        };
        let cache = TokenCache::new(
            CacheSettings {
                route: context.route.to_string(),
                source: "cognito_client_token",
                refresh_margin: config.refresh_margin,
                timeout: config.timeout,
                unknown_expiry_lifetime: UNKNOWN_EXPIRY_REFRESH,
            },
            fetcher,
        );
        Ok(CachedBearer::new(cache, description).with_endpoint(source))
    }
}

struct ClientTokenCall {
    api: AwsJsonApi,
    region: String,
    client_id: SecretSource,
    client_secret: SecretSource,
    scopes: Vec<String>,
}

impl Fetch<HeaderValue> for ClientTokenCall {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.token())
    }

    fn endpoint(&self) -> String {
        format!(
            "Cognito GetClientToken at {}",
            self.api.url(&Call::Target(TARGET))
        )
    }
}

impl ClientTokenCall {
    async fn token(&self) -> Result<Fetched<HeaderValue>, String> {
        // Read at each fetch: a rotated secret (file or variable) needs no restart.
        let id = self.client_id.read()?;
        let secret = self.client_secret.read()?;
        check_client_secret(secret.expose())?;
        let mut input = json!({ "ClientId": id.expose(), "Secret": secret.expose() });
        if !self.scopes.is_empty() {
            input["Scopes"] = json!(self.scopes);
        }
        let url = self.api.url(&Call::Target(TARGET));
        let secrets = [secret.expose(), id.expose()];
        let answer = self
            .api
            .call(Call::Target(TARGET), &input, &secrets)
            .await
            .map_err(|e| self.explain(&url, e))?;
        let result = answer.get("ClientAuthenticationResult");
        let token = result
            .and_then(|r| r.get("AccessToken"))
            .and_then(Value::as_str)
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                format!("Cognito GetClientToken at {url} answered without ClientAuthenticationResult.AccessToken")
            })?;
        if let Some(kind) = result
            .and_then(|r| r.get("TokenType"))
            .and_then(Value::as_str)
        {
            if !kind.eq_ignore_ascii_case("bearer") {
                return Err(format!(
                    "Cognito GetClientToken at {url} issued a token of type {:?}; only Bearer \
                     tokens can be attached",
                    printable(kind, &secrets)
                ));
            }
        }
        let expires_at = match result
            .and_then(|r| r.get("ExpiresIn"))
            .and_then(Value::as_u64)
        {
            Some(secs) => Some(SystemTime::now() + Duration::from_secs(secs)),
            None => jwt::expiry(token),
        };
        let value = bearer_value(token, &format!("the access token from Cognito at {url}"))?;
        tracing::debug!(
            endpoint = %url,
            fingerprint = %fingerprint(value.as_bytes()),
            "Cognito client token received"
        );
        Ok(Fetched { value, expires_at })
    }

    /// The failure as the agent and the log see it: what Cognito said and what to do.
    fn explain(&self, url: &str, error: AwsError) -> String {
        match error {
            AwsError::Transport(e) => format!("Cognito GetClientToken {e}"),
            AwsError::Credentials(e) => format!(
                "Cognito GetClientToken at {url}: {e} (the call is SigV4-signed like the AWS \
                 SDKs sign it; Cognito does not evaluate IAM for it, so `unsigned = true` is an \
                 option)"
            ),
            AwsError::Malformed { status, detail } => format!(
                "Cognito GetClientToken at {url} answered {status} with a body that is {detail}"
            ),
            AwsError::Service(e) => {
                let hint = hint(&e, &self.region);
                format!(
                    "Cognito GetClientToken at {url} answered {}{}",
                    e.summary(),
                    hint.map(|h| format!(" ({h})")).unwrap_or_default()
                )
            }
        }
    }
}

/// What each of the operation's errors means for this proxy, and the way out.
fn hint(error: &ServiceError, region: &str) -> Option<String> {
    let text = match error.code.as_deref()? {
        "OperationNotEnabledException" => "the app client needs a client secret and \
            ALLOW_CLIENT_TOKEN_AUTH as its only authentication flow: in the Cognito console, \
            the user pool's App clients, the client, Edit, Authentication flows; or `aws \
            cognito-idp update-user-pool-client --explicit-auth-flows ALLOW_CLIENT_TOKEN_AUTH` \
            with the client's other current settings, which that command otherwise resets. \
            Through a VPC endpoint the user pool must also have no domain"
            .to_string(),
        "NotAuthorizedException" => "the client id and secret were not accepted: a wrong or \
            rotated secret, or an app client without a secret"
            .to_string(),
        "ResourceNotFoundException" => {
            format!("no such app client in {region}: check client_id and the region or endpoint")
        }
        "InvalidParameterException" => "check client_id and scopes: each scope is \
            resource-server-identifier/scope-name of a resource server of this user pool, \
            allowed for this app client"
            .to_string(),
        "TooManyRequestsException" => {
            "Cognito throttles this app client; the proxy retries with backoff".to_string()
        }
        "InternalErrorException" => {
            "an error inside Cognito; the proxy retries with backoff".to_string()
        }
        "ForbiddenException" => {
            "the AWS WAF web ACL associated with the user pool blocked the call".to_string()
        }
        "AccessDeniedException" => "a VPC endpoint policy or a resource control policy denies \
            the call"
            .to_string(),
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => "the SigV4 signature was refused: check \
            the AWS credentials the proxy finds (Cognito does not evaluate IAM for this call, \
            so `unsigned = true` is an option)"
            .to_string(),
        _ => return None,
    };
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(code: &str) -> ServiceError {
        ServiceError {
            status: 400,
            code: Some(code.into()),
            message: Some("m".into()),
        }
    }

    #[test]
    fn every_modelled_error_has_its_own_hint() {
        for code in [
            "InvalidParameterException",
            "ResourceNotFoundException",
            "NotAuthorizedException",
            "TooManyRequestsException",
            "InternalErrorException",
            "OperationNotEnabledException",
            "ForbiddenException",
        ] {
            assert!(hint(&error(code), "us-east-1").is_some(), "{code}");
        }
        assert!(hint(&error("OperationNotEnabledException"), "r")
            .unwrap()
            .contains("ALLOW_CLIENT_TOKEN_AUTH"));
        assert_eq!(hint(&error("SomethingNew"), "r"), None);
    }
}
