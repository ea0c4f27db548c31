//! The `[route.credential]` tables of the sources that call an AWS JSON 1.1 API
//! (`cognito_client_token`, `secrets_manager`, `ssm_parameter`), and what they share:
//! the region, the endpoint (regional name or a VPC endpoint's DNS name) and whether the
//! call must stay inside the VPC.
//!
//! Declared here rather than in `config.rs` so that the three tables and their checks
//! read as one piece; `config.rs` holds the enum that names them.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::config::{check_fetch_url, check_region, default_fetch_timeout, default_refresh_margin};
use super::secret_source::SecretSource;

/// Cognito's `GetClientToken`: an M2M access token through the `cognito-idp` API, which
/// (unlike a user pool's token endpoint) is reachable through an interface endpoint.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CognitoClientTokenConfig {
    /// The user pool's region; default: read from `endpoint`, else `AWS_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// The app client's id (not a secret), or where to read it.
    #[serde(default)]
    pub client_id: Option<String>,
    #[serde(default)]
    pub client_id_env: Option<String>,
    #[serde(default)]
    pub client_id_file: Option<PathBuf>,
    /// Where the app client's secret is: an environment variable or a file (re-read at
    /// each fetch, so a rotated secret is picked up).
    #[serde(default)]
    pub client_secret_env: Option<String>,
    #[serde(default)]
    pub client_secret_file: Option<PathBuf>,
    /// Custom scopes (`resource-server-identifier/scope-name`); none: the scopes the app
    /// client is configured with.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Default `https://cognito-idp.<region>.amazonaws.com` (the interface endpoint's
    /// addresses when its private DNS is on); or the endpoint's own DNS name.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// Extra PEM CA certificates trusted for the endpoint.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Dial the endpoint only at in-VPC addresses, through the proxy's resolver, never
    /// through `HTTPS_PROXY`. Default: on when `endpoint` is a VPC endpoint's name.
    #[serde(default)]
    pub require_private: Option<bool>,
    /// Send the call without a SigV4 signature (Cognito does not evaluate IAM for this
    /// operation; whether it accepts unsigned calls is not documented).
    #[serde(default)]
    pub unsigned: bool,
    /// A named profile for the AWS credentials that sign the call.
    #[serde(default)]
    pub profile: Option<String>,
    /// Refresh this long before the token expires (capped at half its lifetime).
    #[serde(default = "default_refresh_margin", with = "humantime_serde")]
    pub refresh_margin: Duration,
    /// Time allowed for one fetch.
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// A bearer token stored in AWS Secrets Manager, read again on an interval and on a 401.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SecretsManagerConfig {
    /// The secret's name or ARN (`GetSecretValue`'s `SecretId`).
    pub secret_id: String,
    /// `AWSCURRENT` unless given (`AWSPENDING`, `AWSPREVIOUS` or a label of yours).
    #[serde(default)]
    pub version_stage: Option<String>,
    /// The secret string is a JSON object: the token is this key's value.
    #[serde(default)]
    pub json_key: Option<String>,
    /// Default: read from `endpoint` (or a secret ARN), else `AWS_REGION`.
    #[serde(default)]
    pub region: Option<String>,
    /// Default `https://secretsmanager.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub require_private: Option<bool>,
    #[serde(default)]
    pub profile: Option<String>,
    /// Read the secret again this often (rotation without a restart).
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

/// A bearer token stored in an SSM parameter (SecureString, decrypted), read again on an
/// interval and on a 401.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SsmParameterConfig {
    /// The parameter's name or ARN (`GetParameter`'s `Name`).
    pub name: String,
    /// The value is a JSON object: the token is this key's value.
    #[serde(default)]
    pub json_key: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    /// Default `https://ssm.<region>.amazonaws.com`.
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    #[serde(default)]
    pub require_private: Option<bool>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default = "default_refresh_interval", with = "humantime_serde")]
    pub refresh_interval: Duration,
    #[serde(default = "default_fetch_timeout", with = "humantime_serde")]
    pub timeout: Duration,
}

