//! A loopback HTTPS server for one AWS JSON 1.1 service (`cognito-idp`,
//! `secretsmanager`, `ssm`), checking every request exactly as botocore's model describes
//! it and answering in the model's shapes.
//!
//! The model is `tests/aws_models/operations.json`, extracted from botocore (the CI step
//! `tests/aws_models/extract.py` fails when it no longer matches). For each request the
//! fixture checks: `POST /`, `Content-Type: application/x-amz-json-1.1`, an `X-Amz-Target`
//! naming a modelled operation of this service, a body whose member names, types, required
//! members and length limits fit the input shape, and the SigV4 signature (recomputed by
//! `aws::verify_sigv4`, service = the model's signing name) or its absence. What it finds
//! wrong is recorded in `ApiCall::problems` and answered with a 400
//! `SerializationException`. Answers come from a test's `handler` and are checked against
//! the output shape (or, for errors, the operation's error list) before they are sent.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::aws::{verify_sigv4, Signed};
use super::certs::{self, TestPki};

/// Errors every AWS JSON service may answer besides an operation's own.
const COMMON_ERRORS: &[&str] = &[
    "AccessDeniedException",
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "ThrottlingException",
    "ValidationException",
];

/// The operations of `tests/aws_models/operations.json`, by `service.Operation`.
pub fn model() -> &'static Value {
    static MODEL: OnceLock<Value> = OnceLock::new();
    MODEL.get_or_init(|| {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws_models/operations.json");
        let text = std::fs::read_to_string(&path).expect("tests/aws_models/operations.json");
        serde_json::from_str::<Value>(&text).expect("operations.json is JSON")["operations"].clone()
    })
}

/// A sample of `tests/aws_models/samples.json` (checked with botocore by the CI step).
pub fn sample(name: &str) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/aws_models/samples.json");
    let samples: Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("samples.json")).unwrap();
    samples
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == name)
        .unwrap_or_else(|| panic!("no sample {name:?} in samples.json"))
        .clone()
}

/// An answer a test's handler gives.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 200 with this output (checked against the output shape).
    Ok(Value),
    /// An error: the status, `__type` (as sent, namespace and all), and the message
    /// under `message` (or `Message`, as Secrets Manager spells it).
    Error {
        status: u16,
        kind: String,
        message: Option<String>,
        capital_message: bool,
    },
}

impl Reply {
    pub fn error(kind: &str, message: &str) -> Reply {
        Reply::Error {
            status: if kind.starts_with("Internal") {
                500
            } else {
                400
            },
            kind: kind.to_string(),
            message: Some(message.to_string()),
            capital_message: false,
        }
    }
}

/// One request as the fixture saw it.
#[derive(Debug, Clone)]
pub struct ApiCall {
    /// `service.Operation` from the target header.
    pub operation: String,
    pub target: Option<String>,
    pub content_type: Option<String>,
    pub body: Value,
    /// `None`: no Authorization header (an unsigned call).
    pub signed: Option<Result<Signed, String>>,
    /// What did not fit the model; empty when the request is as botocore would send it.
    pub problems: Vec<String>,
}

pub type Handler = Box<dyn FnMut(&str, &Value) -> Reply + Send>;

struct State {
    calls: Vec<ApiCall>,
    handler: Handler,
    delay: Duration,
}

pub struct AwsApi {
    pub addr: SocketAddr,
    pub pki: TestPki,
    service: String,
    state: Arc<Mutex<State>>,
    task: JoinHandle<()>,
}

