//! A bearer token stored in AWS: a Secrets Manager secret (`GetSecretValue`) or an SSM
//! parameter (`GetParameter` with decryption), both JSON 1.1 APIs reached through their
//! interface endpoints and SigV4-signed with the standard credential chain.
//!
//! The value is read again every `refresh_interval` (the request that finds it due still
//! uses the one it has while one background call fetches the next) and at once when the
//! gateway answers 401: a rotated secret reaches the gateway without a restart, which an
//! ECS `secrets` entry or a Kubernetes environment variable read at start cannot do.

use std::time::Duration;

use http::HeaderValue;
use serde_json::{json, Value};

use super::aws_credentials::AwsCredentials;
use super::aws_json::{AwsError, AwsJsonApi, Call, ServiceError};
use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::{SecretsManagerConfig, SsmParameterConfig};
use super::config_aws::AwsEndpoint;
use super::fetch_client::FetchClient;
use super::{bearer_value, BoxFuture, Context, SourceEndpoint};
use crate::auth::secret::fingerprint;

/// The two stores, and how each names its call and its value.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Store {
    SecretsManager,
    Ssm,
}

impl Store {
    fn service(self) -> &'static str {
        match self {
            Store::SecretsManager => "secretsmanager",
            Store::Ssm => "ssm",
        }
    }

    fn target(self) -> &'static str {
        match self {
            Store::SecretsManager => "secretsmanager.GetSecretValue",
            Store::Ssm => "AmazonSSM.GetParameter",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Store::SecretsManager => "Secrets Manager GetSecretValue",
            Store::Ssm => "SSM GetParameter",
        }
    }

    fn source(self) -> &'static str {
        match self {
            Store::SecretsManager => "secrets_manager",
            Store::Ssm => "ssm_parameter",
        }
    }
}

pub fn build_secrets_manager(
    config: &SecretsManagerConfig,
    context: &Context<'_>,
) -> Result<CachedBearer, String> {
    let mut input = json!({ "SecretId": config.secret_id });
    if let Some(stage) = &config.version_stage {
        input["VersionStage"] = json!(stage);
    }
    let what = format!(
        "secret {}{}",
        config.secret_id,
        config
            .version_stage
            .as_ref()
            .map(|s| format!(" ({s})"))
            .unwrap_or_default()
    );
    build(
        Store::SecretsManager,
        Settings {
            input,
            what,
            json_key: config.json_key.clone(),
            endpoint: config.endpoint()?,
            ca_file: config.ca_file.as_deref(),
            profile: config.profile.as_deref(),
            refresh_interval: config.refresh_interval,
            timeout: config.timeout,
        },
        context,
    )
}

pub fn build_ssm_parameter(
    config: &SsmParameterConfig,
    context: &Context<'_>,
) -> Result<CachedBearer, String> {
    build(
        Store::Ssm,
        Settings {
            input: json!({ "Name": config.name, "WithDecryption": true }),
            what: format!("parameter {}", config.name),
            json_key: config.json_key.clone(),
            endpoint: config.endpoint()?,
            ca_file: config.ca_file.as_deref(),
            profile: config.profile.as_deref(),
            refresh_interval: config.refresh_interval,
            timeout: config.timeout,
        },
        context,
    )
}

struct Settings<'a> {
    input: Value,
    /// `secret gw-token (AWSCURRENT)`, `parameter /proxy/token`.
    what: String,
    json_key: Option<String>,
    endpoint: AwsEndpoint,
    ca_file: Option<&'a std::path::Path>,
    profile: Option<&'a str>,
    refresh_interval: Duration,
    timeout: Duration,
}

fn build(store: Store, s: Settings<'_>, context: &Context<'_>) -> Result<CachedBearer, String> {
    let client = if s.endpoint.require_private {
        FetchClient::private(s.ca_file, context.dns.clone())?
    } else {
        FetchClient::new(s.ca_file)?
    };
    let credentials = AwsCredentials::new(
        context.route,
        match store {
            Store::SecretsManager => "secrets_manager_aws",
            Store::Ssm => "ssm_parameter_aws",
        },
        &s.endpoint.region,
        s.profile,
    );
    let api = AwsJsonApi::new(
        &s.endpoint.url,
        &s.endpoint.region,
        store.service(),
        Some(credentials),
        client,
    )?;
    let url = api.url(&Call::Target(store.target()));
    let description = format!(
        "{} at {url} ({}{}, read every {}, credentials from {}{})",
        store.label(),
        s.what,
        s.json_key
            .as_ref()
            .map(|k| format!(", JSON key {k:?}"))
            .unwrap_or_default(),
        humantime::format_duration(s.refresh_interval),
        s.profile
            .map_or("the default AWS chain".to_string(), |p| format!(
                "profile {p}"
            )),
        if s.endpoint.require_private {
            ", in-VPC addresses only"
        } else {
            ""
        },
    );
    let source = SourceEndpoint::new(&url, s.endpoint.require_private);
    let fetcher = StoredToken {
        store,
        api,
        url,
        input: s.input,
        what: s.what,
        json_key: s.json_key,
    };
    let cache = TokenCache::new(
        CacheSettings {
            route: context.route.to_string(),
            source: store.source(),
            // A stored token has no expiry of its own here: it is used until the next
            // read (or a 401) replaces it.
            refresh_margin: Duration::ZERO,
            timeout: s.timeout,
            unknown_expiry_lifetime: s.refresh_interval,
        },
        fetcher,
    );
    Ok(CachedBearer::new(cache, description).with_endpoint(source))
}

