//! One call to an AWS JSON API, as the SDKs make it: `POST` with a JSON body, SigV4-signed
//! with the service's signing name through the standard credential chain, and the
//! service's error read from the answer (`__type`, `X-Amzn-ErrorType`, `message`).
//!
//! Used by `cognito_client_token` (`cognito-idp`), `secrets_manager` (`secretsmanager`,
//! `ssm`), both on the JSON 1.1 protocol (`POST /`, `X-Amz-Target: <prefix>.<operation>`,
//! `Content-Type: application/x-amz-json-1.1`), and by `agentcore_identity`, whose API is
//! REST-JSON (a path per operation, `application/json`).

use std::time::SystemTime;

use bytes::Bytes;
use http::header::{ACCEPT, CONTENT_TYPE, HOST};
use http::{HeaderMap, Method, Request, Uri};
use serde_json::Value;

use super::aws_credentials::AwsCredentials;
use super::fetch_client::FetchClient;
use super::sigv4::{sign_request, SigningInput};

pub const JSON_1_1: &str = "application/x-amz-json-1.1";

/// Where the API is and how calls to it are signed.
pub struct AwsJsonApi {
    /// `https://host[:port]`, no trailing slash.
    pub base: String,
    authority: String,
    region: String,
    /// The SigV4 signing name (`cognito-idp`, `secretsmanager`, `ssm`, `bedrock-agentcore`).
    signing_name: &'static str,
    /// `None`: calls go unsigned.
    credentials: Option<AwsCredentials>,
    client: FetchClient,
}

/// What one call asks for.
pub enum Call<'a> {
    /// JSON 1.1: `POST /` with `X-Amz-Target: <target>`.
    Target(&'a str),
    /// REST-JSON: `POST <path>` with `application/json`.
    Path(&'a str),
}

/// Why a call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsError {
    /// No answer: DNS, TCP, TLS, a proxy, a body too large. The text names the URL.
    Transport(String),
    /// The AWS credentials that sign the call could not be had.
    Credentials(String),
    /// The service answered with an error status.
    Service(ServiceError),
    /// A success status whose body is not a JSON object.
    Malformed { status: u16, detail: String },
}

/// An error answer: its status, the error's short name (`NotAuthorizedException`, the
/// namespace and any `:…` suffix removed) and its message, made printable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub status: u16,
    pub code: Option<String>,
    pub message: Option<String>,
}

impl ServiceError {
    /// Reads an error answer. `secrets` are blanked out of anything quoted from it.
    pub fn read(status: u16, headers: &HeaderMap, body: &[u8], secrets: &[&str]) -> ServiceError {
        let json: Option<Value> = serde_json::from_slice(body).ok();
        let code = json
            .as_ref()
            .and_then(|j| j.get("__type").and_then(Value::as_str))
            .or_else(|| {
                headers
                    .get("x-amzn-errortype")
                    .and_then(|v| v.to_str().ok())
            })
            .map(short_code)
            .filter(|c| !c.is_empty())
            .map(|c| printable(&c, secrets));
        let message = json
            .as_ref()
            .and_then(|j| {
                j.get("message")
                    .or_else(|| j.get("Message"))
                    .and_then(Value::as_str)
            })
            .filter(|m| !m.trim().is_empty())
            .map(|m| printable(m, secrets));
        ServiceError {
            status,
            code,
            message,
        }
    }

    /// `400 NotAuthorizedException: Incorrect client secret`.
    pub fn summary(&self) -> String {
        let mut text = self.status.to_string();
        if let Some(code) = &self.code {
            text = format!("{text} {code}");
        }
        if let Some(message) = &self.message {
            text = format!("{text}: {message}");
        }
        text
    }
}

/// Longest service message quoted (AWS access-denied messages name the principal, the
/// action and the resource: worth keeping whole).
const MAX_MESSAGE_CHARS: usize = 400;

/// Text a service wrote back, fit for agents and logs: no control characters, no secret we
/// sent (nor anything that looks like a token), bounded.
pub fn printable(text: &str, secrets: &[&str]) -> String {
    let mut clean = text.to_string();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(secret, "[redacted]");
    }
    clean = super::scrub::scrub_values(&clean);
    if clean.chars().count() > MAX_MESSAGE_CHARS {
        clean = clean.chars().take(MAX_MESSAGE_CHARS).collect::<String>() + "…";
    }
    clean
}

/// `aws.protocoltests#NotAuthorizedException` or `NotAuthorizedException:http://…` →
/// `NotAuthorizedException`.
pub fn short_code(raw: &str) -> String {
    let without_namespace = raw.rsplit('#').next().unwrap_or(raw);
    without_namespace
        .split(':')
        .next()
        .unwrap_or(without_namespace)
        .trim()
        .to_string()
}

