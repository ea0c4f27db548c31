//! AWS credentials from the standard chain (environment, shared profile, web identity /
//! IRSA, EKS pod identity, ECS container credentials, IMDSv2), via `aws-config`, kept in
//! the shared cache (`cache.rs`) so that they are refreshed before they expire, one fetch
//! at a time, with backoff.
//!
//! The chain's HTTP client is rustls with the ring provider (no aws-lc, no cmake) and
//! honours `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY`: put `169.254.169.254,169.254.170.2` in
//! `NO_PROXY` when a proxy is set, so that IMDS and ECS are reached directly.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use aws_smithy_http_client::proxy::ProxyConfig;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_http_client::Connector;
use aws_smithy_runtime_api::client::http::{http_client_fn, SharedHttpClient, SharedHttpConnector};
use tokio::sync::OnceCell;

use super::cache::{CacheSettings, Fetch, Fetched, TokenCache};
use super::fetch_client::error_chain;
use super::{scrub, BoxFuture, CredentialState};

/// Static credentials (environment, profile keys) carry no expiry: look again this often,
/// so that rotated keys in a profile file are picked up.
const STATIC_CREDENTIALS_RECHECK: Duration = Duration::from_secs(15 * 60);
/// Refresh this long before temporary credentials expire.
const REFRESH_MARGIN: Duration = Duration::from_secs(5 * 60);
/// IMDS and STS may be slow; the chain tries several providers in turn.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

pub struct AwsCredentials {
    cache: TokenCache<Credentials>,
}

impl AwsCredentials {
    pub fn new(route: &str, source: &'static str, region: &str, profile: Option<&str>) -> Self {
        AwsCredentials {
            cache: TokenCache::new(
                CacheSettings {
                    route: route.to_string(),
                    source,
                    refresh_margin: REFRESH_MARGIN,
                    timeout: FETCH_TIMEOUT,
                    unknown_expiry_lifetime: STATIC_CREDENTIALS_RECHECK,
                },
                Chain {
                    route: route.to_string(),
                    provider: OnceCell::new(),
                    region: region.to_string(),
                    profile: profile.map(str::to_string),
                },
            ),
        }
    }

    pub async fn get(&self) -> Result<Credentials, String> {
        self.cache.get().await
    }

    pub fn invalidate(&self) {
        self.cache.invalidate();
    }

    pub fn state(&self) -> CredentialState {
        self.cache.state()
    }
}

struct Chain {
    /// The route, for the log.
    route: String,
    /// Built on first use: loading the chain is async and reads the environment.
    provider: OnceCell<SharedCredentialsProvider>,
    region: String,
    profile: Option<String>,
}

impl Chain {
    async fn provider(&self) -> Result<&SharedCredentialsProvider, String> {
        self.provider
            .get_or_try_init(|| async {
                let mut loader = aws_config::defaults(BehaviorVersion::latest())
                    .http_client(http_client())
                    .region(aws_config::Region::new(self.region.clone()));
                if let Some(profile) = &self.profile {
                    loader = loader.profile_name(profile);
                }
                loader.load().await.credentials_provider().ok_or_else(|| {
                    "AWS credentials: no credential provider is configured".to_string()
                })
            })
            .await
    }
}

impl Chain {
    /// The chain's error for the agent and the log. A `credential_process` that failed
    /// has its stderr quoted in the error by `aws-config`: that part goes to the log
    /// only, scrubbed, like the stderr of a `command` credential.
    fn describe_failure(&self, e: &dyn std::error::Error) -> String {
        let text = error_chain(e);
        match text.split_once("Stderr:") {
            Some((head, stderr)) => {
                tracing::warn!(
                    route = %self.route,
                    stderr = %scrub::for_log(stderr.as_bytes()).unwrap_or_else(|| "(empty)".into()),
                    "AWS credential_process failed"
                );
                format!(
                    "AWS credentials: {} (its output is in the proxy log)",
                    head.trim_end()
                )
            }
            None => format!("AWS credentials: {text}"),
        }
    }
}

impl Fetch<Credentials> for Chain {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<Credentials>, String>> {
        Box::pin(async move {
            let provider = self.provider().await?;
            let credentials = provider
                .provide_credentials()
                .await
                .map_err(|e| self.describe_failure(&e))?;
            tracing::debug!(
                access_key_id = %credentials.access_key_id(),
                "AWS credentials loaded"
            );
            Ok(Fetched {
                expires_at: credentials.expiry(),
                value: credentials,
            })
        })
    }

    fn endpoint(&self) -> String {
        "the AWS credential chain".into()
    }
}

/// The HTTP client of the credential providers: rustls + ring, proxy settings from the
/// environment.
pub fn http_client() -> SharedHttpClient {
    http_client_fn(|settings, components| {
        let mut builder = Connector::builder()
            .connector_settings(settings.clone())
            .proxy_config(ProxyConfig::from_env());
        builder.set_sleep_impl(components.sleep_impl());
        SharedHttpConnector::new(
            builder
                .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
                .build(),
        )
    })
}
