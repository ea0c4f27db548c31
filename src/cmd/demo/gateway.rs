//! The demo's stand-in for an AgentCore Gateway: TLS with a certificate made for a
//! gateway-like name by a throw-away CA, a bearer token it insists on, and a tiny MCP
//! server (JSON answers) offering one tool, `DemoTarget___get_weather`. It speaks the
//! session-based protocols (`initialize`, up to 2025-11-25) here and the stateless
//! MCP 2026-07-28 in `modern`, choosing per request as a dual-era server does.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::modern;

pub const GATEWAY_HOST: &str =
    "demo-gateway-a1b2c3d4e5.gateway.bedrock-agentcore.us-east-1.amazonaws.com";
pub const ENDPOINT_HOST: &str =
    "vpce-0123456789abcdef0-demo1234.gateway.bedrock-agentcore.us-east-1.vpce.amazonaws.com";
pub const TOOL_NAME: &str = "DemoTarget___get_weather";
/// The session-based protocol versions `initialize` accepts.
pub(super) const PROTOCOL_VERSIONS: [&str; 4] =
    ["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// What the gateway saw on its last request, so the demo can show the rewrite.
#[derive(Debug, Clone, Default)]
pub struct Seen {
    pub sni: Option<String>,
    pub host: Option<String>,
    pub authorized: bool,
}

pub struct DemoGateway {
    pub addr: SocketAddr,
    pub ca_pem: String,
    pub last_seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for DemoGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl DemoGateway {
    /// Starts on 127.0.0.1 (a free port), expecting `Authorization: Bearer <token>`.
    pub async fn start(token: &str) -> Result<DemoGateway, String> {
        let (ca_pem, tls) = certificates().map_err(|e| format!("demo certificates: {e}"))?;
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| format!("demo gateway: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let last_seen = Arc::new(Mutex::new(Seen::default()));
        let expected = Arc::new(format!("Bearer {token}"));
        let seen = last_seen.clone();
        let acceptor = TlsAcceptor::from(tls);
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let seen = seen.clone();
                let expected = expected.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let sni = tls.get_ref().1.server_name().map(str::to_string);
                    let service = service_fn(move |req| {
                        let seen = seen.clone();
                        let expected = expected.clone();
                        let sni = sni.clone();
                        async move { Ok::<_, Infallible>(answer(req, &expected, sni, &seen).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        Ok(DemoGateway {
            addr,
            ca_pem,
            last_seen,
            task,
        })
    }
}

/// A CA and a leaf certificate for GATEWAY_HOST signed by it.
fn certificates() -> Result<(String, Arc<rustls::ServerConfig>), Box<dyn std::error::Error>> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "mcp-vpce-proxy demo CA");
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;
    let leaf_key = KeyPair::generate()?;
    let leaf = CertificateParams::new(vec![GATEWAY_HOST.to_string()])?.signed_by(&leaf_key, &ca)?;
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(leaf_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok((ca.pem(), Arc::new(config)))
}

async fn answer(
    req: Request<Incoming>,
    expected: &str,
    sni: Option<String>,
    seen: &Mutex<Seen>,
) -> Response<Full<Bytes>> {
    let host = req
        .headers()
        .get(http::header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string)
        .or_else(|| req.uri().authority().map(|a| a.to_string()));
    let authorized = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .is_some_and(|v| v.as_bytes() == expected.as_bytes());
    *seen.lock().unwrap_or_else(|p| p.into_inner()) = Seen {
        sni,
        host,
        authorized,
    };

    if req.uri().path() != "/mcp" {
        return plain(StatusCode::NOT_FOUND, "not found");
    }
    if !authorized {
        let mut r = plain(StatusCode::UNAUTHORIZED, "missing or invalid bearer token");
        r.headers_mut()
            .insert("www-authenticate", http::HeaderValue::from_static("Bearer"));
        return r;
    }
    match *req.method() {
        Method::POST => {}
        Method::DELETE => return plain(StatusCode::OK, ""),
        // Like the real gateway, no server-initiated stream: clients accept a 405.
        _ => {
            let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "");
            r.headers_mut()
                .insert("allow", http::HeaderValue::from_static("POST, DELETE"));
            return r;
        }
    }
    let headers = req.headers().clone();
    let Ok(body) = Limited::new(req.into_body(), 1 << 20).collect().await else {
        return plain(StatusCode::BAD_REQUEST, "body too large");
    };
    let Ok(message) = serde_json::from_slice::<Value>(&body.to_bytes()) else {
        return rpc(
            json!({"jsonrpc":"2.0","id":null,"error":{"code":-32700,"message":"Parse error"}}),
            None,
        );
    };
    if modern::is_modern(&message, headers.get("mcp-protocol-version")) {
        return modern::answer(&message, &headers);
    }
    let Some(id) = message.get("id").cloned() else {
        // Notifications are accepted without an answer.
        return plain(StatusCode::ACCEPTED, "");
    };
    let method = message.get("method").and_then(Value::as_str).unwrap_or("");
    let params = message.get("params").cloned().unwrap_or(Value::Null);
    match method {
        "initialize" => {
            let asked = params
                .get("protocolVersion")
                .and_then(Value::as_str)
                .unwrap_or("");
            let version = PROTOCOL_VERSIONS
                .iter()
                .find(|v| **v == asked)
                .unwrap_or(&PROTOCOL_VERSIONS[1]);
            let session = crate::auth::secret::fingerprint(
                format!("{:?}", std::time::SystemTime::now()).as_bytes(),
            );
            let result = json!({
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "demo-agentcore-gateway", "version": env!("CARGO_PKG_VERSION")},
            });
            rpc(
                json!({"jsonrpc":"2.0","id":id,"result":result}),
                Some(session.trim_start_matches("sha256:")),
            )
        }
        "ping" => rpc(json!({"jsonrpc":"2.0","id":id,"result":{}}), None),
        "tools/list" => rpc(
            json!({"jsonrpc":"2.0","id":id,"result":{"tools":tools()}}),
            None,
        ),
        "tools/call" => match call(&params) {
            Ok(result) => rpc(json!({"jsonrpc":"2.0","id":id,"result":result}), None),
            Err(error) => rpc(json!({"jsonrpc":"2.0","id":id,"error":error}), None),
        },
        _ => rpc(
            json!({"jsonrpc":"2.0","id":id,"error":{"code":-32601,"message":"Method not found"}}),
            None,
        ),
    }
}

/// The tools the gateway lists, in every protocol version.
pub(super) fn tools() -> Value {
    json!([{
        "name": TOOL_NAME,
        "description": "Current weather for a city (demo data).",
        "inputSchema": {"type":"object","properties":{"city":{"type":"string"}},"required":["city"]},
    }])
}

/// A `tools/call`'s result, or its JSON-RPC error object.
pub(super) fn call(params: &Value) -> Result<Value, Value> {
    if params.get("name").and_then(Value::as_str) != Some(TOOL_NAME) {
        return Err(json!({"code":-32602,"message":"Unknown tool"}));
    }
    let city = params
        .pointer("/arguments/city")
        .and_then(Value::as_str)
        .unwrap_or("Seattle");
    Ok(json!({
        "content":[{"type":"text","text":format!("Weather in {city}: 22°C, sunny")}],
        "isError": false,
    }))
}

pub(super) fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r
}

pub(super) fn rpc(body: Value, session: Option<&str>) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    if let Some(id) = session.and_then(|s| http::HeaderValue::from_str(s).ok()) {
        r.headers_mut().insert("mcp-session-id", id);
    }
    r
}
