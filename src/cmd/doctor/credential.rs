//! Step 4: obtain the route's credential the way a request does (`Credential::apply` on a
//! scratch request), and report only what was attached: header names, a fingerprint, and
//! for a token its expiry and scopes. A source that calls an endpoint (a token URL, an AWS
//! API) first has that endpoint resolved as the source dials it (`credential_endpoint`);
//! a failure gets its cause and fix from `credential_causes`.

use std::time::{Duration, SystemTime};

use http::header::AUTHORIZATION;
use serde_json::{json, Value};

use super::names::{region_of, Resolver};
use super::report::{Check, Step};
use super::{credential_causes, credential_endpoint};
use crate::auth::secret::fingerprint;
use crate::auth::CredentialConfig;
use crate::proxy::route::Route;

/// A token endpoint or signing source gets this long, at most the route's own timeout.
const OBTAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `load_error`: the configured credential whose source could not even be opened at
/// load, and why (the route then runs with none, so that the other steps can still be
/// diagnosed).
pub async fn check(
    route: &Route,
    resolver: &Resolver<'_>,
    load_error: Option<&(CredentialConfig, String)>,
) -> Vec<Check> {
    let region = region_of(&route.gateway.host);
    let mut checks = Vec::new();
    if load_error.is_none() {
        if let Some(endpoint) = route.credential.source_endpoint() {
            checks.push(credential_endpoint::check(endpoint, resolver, &region).await);
        }
    }
    checks.push(obtain(route, load_error, &region).await);
    checks
}

async fn obtain(
    route: &Route,
    load_error: Option<&(CredentialConfig, String)>,
    region: &str,
) -> Check {
    if let Some((configured, error)) = load_error {
        return Check::fail(
            Step::Credential,
            format!("{}: {error}", source_name(configured)),
            "the proxy cannot read its credential source, so no request would carry one",
            fix_for(configured),
        );
    }
    let source = source_name(&route.config.credential);
    let description = route.credential.describe();
    let (mut parts, ()) = http::Request::post(route.upstream_uri(None))
        .body(())
        .unwrap_or_default()
        .into_parts();
    let before: Vec<String> = parts.headers.keys().map(|k| k.to_string()).collect();
    let timeout = OBTAIN_TIMEOUT.min(route.response_timeout);
    let applied = tokio::time::timeout(timeout, route.credential.apply(&mut parts, b"{}")).await;
    match applied {
        Err(_) => Check::fail(
            Step::Credential,
            format!(
                "{description}: not obtained within {}",
                humantime::format_duration(timeout)
            ),
            "the credential source does not answer (a token endpoint or identity service out \
             of reach)",
            "check that the token endpoint is reachable from here (its own VPC endpoint or a \
             NAT route)",
        ),
        Ok(Err(e)) => {
            let (cause, fix) = match &route.config.credential {
                c @ (CredentialConfig::Static { .. } | CredentialConfig::File { .. }) => (
                    "the credential source refused or failed".to_string(),
                    fix_for(c),
                ),
                c => credential_causes::explain(c, &e.0, region),
            };
            Check::fail(Step::Credential, format!("{description}: {e}"), cause, fix)
        }
        Ok(Ok(())) => {
            let added: Vec<String> = parts
                .headers
                .keys()
                .map(|k| k.to_string())
                .filter(|k| !before.contains(k))
                .collect();
            let authorization = parts
                .headers
                .get(AUTHORIZATION)
                .map(|v| fingerprint(v.as_bytes()));
            let token = parts
                .headers
                .get(AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.strip_prefix("Bearer ").unwrap_or(v).to_string());
            let expires_at = route.credential.state().expires_at;
            let scopes = token.as_deref().and_then(scopes_of);
            let summary = match (&authorization, route.credential.forwards_caller_authorization()) {
                (_, true) => format!(
                    "{description}: the agent's own Authorization goes to the gateway; nothing to obtain"
                ),
                (Some(fp), _) => format!(
                    "{description}: obtained; attaches {} (Authorization {fp}){}{}",
                    added.join(", "),
                    expires_at.map(expiry_text).unwrap_or_default(),
                    scopes
                        .as_ref()
                        .map(|s| format!(", scopes {}", s.join(" ")))
                        .unwrap_or_default(),
                ),
                (None, _) if added.is_empty() => {
                    format!("{description}: nothing to attach")
                }
                (None, _) => format!("{description}: obtained; attaches {}", added.join(", ")),
            };
            Check::pass(Step::Credential, summary).with_details(json!({
                "source": source,
                "headers": added,
                "authorization_fingerprint": authorization,
                "expires_at": expires_at.map(|t| humantime::format_rfc3339_seconds(t).to_string()),
                "scopes": scopes,
            }))
        }
    }
}

/// `, expires in 59m 58s (2026-05-01T10:00:00Z)`.
fn expiry_text(at: SystemTime) -> String {
    let when = humantime::format_rfc3339_seconds(at);
    match at.duration_since(SystemTime::now()) {
        Ok(left) => format!(
            ", expires in {} ({when})",
            humantime::format_duration(Duration::from_secs(left.as_secs()))
        ),
        Err(_) => format!(", expired ({when})"),
    }
}

/// The scopes a JWT access token carries (`scope`, space-separated, as Cognito issues
/// it; or `scp`), `None` for other tokens.
fn scopes_of(token: &str) -> Option<Vec<String>> {
    let claims = crate::auth::jwt_claims(token)?;
    let scopes: Vec<String> = match claims.get("scope").or_else(|| claims.get("scp"))? {
        Value::String(s) => s.split_whitespace().map(str::to_string).collect(),
        Value::Array(items) => items
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_string)
            .collect(),
        _ => return None,
    };
    (!scopes.is_empty()).then_some(scopes)
}

fn source_name(config: &CredentialConfig) -> String {
    match config {
        CredentialConfig::None => "none".into(),
        CredentialConfig::Passthrough => "passthrough".into(),
        CredentialConfig::Static { env } => format!("static token from env {env}"),
        CredentialConfig::File { path } => format!("token file {}", path.display()),
        _ => "the configured credential source".into(),
    }
}

fn fix_for(config: &CredentialConfig) -> String {
    match config {
        CredentialConfig::Static { env } => format!(
            "set {env} in the proxy's environment (systemd: EnvironmentFile=; Kubernetes: env \
             from a Secret; ECS: secrets from Secrets Manager)"
        ),
        CredentialConfig::File { path } => format!(
            "make {} readable by the proxy's user and non-empty (Kubernetes: mount the Secret \
             there)",
            path.display()
        ),
        _ => "check the route's [route.credential] settings and that its token endpoint or \
              identity service accepts this client"
            .into(),
    }
}