impl Drop for AwsApi {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl AwsApi {
    /// Serves `service` with a certificate for `names` (and 127.0.0.1); signatures are
    /// checked with `secret_key` and `region`.
    pub async fn start(
        service: &str,
        names: &[&str],
        secret_key: &str,
        region: &str,
        handler: Handler,
    ) -> AwsApi {
        let mut all: Vec<&str> = names.to_vec();
        all.push("127.0.0.1");
        let pki = certs::issue(&all);
        let mut tls = (*pki.server_config).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State {
            calls: Vec::new(),
            handler,
            delay: Duration::ZERO,
        }));
        let ctx = Arc::new(Ctx {
            service: service.to_string(),
            secret_key: secret_key.to_string(),
            region: region.to_string(),
            state: state.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let ctx = ctx.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req| {
                        let ctx = ctx.clone();
                        async move { Ok::<_, Infallible>(ctx.answer(req).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        AwsApi {
            addr,
            pki,
            service: service.to_string(),
            state,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    /// Waits this long before answering each request.
    pub fn delay(&self, delay: Duration) {
        self.state.lock().unwrap().delay = delay;
    }

    pub fn set_handler(&self, handler: Handler) {
        self.state.lock().unwrap().handler = handler;
    }

    pub fn calls(&self) -> Vec<ApiCall> {
        self.state.lock().unwrap().calls.clone()
    }

    /// Every call was as the model describes it and signed for this service (or, with
    /// `unsigned`, carried no signature).
    pub fn assert_calls_fit_the_model(&self, key_id: Option<&str>) {
        let calls = self.calls();
        assert!(
            !calls.is_empty(),
            "no call reached the {} fixture",
            self.service
        );
        for call in &calls {
            assert!(call.problems.is_empty(), "{call:#?}");
            match (key_id, &call.signed) {
                (None, None) => {}
                (Some(key), Some(Ok(signed))) => {
                    assert_eq!(signed.access_key_id, key);
                    assert_eq!(signed.service, self.service);
                }
                (_, other) => panic!("signature: {other:?}"),
            }
        }
    }
}

struct Ctx {
    service: String,
    secret_key: String,
    region: String,
    state: Arc<Mutex<State>>,
}

impl Ctx {
    async fn answer(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (parts, body) = req.into_parts();
        let body = body
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let target = header("x-amz-target");
        let content_type = header("content-type");
        let mut problems = Vec::new();
        if parts.method != http::Method::POST || parts.uri.path() != "/" {
            problems.push(format!("{} {}, not POST /", parts.method, parts.uri));
        }
        let operation = target
            .as_deref()
            .and_then(|t| t.split_once('.').map(|(_, op)| op))
            .map(|op| format!("{}.{op}", self.service))
            .unwrap_or_default();
        let op = &model()[&operation];
        let json: Value = serde_json::from_slice(&body).unwrap_or_else(|_| {
            problems.push("the body is not JSON".into());
            Value::Null
        });
        if op.is_null() {
            problems.push(format!(
                "X-Amz-Target {target:?} names no modelled {} operation",
                self.service
            ));
        } else {
            if target.as_deref() != op["target"].as_str() {
                problems.push(format!("X-Amz-Target {target:?}, model {}", op["target"]));
            }
            if content_type.as_deref() != op["contentType"].as_str() {
                problems.push(format!(
                    "Content-Type {content_type:?}, model {}",
                    op["contentType"]
                ));
            }
            check_shape(&json, &op["input"], "input", &mut problems);
        }
        let signed = parts.headers.contains_key("authorization").then(|| {
            let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
            verify_sigv4("POST", path, &parts.headers, &body, &self.secret_key).and_then(|s| {
                if s.service == op["signingName"].as_str().unwrap_or(&self.service)
                    && s.region == self.region
                {
                    Ok(s)
                } else {
                    Err(format!("signed for {}/{}", s.region, s.service))
                }
            })
        });
        let delay = self.state.lock().unwrap().delay;
        tokio::time::sleep(delay).await;
        let bad_signature = matches!(&signed, Some(Err(_)));
        let reply = if !problems.is_empty() {
            Reply::error("SerializationException", &problems.join("; "))
        } else if bad_signature {
            Reply::Error {
                status: 400,
                kind: "InvalidSignatureException".into(),
                message: Some(
                    "The request signature we calculated does not match the signature you provided."
                        .into(),
                ),
                capital_message: false,
            }
        } else {
            let mut state = self.state.lock().unwrap();
            (state.handler)(&operation, &json)
        };
        self.state.lock().unwrap().calls.push(ApiCall {
            operation: operation.clone(),
            target,
            content_type,
            body: json,
            signed,
            problems,
        });
        match reply {
            Reply::Ok(output) => {
                let mut wrong = Vec::new();
                check_shape(&output, &op["output"], "output", &mut wrong);
                assert!(
                    wrong.is_empty(),
                    "the fixture's own answer is off-model: {wrong:?}"
                );
                respond(200, &output)
            }
            Reply::Error {
                status,
                kind,
                message,
                capital_message,
            } => {
                let short = kind.rsplit('#').next().unwrap_or(&kind);
                let modelled = op["errors"]
                    .as_array()
                    .is_some_and(|e| e.iter().any(|n| n == short));
                assert!(
                    modelled || COMMON_ERRORS.contains(&short) || short == "SerializationException",
                    "{short} is not an error of {operation}"
                );
                let mut body = json!({ "__type": kind });
                if let Some(m) = message {
                    body[if capital_message {
                        "Message"
                    } else {
                        "message"
                    }] = json!(m);
                }
                respond(status, &body)
            }
        }
    }
}

fn respond(status: u16, body: &Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/x-amz-json-1.1")
        .header("x-amzn-requestid", "6f7e1c2a-0000-4000-8000-000000000000")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

/// Checks `value` against a shape of operations.json: member names, types, required
/// members, length limits (strings count characters, lists and maps entries).
pub fn check_shape(value: &Value, shape: &Value, at: &str, problems: &mut Vec<String>) {
    let kind = shape["type"].as_str().unwrap_or("");
    let length = |n: usize, problems: &mut Vec<String>| {
        if let Some(min) = shape["min"].as_u64() {
            if (n as u64) < min {
                problems.push(format!("{at}: length {n} < min {min}"));
            }
        }
        if let Some(max) = shape["max"].as_u64() {
            if (n as u64) > max {
                problems.push(format!("{at}: length {n} > max {max}"));
            }
        }
    };
    match (kind, value) {
        ("structure", Value::Object(members)) => {
            for required in shape["required"].as_array().into_iter().flatten() {
                let name = required.as_str().unwrap_or("");
                if !members.contains_key(name) {
                    problems.push(format!("{at}: required member {name} is missing"));
                }
            }
            for (name, member) in members {
                match shape["members"].get(name) {
                    Some(member_shape) => {
                        check_shape(member, member_shape, &format!("{at}.{name}"), problems)
                    }
                    None => problems.push(format!("{at}: unknown member {name}")),
                }
            }
        }
        ("string", Value::String(s)) => length(s.chars().count(), problems),
        ("list", Value::Array(items)) => {
            length(items.len(), problems);
            for (i, item) in items.iter().enumerate() {
                check_shape(item, &shape["member"], &format!("{at}[{i}]"), problems);
            }
        }
        ("map", Value::Object(entries)) => {
            length(entries.len(), problems);
            for (key, item) in entries {
                check_shape(&json!(key), &shape["key"], &format!("{at} key"), problems);
                check_shape(item, &shape["value"], &format!("{at}[{key}]"), problems);
            }
        }
        ("boolean", Value::Bool(_)) => {}
        ("integer" | "long", Value::Number(n)) if n.is_i64() || n.is_u64() => {}
        ("timestamp", Value::Number(_)) => {}
        ("blob", Value::String(_)) => {}
        (_, Value::Null) => problems.push(format!("{at}: null is never sent for a {kind}")),
        _ => problems.push(format!("{at}: {value} is not a {kind}")),
    }
}
