//! Step 4, the failures: for a credential that could not be obtained, the likely cause
//! and the fix, per source and per error (the service's error name is in the message).

use crate::auth::CredentialConfig;

/// The cause and the fix for `error`, the message the source failed with.
pub fn explain(config: &CredentialConfig, error: &str, gateway_region: &str) -> (String, String) {
    match config {
        CredentialConfig::Oauth2(c) if unreachable(error) => {
            token_url_unreachable(&c.token_url, gateway_region)
        }
        CredentialConfig::CognitoClientToken(c) => {
            let region = c
                .endpoint()
                .map(|e| e.region)
                .unwrap_or_else(|_| gateway_region.to_string());
            cognito(error, &region)
        }
        CredentialConfig::SecretsManager(c) => {
            let region = c.endpoint().map(|e| e.region).unwrap_or_default();
            stored(
                error,
                "secretsmanager",
                "secretsmanager:GetSecretValue",
                &region,
            )
        }
        CredentialConfig::SsmParameter(c) => {
            let region = c.endpoint().map(|e| e.region).unwrap_or_default();
            stored(error, "ssm", "ssm:GetParameter", &region)
        }
        _ => (
            "the credential source refused or failed".into(),
            "check the route's [route.credential] settings and that its token endpoint or \
             identity service accepts this client"
                .into(),
        ),
    }
}

/// The endpoint could not be reached at all: no address, no connection, no answer.
fn unreachable(error: &str) -> bool {
    [
        "(Connect)",
        "dns error",
        "failed to lookup address",
        "tcp connect",
        "did not answer within",
        "has no addresses",
        "DNS lookup of",
        "outside the in-VPC ranges",
        "through proxy",
    ]
    .iter()
    .any(|needle| error.contains(needle))
}

/// Issue 17: an OAuth 2.0 token URL out of reach, which inside a VPC without egress is
/// what a Cognito user-pool domain always is.
fn token_url_unreachable(token_url: &str, gateway_region: &str) -> (String, String) {
    let host = token_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(str::to_string))
        .unwrap_or_else(|| token_url.to_string());
    // `<prefix>.auth.<region>.amazoncognito.com`
    let labels: Vec<&str> = host.split('.').collect();
    let region = labels
        .iter()
        .position(|l| *l == "auth")
        .and_then(|at| labels.get(at + 1))
        .filter(|_| host.ends_with(".amazoncognito.com"))
        .map_or(gateway_region.to_string(), |r| r.to_string());
    (
        format!(
            "the token endpoint {host} does not resolve or accept connections from here. \
             Cognito user-pool domains / the token endpoint are not reachable over PrivateLink: \
             AWS does not serve the OAuth 2.0 client-credentials flow (nor any user-pool domain) \
             through the cognito-idp interface endpoint, so inside a VPC without internet egress \
             this URL stays out of reach"
        ),
        format!(
            "three ways out: (1) give the token request a route out: a NAT gateway, or an HTTP \
             proxy in HTTPS_PROXY (with the VPC endpoints' names in NO_PROXY); (2) type = \
             \"agentcore_identity\": AgentCore Identity fetches the Cognito token for you and is \
             reached through the com.amazonaws.{region}.bedrock-agentcore interface endpoint; \
             (3) type = \"cognito_client_token\": Cognito's GetClientToken API through the \
             com.amazonaws.{region}.cognito-idp interface endpoint (an app client with a secret \
             and ALLOW_CLIENT_TOKEN_AUTH, a user pool without a domain)"
        ),
    )
}