pub(crate) fn default_refresh_interval() -> Duration {
    Duration::from_secs(300)
}

/// Where and how one AWS API is called, once region and endpoint are worked out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsEndpoint {
    pub region: String,
    /// `https://host[:port]` without a trailing slash.
    pub url: String,
    /// Dial only in-VPC addresses through the proxy's resolver.
    pub require_private: bool,
}

/// Works out the region and endpoint of `service` (`cognito-idp`, `secretsmanager`,
/// `ssm`): the `region` key, else the region named in `endpoint` (or in `arn`), else
/// `AWS_REGION`/`AWS_DEFAULT_REGION`. The endpoint defaults to the regional name.
pub fn aws_endpoint(
    service: &str,
    region: Option<&str>,
    endpoint: Option<&str>,
    arn: Option<&str>,
    require_private: Option<bool>,
) -> Result<AwsEndpoint, String> {
    let uri = endpoint
        .map(|e| check_fetch_url("endpoint", e))
        .transpose()?;
    if let Some(uri) = &uri {
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(format!(
                "endpoint {:?} must be a bare https://host[:port] (the API is at /)",
                endpoint.unwrap_or_default()
            ));
        }
    }
    let host = uri.as_ref().and_then(|u| u.host()).unwrap_or("");
    let region = match region {
        Some(r) => r.to_string(),
        None => region_in_host(host, service)
            .or_else(|| arn.and_then(region_in_arn))
            .or_else(env_region)
            .ok_or_else(|| {
                format!(
                    "cannot tell the {service} region: set `region` (or AWS_REGION), or give \
                     `endpoint` as the regional or VPC endpoint name"
                )
            })?,
    };
    check_region(&region)?;
    let url = match (endpoint, &uri) {
        (Some(text), Some(_)) => text.trim_end_matches('/').to_string(),
        _ => {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("https://{service}.{region}.{suffix}")
        }
    };
    Ok(AwsEndpoint {
        region,
        url,
        require_private: require_private.unwrap_or_else(|| is_vpce_name(host)),
    })
}

/// `vpce-….<service>.<region>.vpce.amazonaws.com`: an interface endpoint's own name.
pub fn is_vpce_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host.starts_with("vpce-")
        && (host.ends_with(".vpce.amazonaws.com") || host.ends_with(".vpce.amazonaws.com.cn"))
}

/// The label after `service` in a host name, when it is a region:
/// `cognito-idp.us-east-1.amazonaws.com`, `vpce-1-a.cognito-idp.us-east-1.vpce.amazonaws.com`.
fn region_in_host(host: &str, service: &str) -> Option<String> {
    let labels: Vec<&str> = host.split('.').collect();
    let at = labels
        .iter()
        .position(|l| l.eq_ignore_ascii_case(service))?;
    let region = labels.get(at + 1)?;
    check_region(region).ok()?;
    Some(region.to_string())
}

/// `arn:aws:secretsmanager:us-east-1:123456789012:secret:name` → `us-east-1`.
fn region_in_arn(arn: &str) -> Option<String> {
    let region = arn.strip_prefix("arn:")?.split(':').nth(2)?;
    check_region(region).ok()?;
    Some(region.to_string())
}

fn env_region() -> Option<String> {
    ["AWS_REGION", "AWS_DEFAULT_REGION"]
        .iter()
        .find_map(|k| std::env::var(k).ok().filter(|v| !v.trim().is_empty()))
        .map(|v| v.trim().to_string())
}

