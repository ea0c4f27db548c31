//! An M2M access token obtained through AgentCore Identity, which (unlike a Cognito token
//! endpoint) is reachable over PrivateLink: a VPC without egress can still get a token.
//!
//! Two SigV4-signed calls on the `bedrock-agentcore` data-plane endpoint:
//! `POST /identities/GetWorkloadAccessToken` (`workloadName`) gives a workload access
//! token; `POST /identities/oauth2/token` (`oauth2Flow: "M2M"`,
//! `resourceCredentialProviderName`, `scopes`) exchanges it for the provider's access
//! token, whose expiry is read from its JWT `exp`. Cached like every fetched token.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderValue, Method, Request, Uri};
use serde_json::{json, Value};

use super::aws_credentials::AwsCredentials;
use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::{check_fetch_url, AgentCoreIdentityConfig};
use super::fetch_client::FetchClient;
use super::oauth2::printable;
use super::sigv4::{region_from_gateway_host, sign_request, SigningInput};
use super::{bearer_value, jwt, BoxFuture, Context};
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
        let base = check_fetch_url("endpoint", &endpoint)?;
        let description = format!(
            "AgentCore Identity M2M token (workload {}, provider {}, scopes [{}], endpoint {endpoint})",
            config.workload_name,
            config.provider_name,
            config.scopes.join(", ")
        );
        let fetcher = IdentityEndpoint {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            authority: base
                .authority()
                .map(|a| a.to_string())
                .ok_or("endpoint has no host")?,
            workload_name: config.workload_name.clone(),
            provider_name: config.provider_name.clone(),
            scopes: config.scopes.clone(),
            aws: AwsCredentials::new(
                context.route,
                "agentcore_identity_aws",
                &region,
                config.profile.as_deref(),
            ),
            region,
            client: FetchClient::new(config.ca_file.as_deref())?,
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
        Ok(CachedBearer::new(cache, description))
    }
}

struct IdentityEndpoint {
    endpoint: String,
    authority: String,
    region: String,
    workload_name: String,
    provider_name: String,
    scopes: Vec<String>,
    aws: AwsCredentials,
    client: FetchClient,
}

impl Fetch<HeaderValue> for IdentityEndpoint {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.token())
    }

    fn endpoint(&self) -> String {
        format!("AgentCore Identity {}", self.endpoint)
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
        let url = format!("{}{path}", self.endpoint);
        let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
        let body = Bytes::from(body.to_string());
        let (mut parts, ()) = Request::post(uri.clone())
            .header(HOST, &self.authority)
            .header(CONTENT_TYPE, "application/json")
            .header(ACCEPT, "application/json")
            .body(())
            .map_err(|e| format!("{url}: {e}"))?
            .into_parts();
        let credentials = self.aws.get().await?;
        sign_request(
            &mut parts,
            &body,
            &credentials,
            &SigningInput {
                region: &self.region,
                service: SERVICE,
                time: SystemTime::now(),
                content_sha256_header: false,
            },
        )?;
        let response = self
            .client
            .send(Method::POST, &uri, parts.headers, body)
            .await
            .map_err(|e| format!("AgentCore Identity {e}"))?;
        let json: Option<Value> = serde_json::from_slice(&response.body).ok();
        if !response.status.is_success() {
            if response.status == http::StatusCode::FORBIDDEN {
                // Perhaps expired or revoked AWS credentials: fetch them again next time.
                self.aws.invalidate();
            }
            let kind = response
                .headers
                .get("x-amzn-errortype")
                .and_then(|v| v.to_str().ok())
                .map(|v| v.split(':').next().unwrap_or(v).to_string())
                .or_else(|| {
                    json.as_ref()
                        .and_then(|j| j.get("__type").and_then(Value::as_str))
                        .map(|t| t.rsplit('#').next().unwrap_or(t).to_string())
                });
            let message = json.as_ref().and_then(|j| {
                j.get("message")
                    .or_else(|| j.get("Message"))
                    .and_then(Value::as_str)
            });
            let mut detail = response.status.as_u16().to_string();
            if let Some(kind) = kind {
                detail = format!("{detail} {}", printable(&kind, &[]));
            }
            if let Some(message) = message {
                detail = format!("{detail}: {}", printable(message, &[]));
            }
            return Err(format!("AgentCore Identity {url} answered {detail}"));
        }
        json.as_ref()
            .and_then(|j| j.get(want))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or_else(|| format!("AgentCore Identity {url} answered without {want}"))
    }
}
