//! Step 4: obtain the route's credential the way a request does (`Credential::apply` on a
//! scratch request), and report only what was attached: header names and a fingerprint.

use std::time::Duration;

use http::header::AUTHORIZATION;
use serde_json::json;

use super::report::{Check, Step};
use crate::auth::secret::fingerprint;
use crate::auth::CredentialConfig;
use crate::proxy::route::Route;

/// A token endpoint or signing source gets this long, at most the route's own timeout.
const OBTAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// `load_error`: the configured credential whose source could not even be opened at
/// load, and why (the route then runs with none, so that the other steps can still be
/// diagnosed).
pub async fn check(route: &Route, load_error: Option<&(CredentialConfig, String)>) -> Check {
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
        Ok(Err(e)) => Check::fail(
            Step::Credential,
            format!("{description}: {e}"),
            "the credential source refused or failed",
            fix_for(&route.config.credential),
        ),
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
            let summary = match (&authorization, route.credential.forwards_caller_authorization()) {
                (_, true) => format!(
                    "{description}: the agent's own Authorization goes to the gateway; nothing to obtain"
                ),
                (Some(fp), _) => format!(
                    "{description}: obtained; attaches {} (Authorization {fp})",
                    added.join(", ")
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
            }))
        }
    }
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