impl CognitoClientTokenConfig {
    pub fn validate(&self) -> Result<(), String> {
        let ids = [
            self.client_id.is_some(),
            self.client_id_env.is_some(),
            self.client_id_file.is_some(),
        ];
        if ids.iter().filter(|x| **x).count() != 1 {
            return Err("give exactly one of client_id, client_id_env, client_id_file".into());
        }
        if self.client_secret_env.is_some() == self.client_secret_file.is_some() {
            return Err("give exactly one of client_secret_env, client_secret_file".into());
        }
        check_client_id(self.client_id_source().read()?.expose())?;
        check_client_secret(self.client_secret_source().read()?.expose())?;
        if self.scopes.len() > 50 {
            return Err("scopes: at most 50 scopes".into());
        }
        for scope in &self.scopes {
            // The model's pattern: printable ASCII without space, `"` and `\`.
            let ok = !scope.is_empty()
                && scope.len() <= 256
                && scope
                    .bytes()
                    .all(|b| (0x21..=0x7e).contains(&b) && b != b'"' && b != b'\\');
            if !ok {
                return Err(format!(
                    "scopes: {scope:?} is not a scope (resource-server-identifier/scope-name)"
                ));
            }
        }
        self.endpoint()?;
        check_common(self.ca_file.as_ref(), self.timeout)
    }

    pub fn endpoint(&self) -> Result<AwsEndpoint, String> {
        aws_endpoint(
            "cognito-idp",
            self.region.as_deref(),
            self.endpoint.as_deref(),
            None,
            self.require_private,
        )
    }

    pub fn client_id_source(&self) -> SecretSource {
        match (&self.client_id, &self.client_id_env, &self.client_id_file) {
            (Some(id), _, _) => SecretSource::Literal(id.clone(), "client_id"),
            (_, Some(env), _) => SecretSource::Env(env.clone(), "client id"),
            (_, _, Some(path)) => SecretSource::File(path.clone(), "client id"),
            _ => SecretSource::Missing("client id"),
        }
    }

    pub fn client_secret_source(&self) -> SecretSource {
        match (&self.client_secret_env, &self.client_secret_file) {
            (Some(env), _) => SecretSource::Env(env.clone(), "client secret"),
            (_, Some(path)) => SecretSource::File(path.clone(), "client secret"),
            _ => SecretSource::Missing("client secret"),
        }
    }
}

/// The model's `ClientIdType`: 1 to 128 of `[\w+]`.
pub fn check_client_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > 128 || !id.bytes().all(is_word_or_plus) {
        return Err(
            "client id: a Cognito app client id is 1 to 128 letters, digits, '_' or '+'".into(),
        );
    }
    Ok(())
}

/// The model's `ClientSecretType`: 24 to 64 of `[\w+]`. Never echoes the value.
pub fn check_client_secret(secret: &str) -> Result<(), String> {
    if secret.len() < 24 {
        return Err(format!(
            "client secret: {} characters, but a Cognito app client secret has at least 24 \
             (is this the client id, or a truncated secret?)",
            secret.chars().count()
        ));
    }
    if secret.len() > 64 || !secret.bytes().all(is_word_or_plus) {
        return Err(
            "client secret: a Cognito app client secret is at most 64 letters, digits, '_' or '+'"
                .into(),
        );
    }
    Ok(())
}

fn is_word_or_plus(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'+'
}

impl SecretsManagerConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_name("secret_id", &self.secret_id, 2048)?;
        if let Some(stage) = &self.version_stage {
            check_name("version_stage", stage, 256)?;
        }
        check_json_key(self.json_key.as_deref())?;
        self.endpoint()?;
        check_interval(self.refresh_interval)?;
        check_common(self.ca_file.as_ref(), self.timeout)
    }

    pub fn endpoint(&self) -> Result<AwsEndpoint, String> {
        aws_endpoint(
            "secretsmanager",
            self.region.as_deref(),
            self.endpoint.as_deref(),
            Some(&self.secret_id),
            self.require_private,
        )
    }
}

impl SsmParameterConfig {
    pub fn validate(&self) -> Result<(), String> {
        check_name("name", &self.name, 2048)?;
        check_json_key(self.json_key.as_deref())?;
        self.endpoint()?;
        check_interval(self.refresh_interval)?;
        check_common(self.ca_file.as_ref(), self.timeout)
    }

    pub fn endpoint(&self) -> Result<AwsEndpoint, String> {
        aws_endpoint(
            "ssm",
            self.region.as_deref(),
            self.endpoint.as_deref(),
            Some(&self.name),
            self.require_private,
        )
    }
}