fn cognito(error: &str, region: &str) -> (String, String) {
    let has = |code: &str| error.contains(code);
    if has("OperationNotEnabledException") {
        return (
            "Cognito does not allow GetClientToken for this app client: it lacks the \
             ALLOW_CLIENT_TOKEN_AUTH flow (which must be its only authentication flow) or a \
             client secret; through a VPC endpoint, a user pool that has a domain refuses it \
             as well (a user pool with a domain cannot be used through AWS PrivateLink)"
                .into(),
            "in the Cognito console: the user pool, App clients, the client, Edit, \
             Authentication flows: ALLOW_CLIENT_TOKEN_AUTH only (or aws cognito-idp \
             update-user-pool-client --user-pool-id <pool> --client-id <id> \
             --explicit-auth-flows ALLOW_CLIENT_TOKEN_AUTH plus the client's other current \
             settings, which that command otherwise resets); give the client a secret; through \
             a VPC endpoint, delete the user pool's domain (or use agentcore_identity)"
                .into(),
        );
    }
    if has("NotAuthorizedException") {
        return (
            "Cognito refused the client id and secret".into(),
            "use the app client's current secret (the console shows it under App clients); a \
             client without a secret cannot use GetClientToken"
                .into(),
        );
    }
    if has("ResourceNotFoundException") {
        return (
            format!("Cognito has no app client with this id in {region}"),
            "check client_id, and region or endpoint: the user pool's region".into(),
        );
    }
    if has("InvalidParameterException") {
        return (
            "Cognito refused a parameter (most often a scope)".into(),
            "each scope is resource-server-identifier/scope-name of a resource server of this \
             user pool, allowed for this app client; leave scopes out to get the client's own"
                .into(),
        );
    }
    if has("ForbiddenException") {
        return (
            "the AWS WAF web ACL associated with the user pool blocked the call".into(),
            "allow the proxy's requests in that web ACL".into(),
        );
    }
    if has("AccessDeniedException") {
        return (
            "a VPC endpoint policy or a resource control policy denies the call".into(),
            "allow cognito-idp:GetClientToken in the endpoint policy of the cognito-idp \
             interface endpoint"
                .into(),
        );
    }
    if unreachable(error) {
        return (
            "the cognito-idp endpoint cannot be reached from here".into(),
            format!(
                "create the interface endpoint com.amazonaws.{region}.cognito-idp with private \
                 DNS enabled (or set endpoint to its DNS name), and allow TCP 443 from the proxy \
                 in its security group"
            ),
        );
    }
    if has("AWS credentials") || has("signature") {
        return (
            "the call could not be signed, or its SigV4 signature was refused".into(),
            "give the proxy AWS credentials through the standard chain (task or instance role, \
             IRSA, environment), or set unsigned = true: Cognito does not evaluate IAM for \
             GetClientToken"
                .into(),
        );
    }
    (
        "Cognito refused or failed the call".into(),
        "check client_id, the client secret, scopes and region of [route.credential]".into(),
    )
}

fn stored(error: &str, service: &str, action: &str, region: &str) -> (String, String) {
    let has = |code: &str| error.contains(code);
    if has("AccessDeniedException") {
        return (
            format!("the proxy's AWS identity may not call {action}"),
            format!(
                "allow {action} on the secret or parameter to the proxy's role (and kms:Decrypt \
                 on its KMS key when it is a customer-managed key); check the endpoint policy of \
                 the com.amazonaws.{region}.{service} interface endpoint"
            ),
        );
    }
    if has("ResourceNotFoundException") || has("ParameterNotFound") {
        return (
            "no secret or parameter of this name in this region".into(),
            "check the name (or use the ARN) and the region".into(),
        );
    }
    if has("DecryptionFailure") || has("InvalidKeyId") {
        return (
            "the value cannot be decrypted with its KMS key".into(),
            "allow kms:Decrypt on the key to the proxy's role".into(),
        );
    }
    if unreachable(error) {
        return (
            format!("the {service} endpoint cannot be reached from here"),
            format!(
                "create the interface endpoint com.amazonaws.{region}.{service} with private DNS \
                 enabled (or set endpoint to its DNS name), and allow TCP 443 from the proxy in \
                 its security group"
            ),
        );
    }
    (
        "the stored token could not be read".into(),
        "check the secret or parameter name, json_key and the proxy's AWS credentials".into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_and_connect_failures_count_as_unreachable() {
        assert!(unreachable(
            "token endpoint https://p.auth.us-east-1.amazoncognito.com/oauth2/token: client error \
             (Connect): dns error: failed to lookup address information: Name or service not known"
        ));
        assert!(unreachable(
            "token endpoint https://127.0.0.1:9/t: client error (Connect): tcp connect error: \
             Connection refused (os error 111)"
        ));
        assert!(unreachable(
            "token endpoint https://a/t did not answer within 10s"
        ));
        assert!(!unreachable(
            "token endpoint https://a/t answered 400 invalid_client"
        ));
    }

    #[test]
    fn a_cognito_domain_names_its_region_in_the_ways_out() {
        let (cause, fix) = token_url_unreachable(
            "https://pool.auth.eu-central-1.amazoncognito.com/oauth2/token",
            "us-east-1",
        );
        assert!(cause.contains("not reachable over PrivateLink"), "{cause}");
        assert!(
            fix.contains("com.amazonaws.eu-central-1.cognito-idp")
                && fix.contains("HTTPS_PROXY")
                && fix.contains("agentcore_identity"),
            "{fix}"
        );
    }
}
