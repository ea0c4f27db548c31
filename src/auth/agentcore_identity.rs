//! An M2M access token obtained through AgentCore Identity, which (unlike a Cognito token
//! endpoint) is reachable over PrivateLink: a VPC without egress can still get a token.
//!
//! Two SigV4-signed calls on the `bedrock-agentcore` data-plane endpoint:
//! `POST /identities/GetWorkloadAccessToken` (`workloadName`) gives a workload access
//! token; `POST /identities/oauth2/token` (`oauth2Flow: "M2M"`,
//! `resourceCredentialProviderName`, `scopes`) exchanges it for the provider's access
//! token, whose expiry is read from its JWT `exp`. Cached like every fetched token.

use std::time::Duration;

use http::HeaderValue;
use serde_json::{json, Value};

use super::aws_credentials::AwsCredentials;
use super::aws_json::{AwsError, AwsJsonApi, Call};
use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::{check_fetch_url, AgentCoreIdentityConfig};
use super::fetch_client::FetchClient;
use super::sigv4::region_from_gateway_host;
use super::{bearer_value, jwt, BoxFuture, Context, SourceEndpoint};
use crate::auth::secret::fingerprint;

const SERVICE: &str = "bedrock-agentcore";
/// A provider token that is not a JWT carries no expiry: fetch it again this often.
const UNKNOWN_EXPIRY_REFRESH: Duration = Duration::from_secs(15 * 60);

pub struct AgentCoreIdentity;

impl AgentCoreIdentity {
    pub fn build(
        config: &AgentCoreIdentityConfig,
        context: &Context<'_>,
    ) -> Result<CachedBearer, String> {
        let region = match &config.region {
            Some(r) => r.clone(),
            None => region_from_gateway_host(context.gateway_host).ok_or_else(|| {
                format!(
                    "cannot tell the region from the gateway host {}; set `region`",
                    context.gateway_host
                )
            })?,
        };
        let endpoint = config
            .endpoint
            .clone()
            .unwrap_or_else(|| format!("https://{SERVICE}.{region}.amazonaws.com"));
        check_fetch_url("endpoint", &endpoint)?;
        let description = format!(
            "AgentCore Identity M2M token (workload {}, provider {}, scopes [{}], endpoint {endpoint})",
            config.workload_name,
            config.provider_name,
            config.scopes.join(", ")
        );
        let api = AwsJsonApi::new(
            &endpoint,
            &region,
            SERVICE,
            Some(AwsCredentials::new(
                context.route,
                "agentcore_identity_aws",
                &region,
                config.profile.as_deref(),
            )),
            FetchClient::new(config.ca_file.as_deref())?,
        )?;
        let source = SourceEndpoint::new(&endpoint, false);
        let fetcher = IdentityEndpoint {
            workload_name: config.workload_name.clone(),
            provider_name: config.provider_name.clone(),
            scopes: config.scopes.clone(),
            api,
        };
        let cache = TokenCache::new(
            CacheSettings {
                route: context.route.to_string(),
                source: "agentcore_identity",
                refresh_margin: config.refresh_margin,
                timeout: config.timeout,
                unknown_expiry_lifetime: UNKNOWN_EXPIRY_REFRESH,
            },
            fetcher,
        );
        Ok(CachedBearer::new(cache, description).with_endpoint(source))
    }
}

struct IdentityEndpoint {
    workload_name: String,
    provider_name: String,
    scopes: Vec<String>,
    api: AwsJsonApi,
}

impl Fetch<HeaderValue> for IdentityEndpoint {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.token())
    }

    fn endpoint(&self) -> String {
        format!("AgentCore Identity {}", self.api.base)
    }
}

impl IdentityEndpoint {
    async fn token(&self) -> Result<Fetched<HeaderValue>, String> {
        let workload = self
            .call(
                "/identities/GetWorkloadAccessToken",
                json!({ "workloadName": self.workload_name }),
                "workloadAccessToken",
            )
            .await?;
        let access = self
            .call(
                "/identities/oauth2/token",
                json!({
                    "workloadIdentityToken": workload,
                    "resourceCredentialProviderName": self.provider_name,
                    "scopes": self.scopes,
                    "oauth2Flow": "M2M",
                }),
                "accessToken",
            )
            .await?;
        let value = bearer_value(&access, "the access token from AgentCore Identity")?;
        tracing::debug!(fingerprint = %fingerprint(value.as_bytes()), "AgentCore Identity token received");
        Ok(Fetched {
            value,
            expires_at: jwt::expiry(&access),
        })
    }

    /// One signed JSON call; returns the string field `want` of the answer.
    async fn call(&self, path: &str, body: Value, want: &str) -> Result<String, String> {
        let call = Call::Path(path);
        let url = self.api.url(&call);
        let answer = self.api.call(call, &body, &[]).await.map_err(|e| match e {
            AwsError::Transport(e) => format!("AgentCore Identity {e}"),
            AwsError::Credentials(e) => e,
            AwsError::Service(e) => format!("AgentCore Identity {url} answered {}", e.summary()),
            AwsError::Malformed { status, detail } => {
                format!("AgentCore Identity {url} answered {status} with a body that is {detail}")
            }
        })?;
        answer
            .get(want)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("AgentCore Identity {url} answered without {want}"))
    }
}
