//! AWS-side fixtures for the SigV4 and AgentCore Identity tests, all on loopback:
//!
//! - `verify_sigv4`: an independent SigV4 verifier (hand-written with ring's HMAC and
//!   SHA-256, sharing no code with `aws-sigv4`) that recomputes a request's signature;
//! - `CredentialServer`: an ECS container-credentials endpoint or an IMDSv2 endpoint
//!   handing out numbered temporary credentials with a chosen lifetime;
//! - `IdentityService`: AgentCore Identity's two calls (`GetWorkloadAccessToken`,
//!   `oauth2/token`), checking each call's signature;
//! - `ChildProxy`: the proxy binary run as a child process, for tests whose settings live
//!   in environment variables (which must not leak into other tests of the same binary)
//!   or that read a process-wide page (`/metrics`) of their own, with its JSON logs
//!   captured and, on request, its admin listener.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::BufRead;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use ring::{digest, hmac};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

// ---- The independent SigV4 verifier ----------------------------------------------

/// What a verified signature covered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub signed_headers: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn sha256_hex(bytes: &[u8]) -> String {
    hex(digest::digest(&digest::SHA256, bytes).as_ref())
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data)
        .as_ref()
        .to_vec()
}

/// RFC 3986 encoding as SigV4 wants it: unreserved characters stay, everything else is
/// `%XX` (upper case). `keep_slash` for paths.
fn uri_encode(text: &[u8], keep_slash: bool) -> String {
    let mut out = String::new();
    for &b in text {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) || (keep_slash && b == b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn percent_decode(text: &str) -> Vec<u8> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Ok(b) = u8::from_str_radix(&text[i + 1..i + 3], 16) {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    out
}

/// RFC 3986 5.2.4 dot-segment removal, with empty segments collapsed, as SigV4 does
/// before encoding a path.
fn normalize_path(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = format!("/{}", segments.join("/"));
    if path.ends_with('/') && !out.ends_with('/') {
        out.push('/');
    }
    out
}

/// Recomputes the SigV4 signature of a request (`path_and_query` as sent, the headers
/// including Host, the body) with `secret_key`, and compares it with the one in its
/// Authorization header. Paths are encoded twice, as for every service but S3.
pub fn verify_sigv4(
    method: &str,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
    secret_key: &str,
) -> Result<Signed, String> {
    let auth = headers
        .get("authorization")
        .ok_or("no Authorization header")?
        .to_str()
        .map_err(|e| e.to_string())?;
    let rest = auth
        .strip_prefix("AWS4-HMAC-SHA256 ")
        .ok_or_else(|| format!("not a SigV4 Authorization: {auth}"))?;
    let mut fields = BTreeMap::new();
    for part in rest.split(", ") {
        let (k, v) = part.split_once('=').ok_or("malformed Authorization")?;
        fields.insert(k.trim(), v.trim());
    }
    let credential = fields.get("Credential").ok_or("no Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(format!("bad credential scope {credential}"));
    }
    let signed_headers: Vec<String> = fields
        .get("SignedHeaders")
        .ok_or("no SignedHeaders")?
        .split(';')
        .map(str::to_string)
        .collect();
    let signature = fields.get("Signature").ok_or("no Signature")?;
    let amz_date = headers
        .get("x-amz-date")
        .ok_or("no X-Amz-Date")?
        .to_str()
        .map_err(|e| e.to_string())?;

    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let canonical_uri = uri_encode(normalize_path(path).as_bytes(), true);
    let mut params: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (
                uri_encode(&percent_decode(k), false),
                uri_encode(&percent_decode(v), false),
            )
        })
        .collect();
    params.sort();
    let canonical_query: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut canonical_headers = String::new();
    for name in &signed_headers {
        let values: Vec<String> = headers
            .get_all(name.as_str())
            .iter()
            .map(|v| {
                String::from_utf8_lossy(v.as_bytes())
                    .split_whitespace()
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect();
        if values.is_empty() {
            return Err(format!("signed header {name} is missing"));
        }
        canonical_headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    let payload_hash = match headers.get("x-amz-content-sha256") {
        Some(v) => v.to_str().unwrap_or_default().to_string(),
        None => sha256_hex(body),
    };
    let canonical_request = format!(
        "{method}\n{canonical_uri}\n{}\n{canonical_headers}\n{}\n{payload_hash}",
        canonical_query.join("&"),
        signed_headers.join(";")
    );
    let scope_text = format!("{}/{}/{}/aws4_request", scope[1], scope[2], scope[3]);
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope_text}\n{}",
        sha256_hex(canonical_request.as_bytes())
    );
    let mut key = hmac_sha256(format!("AWS4{secret_key}").as_bytes(), scope[1].as_bytes());
    for part in [scope[2], scope[3], "aws4_request"] {
        key = hmac_sha256(&key, part.as_bytes());
    }
    let expected = hex(&hmac_sha256(&key, string_to_sign.as_bytes()));
    if expected != *signature {
        return Err(format!(
            "signature mismatch: computed {expected}, request has {signature}\ncanonical request:\n{canonical_request}"
        ));
    }
    Ok(Signed {
        access_key_id: scope[0].to_string(),
        date: scope[1].to_string(),
        region: scope[2].to_string(),
        service: scope[3].to_string(),
        signed_headers,
    })
}

// ---- Credential endpoints (ECS, IMDS) ---------------------------------------------

/// The n-th credentials a `CredentialServer` of `kind` hands out: (key id, secret, token).
pub fn credentials(kind: &str, n: usize) -> (String, String, String) {
    (
        format!("ASIA{}{n:012}", kind.to_uppercase()),
        format!("{kind}-secret-key-{n:04}-wJalrXUtnFEMIK7MDENG"),
        format!("{kind}-session-token-{n:04}-FwoGZXIvYXdzEBYaDHqa0AP"),
    )
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// `AWS_CONTAINER_CREDENTIALS_FULL_URI`: GET the URI, JSON credentials.
    Ecs,
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`: IMDSv2 session token, role name, credentials.
    Imds,
}

pub const IMDS_ROLE: &str = "proxy-instance-role";
const IMDS_TOKEN: &str = "imds-session-token-AQAEAAAAAAAAA";

struct CredentialState {
    kind: CredentialKind,
    lifetime: Duration,
    issued: usize,
}

pub struct CredentialServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<CredentialState>>,
    task: JoinHandle<()>,
}

impl Drop for CredentialServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl CredentialServer {
    /// Hands out credentials that expire `lifetime` after they are issued.
    pub async fn start(kind: CredentialKind, lifetime: Duration) -> CredentialServer {
        let state = Arc::new(Mutex::new(CredentialState {
            kind,
            lifetime,
            issued: 0,
        }));
        let shared = state.clone();
        let (addr, task) = serve(move |req, body| {
            let state = shared.clone();
            async move { credential_answer(&state, req, body) }
        })
        .await;
        CredentialServer { addr, state, task }
    }

    pub fn kind_name(&self) -> &'static str {
        match self.state.lock().unwrap().kind {
            CredentialKind::Ecs => "ecs",
            CredentialKind::Imds => "imds",
        }
    }

    /// The value for `AWS_CONTAINER_CREDENTIALS_FULL_URI` or
    /// `AWS_EC2_METADATA_SERVICE_ENDPOINT`.
    pub fn env(&self) -> (&'static str, String) {
        match self.state.lock().unwrap().kind {
            CredentialKind::Ecs => (
                "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                format!("http://{}/v2/credentials/task-role", self.addr),
            ),
            CredentialKind::Imds => (
                "AWS_EC2_METADATA_SERVICE_ENDPOINT",
                format!("http://{}", self.addr),
            ),
        }
    }

    /// How many sets of credentials were handed out.
    pub fn issued(&self) -> usize {
        self.state.lock().unwrap().issued
    }
}

fn credential_answer(
    state: &Mutex<CredentialState>,
    req: http::request::Parts,
    _body: Bytes,
) -> Response<Full<Bytes>> {
    let mut state = state.lock().unwrap();
    let path = req.uri.path().to_string();
    let issue = |state: &mut CredentialState| {
        state.issued += 1;
        let (id, secret, token) = credentials(
            match state.kind {
                CredentialKind::Ecs => "ecs",
                CredentialKind::Imds => "imds",
            },
            state.issued,
        );
        let expiration =
            humantime::format_rfc3339_seconds(SystemTime::now() + state.lifetime).to_string();
        json!({
            "Code": "Success",
            "Type": "AWS-HMAC",
            "LastUpdated": humantime::format_rfc3339_seconds(SystemTime::now()).to_string(),
            "AccessKeyId": id,
            "SecretAccessKey": secret,
            "Token": token,
            "Expiration": expiration,
        })
    };
    match state.kind {
        CredentialKind::Ecs => text(200, &issue(&mut state).to_string()),
        CredentialKind::Imds => {
            let authorized = req
                .headers
                .get("x-aws-ec2-metadata-token")
                .is_some_and(|v| v == IMDS_TOKEN);
            match (req.method.clone(), path.as_str()) {
                (Method::PUT, "/latest/api/token") => {
                    let mut r = text(200, IMDS_TOKEN);
                    r.headers_mut().insert(
                        "x-aws-ec2-metadata-token-ttl-seconds",
                        http::HeaderValue::from_static("21600"),
                    );
                    r
                }
                (_, _) if !authorized => text(401, ""),
                (Method::GET, "/latest/meta-data/iam/security-credentials/") => {
                    text(200, IMDS_ROLE)
                }
                (Method::GET, p)
                    if p == format!("/latest/meta-data/iam/security-credentials/{IMDS_ROLE}") =>
                {
                    text(200, &issue(&mut state).to_string())
                }
                _ => text(404, ""),
            }
        }
    }
}

fn text(status: u16, body: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// A plain-HTTP server on loopback whose answers come from `handler`.
async fn serve<F, Fut>(handler: F) -> (SocketAddr, JoinHandle<()>)
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Response<Full<Bytes>>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let handler = handler.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let handler = handler.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        Ok::<_, Infallible>(handler(parts, body).await)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), service)
                    .await;
            });
        }
    });
    (addr, task)
}

// ---- AgentCore Identity ------------------------------------------------------------

pub const WORKLOAD_ACCESS_TOKEN: &str = "workload-access-token-7f3a9c";

/// One call the identity fixture received, and what it found wrong (if anything).
#[derive(Debug, Clone)]
pub struct IdentityCall {
    pub path: String,
    pub body: Value,
    pub signed: Result<Signed, String>,
}

pub struct IdentityService {
    pub addr: SocketAddr,
    calls: Arc<Mutex<Vec<IdentityCall>>>,
    tokens: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for IdentityService {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl IdentityService {
    /// Accepts calls signed with `secret_key` for region `region`; issues JWT access
    /// tokens living `token_lifetime_secs`.
    pub async fn start(
        secret_key: &str,
        region: &str,
        token_lifetime_secs: u64,
    ) -> IdentityService {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let (c, t) = (calls.clone(), tokens.clone());
        let secret = secret_key.to_string();
        let region = region.to_string();
        let (addr, task) = serve(move |req, body| {
            let (calls, tokens, secret, region) = (c.clone(), t.clone(), secret.clone(), region.clone());
            async move {
                let path = req.uri.path().to_string();
                let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
                let signed = verify_sigv4(req.method.as_str(), &path, &req.headers, &body, &secret)
                    .and_then(|s| {
                        if s.region == region && s.service == "bedrock-agentcore" {
                            Ok(s)
                        } else {
                            Err(format!("signed for {}/{}", s.region, s.service))
                        }
                    });
                calls.lock().unwrap().push(IdentityCall {
                    path: path.clone(),
                    body: json.clone(),
                    signed: signed.clone(),
                });
                if let Err(e) = signed {
                    let mut r = text(403, &json!({ "message": e.lines().next().unwrap_or("") }).to_string());
                    r.headers_mut().insert(
                        "x-amzn-errortype",
                        http::HeaderValue::from_static("InvalidSignatureException:http://internal.amazon.com/coral/com.amazon.coral.service/"),
                    );
                    return r;
                }
                match path.as_str() {
                    "/identities/GetWorkloadAccessToken" => text(
                        200,
                        &json!({ "workloadAccessToken": WORKLOAD_ACCESS_TOKEN }).to_string(),
                    ),
                    "/identities/oauth2/token" => {
                        if json["workloadIdentityToken"] != WORKLOAD_ACCESS_TOKEN
                            || json["oauth2Flow"] != "M2M"
                        {
                            return text(400, &json!({ "message": "bad request" }).to_string());
                        }
                        let mut tokens = tokens.lock().unwrap();
                        let token = super::token_server::jwt(
                            &format!("identity-m2m-{:04}", tokens.len() + 1),
                            token_lifetime_secs,
                        );
                        tokens.push(token.clone());
                        text(200, &json!({ "accessToken": token }).to_string())
                    }
                    _ => text(404, ""),
                }
            }
        })
        .await;
        IdentityService {
            addr,
            calls,
            tokens,
            task,
        }
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn calls(&self) -> Vec<IdentityCall> {
        self.calls.lock().unwrap().clone()
    }

    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().unwrap().clone()
    }
}

// ---- The proxy as a child process ----------------------------------------------------

pub struct ChildProxy {
    pub addr: SocketAddr,
    /// The admin listener, when started by [`ChildProxy::start_with_admin`].
    pub admin: Option<SocketAddr>,
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    _dir: tempfile::TempDir,
}

impl Drop for ChildProxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl ChildProxy {
    /// Runs `mcp-vpce-proxy run --config <toml>` with JSON logs at `log_level`, in an
    /// environment holding only `PATH`, an empty `HOME` and `envs` (no AWS settings of
    /// the machine leak in), and waits until it listens.
    pub async fn start(toml: &str, envs: &[(&str, String)], log_level: &str) -> ChildProxy {
        ChildProxy::spawn(toml, envs, log_level, false, &[]).await
    }

    /// As [`ChildProxy::start`], with the admin listener on an ephemeral loopback port
    /// (`admin`) and `args` added to `run` (e.g. `--workers 1`). For the tests that read
    /// `/metrics` or `/routes` of a process of its own, or give the proxy environment
    /// variables: the test process's environment is never changed.
    pub async fn start_with_admin(
        toml: &str,
        envs: &[(&str, String)],
        log_level: &str,
        args: &[&str],
    ) -> ChildProxy {
        ChildProxy::spawn(toml, envs, log_level, true, args).await
    }

    async fn spawn(
        toml: &str,
        envs: &[(&str, String)],
        log_level: &str,
        with_admin: bool,
        args: &[&str],
    ) -> ChildProxy {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("proxy.toml");
        std::fs::write(&config, toml).unwrap();
        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        let mut command = Command::new(env!("CARGO_BIN_EXE_mcp-vpce-proxy"));
        command
            .args(["run", "--config"])
            .arg(&config)
            .args([
                "--admin",
                if with_admin { "127.0.0.1:0" } else { "off" },
                "--log-format",
                "json",
                "--log-level",
                log_level,
            ])
            .args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &home)
            .env("AWS_CONFIG_FILE", home.join("no-config"))
            .env("AWS_SHARED_CREDENTIALS_FILE", home.join("no-credentials"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in envs {
            command.env(k, v);
        }
        let mut child = command.spawn().expect("start the proxy binary");
        let stderr = child.stderr.take().unwrap();
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                sink.lock().unwrap().push(line);
            }
        });
        // The address a log line announces: `field` of the line whose message is `message`.
        let announced = |message: &str, field: &str| {
            logs.lock().unwrap().iter().find_map(|line| {
                let v: Value = serde_json::from_str(line).ok()?;
                (v["message"] == message)
                    .then(|| v[field].as_str()?.parse::<SocketAddr>().ok())
                    .flatten()
            })
        };
        let mut waited = 0;
        let (addr, admin) = loop {
            let addr = announced("proxy listening", "listen");
            let admin = with_admin
                .then(|| announced("admin listening", "admin"))
                .flatten();
            if let Some(addr) = addr {
                if admin.is_some() || !with_admin {
                    break (addr, admin);
                }
            }
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "the proxy exited ({status}):\n{}",
                    logs.lock().unwrap().join("\n")
                );
            }
            waited += 1;
            assert!(waited < 600, "the proxy did not start within 30 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        ChildProxy {
            addr,
            admin,
            child,
            logs,
            _dir: dir,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/mcp", self.addr)
    }

    /// Everything the proxy logged so far.
    pub fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }
}
