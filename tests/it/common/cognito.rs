//! Amazon Cognito's `GetClientToken` on loopback (an `AwsApi` for `cognito-idp`): checks
//! the app client's id and secret, issues numbered JWT access tokens (with `scope`, `exp`
//! and the `ExpiresIn` a test chooses), or answers with one of the operation's errors.
//! `authorize()` is the matching gateway's check: only a token this fixture issued and
//! did not revoke is accepted.

use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use serde_json::{json, Value};

use super::aws_api::{sample, AwsApi, Reply};
use super::upstream::Authorize;

pub const REGION: &str = "us-east-1";
/// The interface endpoint's own DNS name (private DNS off).
pub const COGNITO_VPCE: &str =
    "vpce-0c0a1b2c3d4e5f6a7-idp0x1y2.cognito-idp.us-east-1.vpce.amazonaws.com";
pub const COGNITO_REGIONAL: &str = "cognito-idp.us-east-1.amazonaws.com";
/// The app client, as in tests/aws_models/samples.json.
pub const CLIENT_ID: &str = "4r8f3kq1n9c0s7examplecl1";
pub const CLIENT_SECRET: &str = "q1w2e3r4t5y6u7i8o9p0a1s2d3f4g5h6j7k8l9z0x1c2v3b4";
/// The AWS credentials the proxy signs with (environment of the child proxy).
pub const KEY_ID: &str = "AKIACOGNITOTEST00001";
pub const AWS_SECRET_KEY: &str = "cognito-test-secret-key-wJalrXUtnFEMIK7MDENG";

#[derive(Debug, Clone)]
enum Mode {
    Tokens { expires_in: u64 },
    Fail(Reply),
}

struct State {
    mode: Mode,
    issued: Vec<String>,
    /// Tokens issued before this index are no longer accepted by the gateway.
    revoked_below: usize,
}

pub struct Cognito {
    pub api: AwsApi,
    state: Arc<Mutex<State>>,
}

impl Cognito {
    /// Issues tokens with `ExpiresIn = expires_in`.
    pub async fn start(expires_in: u64) -> Cognito {
        let state = Arc::new(Mutex::new(State {
            mode: Mode::Tokens { expires_in },
            issued: Vec::new(),
            revoked_below: 0,
        }));
        let shared = state.clone();
        let api = AwsApi::start(
            "cognito-idp",
            &[COGNITO_VPCE, COGNITO_REGIONAL],
            AWS_SECRET_KEY,
            REGION,
            Box::new(move |_, input| answer(&shared, input)),
        )
        .await;
        Cognito { api, state }
    }

    /// `https://<vpce name>:<port>`: resolved through the proxy's DNS (private).
    pub fn vpce_endpoint(&self) -> String {
        format!("https://{COGNITO_VPCE}:{}", self.api.port())
    }

    /// `https://127.0.0.1:<port>`: no DNS.
    pub fn ip_endpoint(&self) -> String {
        format!("https://127.0.0.1:{}", self.api.port())
    }

    pub fn issued(&self) -> Vec<String> {
        self.state.lock().unwrap().issued.clone()
    }

    /// From now on, answer with the error of samples.json's `cognito <code>` sample.
    pub fn fail_with(&self, code: &str) {
        let body = &sample(&format!("cognito {code}"))["response"];
        let reply = Reply::Error {
            status: body["status"].as_u64().unwrap() as u16,
            kind: body["body"]["__type"].as_str().unwrap().to_string(),
            message: body["body"]["message"].as_str().map(str::to_string),
            capital_message: false,
        };
        self.state.lock().unwrap().mode = Mode::Fail(reply);
    }

    /// Every token issued so far is refused by the gateway from now on.
    pub fn revoke_all(&self) {
        let mut state = self.state.lock().unwrap();
        state.revoked_below = state.issued.len();
    }

    /// The gateway's check: `Bearer <a token issued here and not revoked>`.
    pub fn authorize(&self) -> Authorize {
        let state = self.state.clone();
        Arc::new(move |authorization| {
            let state = state.lock().unwrap();
            authorization
                .and_then(|a| a.strip_prefix("Bearer "))
                .is_some_and(|token| {
                    state.issued[state.revoked_below..]
                        .iter()
                        .any(|t| t == token)
                })
        })
    }
}

fn answer(state: &Mutex<State>, input: &Value) -> Reply {
    let mut state = state.lock().unwrap();
    let expires_in = match &state.mode {
        Mode::Fail(reply) => return reply.clone(),
        Mode::Tokens { expires_in } => *expires_in,
    };
    if input["ClientId"] != CLIENT_ID || input["Secret"] != CLIENT_SECRET {
        return Reply::error("NotAuthorizedException", "Incorrect client id or secret.");
    }
    let scopes = match input.get("Scopes").and_then(Value::as_array) {
        Some(list) => list
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        None => "gateway/invoke".to_string(),
    };
    let n = state.issued.len() + 1;
    let token = access_token(n, &scopes, expires_in);
    state.issued.push(token.clone());
    Reply::Ok(json!({
        "ClientAuthenticationResult": {
            "AccessToken": token,
            "ExpiresIn": expires_in,
            "TokenType": "Bearer",
        }
    }))
}

/// An unsigned JWT as Cognito issues it for M2M: `client_id`, `scope`, `token_use`, `exp`.
fn access_token(n: usize, scopes: &str, lifetime_secs: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let enc = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(json!({"kid": "test-key", "alg": "RS256"})),
        enc(json!({
            "sub": CLIENT_ID,
            "client_id": CLIENT_ID,
            "token_use": "access",
            "scope": scopes,
            "jti": format!("cognito-m2m-{n:04}"),
            "iat": now,
            "exp": now + lifetime_secs,
        }))
    )
}