impl AwsJsonApi {
    /// `base`: `https://host[:port]`. `credentials`: `None` for unsigned calls.
    pub fn new(
        base: &str,
        region: &str,
        signing_name: &'static str,
        credentials: Option<AwsCredentials>,
        client: FetchClient,
    ) -> Result<AwsJsonApi, String> {
        let base = base.trim_end_matches('/').to_string();
        let uri: Uri = base
            .parse()
            .map_err(|e| format!("endpoint {base:?}: {e}"))?;
        let authority = uri
            .authority()
            .map(|a| a.to_string())
            .ok_or_else(|| format!("endpoint {base:?} has no host"))?;
        Ok(AwsJsonApi {
            base,
            authority,
            region: region.to_string(),
            signing_name,
            credentials,
            client,
        })
    }

    /// The URL a call goes to, for messages.
    pub fn url(&self, call: &Call<'_>) -> String {
        match call {
            Call::Target(_) => format!("{}/", self.base),
            Call::Path(path) => format!("{}{path}", self.base),
        }
    }

    /// Sends `input` and returns the answer's JSON object. `secrets` are values sent in
    /// the body that must never come back in an error (a service may quote its input).
    pub async fn call(
        &self,
        call: Call<'_>,
        input: &Value,
        secrets: &[&str],
    ) -> Result<Value, AwsError> {
        let url = self.url(&call);
        let uri: Uri = url
            .parse()
            .map_err(|e| AwsError::Transport(format!("{url}: {e}")))?;
        let body = Bytes::from(input.to_string());
        let mut request = Request::post(uri.clone()).header(HOST, &self.authority);
        request = match call {
            Call::Target(target) => request
                .header(CONTENT_TYPE, JSON_1_1)
                .header("x-amz-target", target),
            Call::Path(_) => request
                .header(CONTENT_TYPE, "application/json")
                .header(ACCEPT, "application/json"),
        };
        let (mut parts, ()) = request
            .body(())
            .map_err(|e| AwsError::Transport(format!("{url}: {e}")))?
            .into_parts();
        if let Some(credentials) = &self.credentials {
            let credentials = credentials.get().await.map_err(AwsError::Credentials)?;
            sign_request(
                &mut parts,
                &body,
                &credentials,
                &SigningInput {
                    region: &self.region,
                    service: self.signing_name,
                    time: SystemTime::now(),
                    content_sha256_header: false,
                },
            )
            .map_err(AwsError::Credentials)?;
        }
        let response = self
            .client
            .send(Method::POST, &uri, parts.headers, body)
            .await
            .map_err(AwsError::Transport)?;
        let status = response.status.as_u16();
        if !response.status.is_success() {
            if status == 403 {
                // Perhaps expired or revoked AWS credentials: fetch them again next time.
                if let Some(credentials) = &self.credentials {
                    credentials.invalidate();
                }
            }
            return Err(AwsError::Service(ServiceError::read(
                status,
                &response.headers,
                &response.body,
                secrets,
            )));
        }
        match serde_json::from_slice::<Value>(&response.body) {
            Ok(json) if json.is_object() => Ok(json),
            Ok(_) => Err(AwsError::Malformed {
                status,
                detail: "not a JSON object".into(),
            }),
            Err(e) => Err(AwsError::Malformed {
                status,
                detail: format!("not JSON ({e})"),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn error_names_lose_their_namespace_and_suffix() {
        assert_eq!(
            short_code("com.amazonaws.cognito#NotAuthorizedException"),
            "NotAuthorizedException"
        );
        assert_eq!(
            short_code("InvalidSignatureException:http://internal.amazon.com/coral/"),
            "InvalidSignatureException"
        );
        assert_eq!(short_code("ParameterNotFound"), "ParameterNotFound");
    }

    #[test]
    fn errors_are_read_from_the_body_or_the_header_without_secrets() {
        let e = ServiceError::read(
            400,
            &HeaderMap::new(),
            br#"{"__type":"aws#NotAuthorizedException","message":"bad secret abcdefghijklmnopqrstuvwxyz"}"#,
            &["abcdefghijklmnopqrstuvwxyz"],
        );
        assert_eq!(
            e.summary(),
            "400 NotAuthorizedException: bad secret [redacted]"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            "x-amzn-errortype",
            HeaderValue::from_static("AccessDeniedException:http://internal/"),
        );
        let e = ServiceError::read(403, &headers, br#"{"Message":"denied"}"#, &[]);
        assert_eq!(e.summary(), "403 AccessDeniedException: denied");
        let e = ServiceError::read(503, &HeaderMap::new(), b"<html>", &[]);
        assert_eq!(e.summary(), "503");
    }
}