/// A name sent as a JSON string: non-empty, no control characters, within the model's
/// length limit.
fn check_name(key: &str, value: &str, max: usize) -> Result<(), String> {
    if value.trim().is_empty() || value.chars().any(char::is_control) {
        return Err(format!(
            "{key} must be non-empty and free of control characters"
        ));
    }
    if value.chars().count() > max {
        return Err(format!("{key} is longer than {max} characters"));
    }
    Ok(())
}

fn check_json_key(key: Option<&str>) -> Result<(), String> {
    match key {
        Some(k) if k.is_empty() || k.chars().any(char::is_control) => {
            Err("json_key must be non-empty and free of control characters".into())
        }
        _ => Ok(()),
    }
}

fn check_interval(interval: Duration) -> Result<(), String> {
    if interval < Duration::from_secs(1) {
        return Err("refresh_interval must be at least 1s".into());
    }
    Ok(())
}

fn check_common(ca_file: Option<&PathBuf>, timeout: Duration) -> Result<(), String> {
    if let Some(ca) = ca_file {
        crate::upstream::tls::read_ca_file(ca)?;
    }
    if timeout.is_zero() {
        return Err("timeout must be greater than 0".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_region_comes_from_the_key_the_endpoint_or_the_arn() {
        let e = aws_endpoint("cognito-idp", Some("eu-west-1"), None, None, None).unwrap();
        assert_eq!(e.url, "https://cognito-idp.eu-west-1.amazonaws.com");
        assert!(!e.require_private);
        let e = aws_endpoint(
            "cognito-idp",
            None,
            Some("https://vpce-0abc-1x2y.cognito-idp.ap-south-1.vpce.amazonaws.com/"),
            None,
            None,
        )
        .unwrap();
        assert_eq!(e.region, "ap-south-1");
        assert_eq!(
            e.url,
            "https://vpce-0abc-1x2y.cognito-idp.ap-south-1.vpce.amazonaws.com"
        );
        assert!(e.require_private, "a vpce name keeps the call private");
        let e = aws_endpoint(
            "secretsmanager",
            None,
            None,
            Some("arn:aws:secretsmanager:us-west-2:123456789012:secret:gw-token-AbCdEf"),
            Some(true),
        )
        .unwrap();
        assert_eq!(e.url, "https://secretsmanager.us-west-2.amazonaws.com");
        assert!(e.require_private);
        let e = aws_endpoint("ssm", Some("cn-north-1"), None, None, None).unwrap();
        assert_eq!(e.url, "https://ssm.cn-north-1.amazonaws.com.cn");
        assert!(aws_endpoint(
            "ssm",
            Some("us-east-1"),
            Some("https://ssm.us-east-1.amazonaws.com/x"),
            None,
            None
        )
        .unwrap_err()
        .contains("bare https://host"));
    }

    #[test]
    fn client_secrets_follow_the_model_and_are_never_echoed() {
        assert!(check_client_secret("abcdefghijklmnopqrstuvwxyz0123456789").is_ok());
        let short = "s3cr3t-short";
        let e = check_client_secret(short).unwrap_err();
        assert!(e.contains("at least 24") && !e.contains(short), "{e}");
        let odd = "abcdefghijklmnopqrstuvwxyz-0123456789";
        let e = check_client_secret(odd).unwrap_err();
        assert!(!e.contains(odd), "{e}");
        assert!(check_client_id("4r8f3kq1n9c0s7example").is_ok());
        assert!(check_client_id("bad id").is_err());
    }

    #[test]
    fn vpce_names_are_recognised() {
        assert!(is_vpce_name(
            "vpce-0a1b-c2d3.secretsmanager.us-east-1.vpce.amazonaws.com"
        ));
        assert!(!is_vpce_name("secretsmanager.us-east-1.amazonaws.com"));
        assert!(!is_vpce_name("127.0.0.1"));
    }
}
