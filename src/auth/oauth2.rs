//! OAuth 2.0 client credentials (RFC 6749 4.4): the AgentCore CUSTOM_JWT inbound
//! authorizer with Amazon Cognito or any other issuer. The access token is cached and
//! refreshed by `cache.rs`; this file only knows how to ask for one.

use std::time::{Duration, SystemTime};

use base64::Engine;
use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use http::{HeaderMap, HeaderValue, Method, Uri};
use serde::Deserialize;

use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::{check_fetch_url, ClientAuth, OAuth2Config};
use super::fetch_client::{FetchClient, FetchResponse};
use super::secret_source::SecretSource;
use super::{bearer_value, jwt, BoxFuture, Context, SourceEndpoint};
use crate::auth::secret::{fingerprint, Secret};

/// A token whose issuer gave no expiry (no `expires_in`, not a JWT) is fetched again
/// after this long; a 401 before that refetches it too.
const UNKNOWN_EXPIRY_REFRESH: Duration = Duration::from_secs(15 * 60);

pub struct OAuth2;

impl OAuth2 {
    pub fn build(config: &OAuth2Config, context: &Context<'_>) -> Result<CachedBearer, String> {
        let url = check_fetch_url("token_url", &config.token_url)?;
        let endpoint = TokenEndpoint {
            url,
            url_text: config.token_url.clone(),
            client_id: config.client_id_source(),
            client_secret: config.client_secret_source(),
            scope: config.scope.clone(),
            auth: config.client_auth,
            client: FetchClient::new(config.ca_file.as_deref())?,
        };
        let secret_fingerprint = endpoint
            .client_secret
            .read()
            .map(|s| s.fingerprint())
            .unwrap_or_else(|_| "unreadable".into());
        let description = format!(
            "oauth2 client credentials from {} (client id {}, secret {} ({secret_fingerprint}), {}{})",
            config.token_url,
            endpoint.client_id.describe(),
            endpoint.client_secret.describe(),
            match config.client_auth {
                ClientAuth::Basic => "client_secret_basic",
                ClientAuth::Post => "client_secret_post",
            },
            config
                .scope
                .as_deref()
                .map(|s| format!(", scope {s:?}"))
                .unwrap_or_default(),
        );
        let cache = TokenCache::new(
            CacheSettings {
                route: context.route.to_string(),
                source: "oauth2",
                refresh_margin: config.refresh_margin,
                timeout: config.timeout,
                unknown_expiry_lifetime: UNKNOWN_EXPIRY_REFRESH,
            },
            endpoint,
        );
        Ok(CachedBearer::new(cache, description)
            .with_endpoint(SourceEndpoint::new(&config.token_url, false)))
    }
}

struct TokenEndpoint {
    url: Uri,
    url_text: String,
    client_id: SecretSource,
    client_secret: SecretSource,
    scope: Option<String>,
    auth: ClientAuth,
    client: FetchClient,
}

impl Fetch<HeaderValue> for TokenEndpoint {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.request())
    }

    fn endpoint(&self) -> String {
        format!("token endpoint {}", self.url_text)
    }
}

impl TokenEndpoint {
    async fn request(&self) -> Result<Fetched<HeaderValue>, String> {
        // Read at each fetch: a rotated secret file is picked up without a restart.
        let id = self.client_id.read()?;
        let secret = self.client_secret.read()?;
        let (headers, body) = token_request(&id, &secret, self.scope.as_deref(), self.auth);
        let response = self
            .client
            .send(Method::POST, &self.url, headers, body)
            .await
            .map_err(|e| format!("token endpoint {e}"))?;
        let token = parse_token_response(&self.url_text, &response, &[secret.expose()])?;
        tracing::debug!(
            token_url = %self.url_text,
            fingerprint = %fingerprint(token.value.as_bytes()),
            "access token received"
        );
        Ok(token)
    }
}

/// The headers and form body of a client-credentials request (RFC 6749 4.4.2), with the
/// client authenticated per 2.3.1: `client_secret_basic` puts the form-urlencoded id and
/// secret in HTTP Basic; `client_secret_post` puts them in the body.
pub fn token_request(
    client_id: &Secret,
    client_secret: &Secret,
    scope: Option<&str>,
    auth: ClientAuth,
) -> (HeaderMap, Bytes) {
    let mut form = form_urlencoded::Serializer::new(String::new());
    form.append_pair("grant_type", "client_credentials");
    if let Some(scope) = scope {
        form.append_pair("scope", scope);
    }
    let mut headers = HeaderMap::new();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    match auth {
        ClientAuth::Basic => {
            let encode =
                |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
            let pair = format!(
                "{}:{}",
                encode(client_id.expose()),
                encode(client_secret.expose())
            );
            let b64 = base64::engine::general_purpose::STANDARD.encode(pair);
            // Base64 output is always a valid header value.
            if let Ok(mut value) = HeaderValue::from_str(&format!("Basic {b64}")) {
                value.set_sensitive(true);
                headers.insert(AUTHORIZATION, value);
            }
        }
        ClientAuth::Post => {
            form.append_pair("client_id", client_id.expose());
            form.append_pair("client_secret", client_secret.expose());
        }
    }
    (headers, Bytes::from(form.finish()))
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: Option<String>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct ErrorAnswer {
    error: String,
    error_description: Option<String>,
}

/// Reads a token endpoint's answer: the token and its expiry (`expires_in`, else the
/// JWT's `exp`), or an error that names the endpoint, the status and the OAuth error
/// code. `secrets` are blanked out of anything the endpoint wrote back.
fn parse_token_response(
    url: &str,
    response: &FetchResponse,
    secrets: &[&str],
) -> Result<Fetched<HeaderValue>, String> {
    let status = response.status;
    if !status.is_success() {
        let detail = match serde_json::from_slice::<ErrorAnswer>(&response.body) {
            Ok(e) => {
                let description = e
                    .error_description
                    .map(|d| format!(": {}", printable(&d, secrets)))
                    .unwrap_or_default();
                format!(
                    "{} {}{description}",
                    status.as_u16(),
                    printable(&e.error, secrets)
                )
            }
            Err(_) => status.to_string(),
        };
        return Err(format!("token endpoint {url} answered {detail}"));
    }
    let answer: TokenAnswer = serde_json::from_slice(&response.body).map_err(|e| {
        format!(
            "token endpoint {url} answered {} with a body that is not a token response ({e})",
            status.as_u16()
        )
    })?;
    let token = answer
        .access_token
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| format!("token endpoint {url} answered without an access_token"))?;
    if let Some(kind) = &answer.token_type {
        if !kind.eq_ignore_ascii_case("bearer") {
            return Err(format!(
                "token endpoint {url} issued a token of type {:?}; only Bearer tokens can be attached",
                printable(kind, secrets)
            ));
        }
    }
    let expires_at = match answer.expires_in.as_ref().and_then(seconds) {
        Some(secs) => Some(SystemTime::now() + Duration::from_secs(secs)),
        None => jwt::expiry(&token),
    };
    let value = bearer_value(&token, &format!("the access token from {url}"))?;
    Ok(Fetched { value, expires_at })
}