struct StoredToken {
    store: Store,
    api: AwsJsonApi,
    url: String,
    input: Value,
    what: String,
    json_key: Option<String>,
}

impl Fetch<HeaderValue> for StoredToken {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.read())
    }

    fn endpoint(&self) -> String {
        format!("{} at {}", self.store.label(), self.url)
    }
}

impl StoredToken {
    async fn read(&self) -> Result<Fetched<HeaderValue>, String> {
        let label = self.store.label();
        let url = &self.url;
        let answer = self
            .api
            .call(Call::Target(self.store.target()), &self.input, &[])
            .await
            .map_err(|e| match e {
                AwsError::Transport(e) => format!("{label} {e}"),
                AwsError::Credentials(e) => format!("{label} at {url}: {e}"),
                AwsError::Malformed { status, detail } => {
                    format!("{label} at {url} answered {status} with a body that is {detail}")
                }
                AwsError::Service(e) => format!(
                    "{label} at {url} answered {} ({})",
                    e.summary(),
                    hint(self.store, &e, &self.what)
                ),
            })?;
        let stored = match self.store {
            Store::SecretsManager => match answer.get("SecretString").and_then(Value::as_str) {
                Some(s) => s,
                None if answer.get("SecretBinary").is_some() => {
                    return Err(format!(
                        "{label} at {url}: the {} holds binary data (SecretBinary); store the \
                         token as a secret string",
                        self.what
                    ))
                }
                None => return Err(format!("{label} at {url} answered without SecretString")),
            },
            Store::Ssm => answer
                .get("Parameter")
                .and_then(|p| p.get("Value"))
                .and_then(Value::as_str)
                .ok_or_else(|| format!("{label} at {url} answered without Parameter.Value"))?,
        };
        let token = match &self.json_key {
            None => stored.to_string(),
            Some(key) => {
                json_field(stored, key).map_err(|e| format!("{label}: the {} {e}", self.what))?
            }
        };
        let value = bearer_value(&token, &format!("the token in the {}", self.what))?;
        tracing::debug!(
            source = self.store.source(),
            fingerprint = %fingerprint(value.as_bytes()),
            "stored token read"
        );
        Ok(Fetched {
            value,
            expires_at: None,
        })
    }
}

/// The string under `key` of a JSON object, with errors that never quote the value.
fn json_field(stored: &str, key: &str) -> Result<String, String> {
    let json: Value = serde_json::from_str(stored)
        .map_err(|_| format!("is not a JSON object, so json_key {key:?} cannot be read"))?;
    let object = json
        .as_object()
        .ok_or_else(|| format!("is not a JSON object, so json_key {key:?} cannot be read"))?;
    match object.get(key) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(format!(
            "has json_key {key:?}, but its value is not a string"
        )),
        None => {
            let mut keys: Vec<&str> = object.keys().map(String::as_str).collect();
            keys.sort_unstable();
            Err(format!(
                "has no key {key:?} (its keys: {})",
                keys.iter()
                    .map(|k| format!("{k:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        }
    }
}

/// What the store's errors mean here, and the way out.
fn hint(store: Store, error: &ServiceError, what: &str) -> String {
    let action = match store {
        Store::SecretsManager => "secretsmanager:GetSecretValue",
        Store::Ssm => "ssm:GetParameter",
    };
    match error.code.as_deref().unwrap_or("") {
        "ResourceNotFoundException" | "ParameterNotFound" => {
            format!("no {what} in this region: check the name and the region or endpoint")
        }
        "ParameterVersionNotFound" => format!("the {what} has no such version"),
        "AccessDeniedException" => format!(
            "the proxy's AWS identity may not call {action} on the {what} (its IAM policy, the \
             resource policy, or the VPC endpoint policy)"
        ),
        "DecryptionFailure" | "InvalidKeyId" => format!(
            "the {what} cannot be decrypted with its KMS key: allow kms:Decrypt on that key to \
             the proxy's AWS identity"
        ),
        "InvalidRequestException" => format!(
            "the {what} cannot be read now (scheduled for deletion, or no version with this \
             stage)"
        ),
        "InvalidParameterException" | "ValidationException" => {
            "a parameter was refused: check the name and version_stage".to_string()
        }
        "InternalServiceError" | "InternalServerError" | "ThrottlingException" => {
            "an AWS-side error; the proxy retries with backoff".to_string()
        }
        "UnrecognizedClientException"
        | "InvalidSignatureException"
        | "IncompleteSignatureException"
        | "ExpiredTokenException"
        | "MissingAuthenticationTokenException" => {
            "the SigV4 signature was refused: check the AWS credentials the proxy finds".to_string()
        }
        _ => format!("the proxy's AWS identity needs {action} on the {what}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_json_key_is_read_without_quoting_the_secret() {
        assert_eq!(
            json_field(r#"{"token":"abc","other":1}"#, "token").unwrap(),
            "abc"
        );
        let e = json_field(r#"{"tok":"s3cr3t"}"#, "token").unwrap_err();
        assert_eq!(e, "has no key \"token\" (its keys: \"tok\")");
        let e = json_field("s3cr3t-plain", "token").unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
        let e = json_field(r#"{"token":42}"#, "token").unwrap_err();
        assert!(e.contains("not a string"), "{e}");
    }
}
