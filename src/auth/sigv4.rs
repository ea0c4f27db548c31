//! AWS SigV4 request signing: the AgentCore Gateway's AWS_IAM inbound authorizer.
//!
//! Each request is signed with service `bedrock-agentcore` and the gateway's region over
//! the Host that is actually sent (the gateway's name, also when the connection goes to
//! the VPC endpoint's name) and over the body. Signing uses `aws-sigv4`; credentials come
//! from `aws_credentials.rs`.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use http::header::HOST;
use http::{HeaderName, HeaderValue};

use super::aws_credentials::AwsCredentials;
use super::config::Sigv4Config;
use super::{BoxFuture, Context, Credential, CredentialError, CredentialState};

/// What a signature is made for besides the request and the credentials.
#[derive(Debug, Clone, Copy)]
pub struct SigningInput<'a> {
    pub region: &'a str,
    pub service: &'a str,
    pub time: SystemTime,
    /// Also send (and sign) `x-amz-content-sha256`; the gateway does not need it.
    pub content_sha256_header: bool,
}

pub struct Sigv4 {
    credentials: AwsCredentials,
    region: String,
    service: String,
    description: String,
}

impl Sigv4 {
    pub fn build(config: &Sigv4Config, context: &Context<'_>) -> Result<Self, String> {
        let region = match &config.region {
            Some(r) => r.clone(),
            None => region_from_gateway_host(context.gateway_host).ok_or_else(|| {
                format!(
                    "cannot tell the signing region from the gateway host {} (expected \
                     <id>.gateway.bedrock-agentcore.<region>.amazonaws.com); set `region`",
                    context.gateway_host
                )
            })?,
        };
        let description = format!(
            "AWS SigV4 (service {}, region {region}, credentials from {})",
            config.service,
            match &config.profile {
                Some(p) => format!("profile {p}"),
                None => "the default AWS chain".into(),
            }
        );
        Ok(Sigv4 {
            credentials: AwsCredentials::new(
                context.route,
                "sigv4",
                &region,
                config.profile.as_deref(),
            ),
            region,
            service: config.service.clone(),
            description,
        })
    }
}

impl Credential for Sigv4 {
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>> {
        Box::pin(async move {
            let credentials = self.credentials.get().await.map_err(CredentialError)?;
            // Sign over the Host the client will send: the URI's authority, the gateway.
            if let Some(authority) = parts.uri.authority() {
                let host = HeaderValue::from_str(authority.as_str())
                    .map_err(|e| CredentialError(format!("gateway host: {e}")))?;
                parts.headers.insert(HOST, host);
            }
            sign_request(
                parts,
                body,
                &credentials,
                &SigningInput {
                    region: &self.region,
                    service: &self.service,
                    time: SystemTime::now(),
                    content_sha256_header: false,
                },
            )
            .map_err(CredentialError)
        })
    }

    fn refreshable(&self) -> bool {
        true
    }

    fn invalidate(&self) {
        self.credentials.invalidate();
    }

    fn state(&self) -> CredentialState {
        self.credentials.state()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }
}

/// W3C Trace Context and Baggage headers, never signed.
pub const UNSIGNED_TRACE_HEADERS: &[&str] = &["traceparent", "tracestate", "baggage"];

/// Adds `Authorization`, `X-Amz-Date` (and `X-Amz-Security-Token` for temporary
/// credentials) to the request, signed over its method, URI, headers and `body`.
pub fn sign_request(
    parts: &mut http::request::Parts,
    body: &[u8],
    credentials: &Credentials,
    input: &SigningInput<'_>,
) -> Result<(), String> {
    let identity: Identity = credentials.clone().into();
    let mut settings = SigningSettings::default();
    // Trace context may be rewritten on the way (the proxy writes its own `traceparent`
    // for the gateway; a mesh or collector may too), so, as the AWS SDKs do, it is left
    // out of the signature.
    if let Some(excluded) = settings.excluded_headers.as_mut() {
        excluded.extend(UNSIGNED_TRACE_HEADERS.iter().map(|h| (*h).into()));
    }
    if input.content_sha256_header {
        settings.payload_checksum_kind = PayloadChecksumKind::XAmzSha256;
    }
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(input.region)
        .name(input.service)
        .time(input.time)
        .settings(settings)
        .build()
        .map_err(|e| format!("SigV4 signing: {e}"))?
        .into();
    let uri = parts.uri.to_string();
    let headers: Vec<(&str, &str)> = parts
        .headers
        .iter()
        .filter_map(|(name, value)| value.to_str().ok().map(|v| (name.as_str(), v)))
        .collect();
    let signable = SignableRequest::new(
        parts.method.as_str(),
        &uri,
        headers.into_iter(),
        SignableBody::Bytes(body),
    )
    .map_err(|e| format!("SigV4 signing: {e}"))?;
    let (instructions, _signature) = sign(signable, &params)
        .map_err(|e| format!("SigV4 signing: {e}"))?
        .into_parts();
    let (new_headers, _query) = instructions.into_parts();
    for header in new_headers {
        let mut value = HeaderValue::from_str(header.value())
            .map_err(|e| format!("SigV4 signing: header {}: {e}", header.name()))?;
        value.set_sensitive(header.sensitive() || header.name() == "authorization");
        let name = HeaderName::try_from(header.name())
            .map_err(|e| format!("SigV4 signing: header {}: {e}", header.name()))?;
        parts.headers.insert(name, value);
    }
    Ok(())
}

/// The region of a gateway host `<id>.gateway.bedrock-agentcore.<region>.amazonaws.com`
/// (also `.amazonaws.com.cn` and similar partitions).
pub fn region_from_gateway_host(host: &str) -> Option<String> {
    let labels: Vec<&str> = host.trim_end_matches('.').split('.').collect();
    let at = labels.iter().position(|l| *l == "bedrock-agentcore")?;
    let region = labels.get(at + 1)?;
    super::config::check_region(region).ok()?;
    Some(region.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_context_is_not_signed() {
        let mut parts = http::Request::post("https://gw.example/mcp")
            .header("host", "gw.example")
            .header("content-type", "application/json")
            .header(
                "traceparent",
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            )
            .header("tracestate", "rojo=00f067aa0ba902b7")
            .header("baggage", "userId=alice")
            .body(())
            .unwrap()
            .into_parts()
            .0;
        let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "test");
        sign_request(
            &mut parts,
            b"{}",
            &credentials,
            &SigningInput {
                region: "us-east-1",
                service: "bedrock-agentcore",
                time: SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
                content_sha256_header: false,
            },
        )
        .unwrap();
        let authorization = parts.headers["authorization"].to_str().unwrap();
        let signed = authorization
            .split("SignedHeaders=")
            .nth(1)
            .and_then(|s| s.split(',').next())
            .unwrap();
        assert_eq!(signed, "content-type;host;x-amz-date");
    }

    #[test]
    fn the_region_comes_from_the_gateway_host() {
        assert_eq!(
            region_from_gateway_host("gw-1.gateway.bedrock-agentcore.eu-west-3.amazonaws.com")
                .as_deref(),
            Some("eu-west-3")
        );
        assert_eq!(region_from_gateway_host("gw.example.com"), None);
    }
}
