//! AWS Secrets Manager (`GetSecretValue`) or SSM (`GetParameter`) on loopback (an
//! `AwsApi`): one stored value that a test rotates, or an error. `authorize()` is the
//! matching gateway's check: only the token the store holds now is accepted.

use std::sync::{Arc, Mutex};

use serde_json::{json, Value};

use super::aws_api::{sample, AwsApi, Reply};
use super::upstream::Authorize;

pub const REGION: &str = "us-east-1";
pub const SECRET_ID: &str = "mcp/gateway-token";
pub const PARAMETER: &str = "/mcp/gateway-token";
pub const SECRETS_VPCE: &str =
    "vpce-0d1e2f3a4b5c6d7e8-sm0x1y2z.secretsmanager.us-east-1.vpce.amazonaws.com";
pub const SSM_VPCE: &str = "vpce-0e1f2a3b4c5d6e7f8-ssm0x1y2.ssm.us-east-1.vpce.amazonaws.com";
pub const KEY_ID: &str = "AKIASECRETSTORETEST1";
pub const AWS_SECRET_KEY: &str = "secret-store-test-key-wJalrXUtnFEMIK7MDENG";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    SecretsManager,
    Ssm,
}

struct State {
    /// The stored string, and the token the gateway accepts (the same unless the string
    /// is a JSON object holding it).
    value: String,
    /// The tokens the gateway accepts: the current one, and the previous one during a
    /// rotation's grace period.
    accepted: Vec<String>,
    version: u64,
    failure: Option<Reply>,
    binary: bool,
}

pub struct SecretStore {
    pub api: AwsApi,
    pub kind: Kind,
    state: Arc<Mutex<State>>,
}

impl SecretStore {
    pub async fn start(kind: Kind, value: &str, token: &str) -> SecretStore {
        let state = Arc::new(Mutex::new(State {
            value: value.to_string(),
            accepted: vec![token.to_string()],
            version: 1,
            failure: None,
            binary: false,
        }));
        let shared = state.clone();
        let (service, names) = match kind {
            Kind::SecretsManager => (
                "secretsmanager",
                [SECRETS_VPCE, "secretsmanager.us-east-1.amazonaws.com"],
            ),
            Kind::Ssm => ("ssm", [SSM_VPCE, "ssm.us-east-1.amazonaws.com"]),
        };
        let api = AwsApi::start(
            service,
            &names,
            AWS_SECRET_KEY,
            REGION,
            Box::new(move |_, input| answer(kind, &shared, input)),
        )
        .await;
        SecretStore { api, kind, state }
    }

    /// `https://<vpce name>:<port>`: resolved through the proxy's DNS (private).
    pub fn vpce_endpoint(&self) -> String {
        let name = match self.kind {
            Kind::SecretsManager => SECRETS_VPCE,
            Kind::Ssm => SSM_VPCE,
        };
        format!("https://{name}:{}", self.api.port())
    }

    /// A new version: `value` stored, `token` the only one the gateway accepts from now on.
    pub fn rotate(&self, value: &str, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.value = value.to_string();
        state.accepted = vec![token.to_string()];
        state.version += 1;
    }

    /// A new version, the gateway still accepting the previous token too (the grace
    /// period of a rotation, as with Secrets Manager's AWSPREVIOUS).
    pub fn rotate_with_grace(&self, value: &str, token: &str) {
        let mut state = self.state.lock().unwrap();
        state.value = value.to_string();
        state.accepted.push(token.to_string());
        state.version += 1;
    }

    /// Answer with samples.json's error sample of this name from now on.
    pub fn fail_with(&self, sample_name: &str) {
        let response = &sample(sample_name)["response"];
        self.state.lock().unwrap().failure = Some(Reply::Error {
            status: response["status"].as_u64().unwrap() as u16,
            kind: response["body"]["__type"].as_str().unwrap().to_string(),
            message: response["body"]
                .get("Message")
                .and_then(Value::as_str)
                .map(str::to_string),
            capital_message: true,
        });
    }

    /// Store the value as `SecretBinary` (Secrets Manager only).
    pub fn store_binary(&self) {
        self.state.lock().unwrap().binary = true;
    }

    pub fn authorize(&self) -> Authorize {
        let state = self.state.clone();
        Arc::new(move |authorization| {
            let state = state.lock().unwrap();
            authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|token| state.accepted.iter().any(|t| t == token))
        })
    }
}

fn answer(kind: Kind, state: &Mutex<State>, input: &Value) -> Reply {
    let state = state.lock().unwrap();
    if let Some(failure) = &state.failure {
        return failure.clone();
    }
    match kind {
        Kind::SecretsManager => {
            if input["SecretId"] != SECRET_ID {
                return Reply::Error {
                    status: 400,
                    kind: "ResourceNotFoundException".into(),
                    message: Some("Secrets Manager can't find the specified secret.".into()),
                    capital_message: true,
                };
            }
            let stage = input
                .get("VersionStage")
                .and_then(Value::as_str)
                .unwrap_or("AWSCURRENT");
            let mut output = json!({
                "ARN": format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{SECRET_ID}-AbCdEf"),
                "Name": SECRET_ID,
                "VersionId": format!("a1b2c3d4-0000-4000-8000-{:012}", state.version),
                "VersionStages": [stage],
            });
            if state.binary {
                output["SecretBinary"] = json!(base64_of(&state.value));
            } else {
                output["SecretString"] = json!(state.value);
            }
            Reply::Ok(output)
        }
        Kind::Ssm => {
            if input["Name"] != PARAMETER {
                return Reply::Error {
                    status: 400,
                    kind: "ParameterNotFound".into(),
                    message: None,
                    capital_message: false,
                };
            }
            let decrypted = input["WithDecryption"] == true;
            Reply::Ok(json!({
                "Parameter": {
                    "Name": PARAMETER,
                    "Type": "SecureString",
                    "Value": if decrypted { state.value.clone() } else { "AQICAHh-ciphertext".into() },
                    "Version": state.version,
                    "ARN": format!("arn:aws:ssm:us-east-1:123456789012:parameter{PARAMETER}"),
                    "DataType": "text",
                }
            }))
        }
    }
}

fn base64_of(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}