/// `expires_in` as a number, or a string holding one (some issuers send that).
pub fn seconds(value: &serde_json::Value) -> Option<u64> {
    match value {
        serde_json::Value::Number(n) => {
            n.as_u64().or_else(|| n.as_f64().map(|f| f.max(0.0) as u64))
        }
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Text an endpoint sent back, made safe for logs and agents: no control characters, at
/// most 200 characters, no secret we sent, and nothing that looks like one.
pub fn printable(text: &str, secrets: &[&str]) -> String {
    let mut clean: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(secret, "[redacted]");
    }
    clean = super::scrub::scrub_line(&clean);
    if clean.chars().count() > 200 {
        clean = clean.chars().take(200).collect::<String>() + "…";
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    fn answer(status: u16, body: &str) -> FetchResponse {
        FetchResponse {
            status: StatusCode::from_u16(status).unwrap(),
            headers: HeaderMap::new(),
            body: Bytes::from(body.to_string()),
        }
    }

    #[test]
    fn basic_auth_form_encodes_id_and_secret_before_base64() {
        let (headers, body) = token_request(
            &Secret::new("client id:1"),
            &Secret::new("s3cr+t/=%"),
            Some("gateway/invoke read"),
            ClientAuth::Basic,
        );
        assert_eq!(
            body,
            "grant_type=client_credentials&scope=gateway%2Finvoke+read"
        );
        let expected =
            base64::engine::general_purpose::STANDARD.encode("client+id%3A1:s3cr%2Bt%2F%3D%25");
        assert_eq!(headers[AUTHORIZATION], format!("Basic {expected}").as_str());
        assert!(headers[AUTHORIZATION].is_sensitive());
        assert_eq!(headers[CONTENT_TYPE], "application/x-www-form-urlencoded");
    }

    #[test]
    fn post_auth_puts_the_client_in_the_body() {
        let (headers, body) = token_request(
            &Secret::new("id"),
            &Secret::new("a&b"),
            None,
            ClientAuth::Post,
        );
        assert_eq!(
            body,
            "grant_type=client_credentials&client_id=id&client_secret=a%26b"
        );
        assert!(!headers.contains_key(AUTHORIZATION));
    }

    #[test]
    fn errors_name_the_endpoint_status_and_code_but_no_secret() {
        let e = parse_token_response(
            "https://auth.example/t",
            &answer(
                400,
                r#"{"error":"invalid_client","error_description":"bad secret hunter2"}"#,
            ),
            &["hunter2"],
        )
        .err()
        .unwrap();
        assert_eq!(
            e,
            "token endpoint https://auth.example/t answered 400 invalid_client: bad secret [redacted]"
        );
        // What looks like a credential goes too, even if it is not one we sent.
        let e = parse_token_response(
            "https://auth.example/t",
            &answer(
                401,
                r#"{"error":"invalid_token","error_description":"token=abc expired; got Bearer xyz"}"#,
            ),
            &[],
        )
        .err()
        .unwrap();
        assert_eq!(
            e,
            "token endpoint https://auth.example/t answered 401 invalid_token: token=[redacted]; got Bearer [redacted]"
        );
        let e = parse_token_response("https://a/t", &answer(503, "<html>"), &[])
            .err()
            .unwrap();
        assert_eq!(
            e,
            "token endpoint https://a/t answered 503 Service Unavailable"
        );
    }

    #[test]
    fn expiry_comes_from_expires_in_else_the_jwt() {
        let t = parse_token_response(
            "u",
            &answer(
                200,
                r#"{"access_token":"abc","token_type":"Bearer","expires_in":"3600"}"#,
            ),
            &[],
        )
        .unwrap();
        let left = t
            .expires_at
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        assert!(left > Duration::from_secs(3590) && left <= Duration::from_secs(3600));
        assert_eq!(t.value, "Bearer abc");
        let jwt = format!(
            "e30.{}.sig",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(r#"{"exp":2000000000}"#)
        );
        let t = parse_token_response(
            "u",
            &answer(200, &format!(r#"{{"access_token":"{jwt}"}}"#)),
            &[],
        )
        .unwrap();
        assert_eq!(
            t.expires_at,
            Some(std::time::UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert!(parse_token_response(
            "u",
            &answer(200, r#"{"access_token":"x","token_type":"mac"}"#),
            &[]
        )
        .is_err());
    }
}
