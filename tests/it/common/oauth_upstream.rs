//! A gateway that authorizes each end user (CUSTOM_JWT with the user's own token), as
//! the MCP authorization spec describes it: 401 with `resource_metadata` naming its own
//! metadata URL, protected-resource metadata (RFC 9728) naming its own resource URL, a
//! 403 `insufficient_scope` step-up challenge for one tool. TLS for the gateway name.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::certs::{issue, TestPki};
use super::upstream::GATEWAY_HOST;

/// The token the fixture's users hold; `scope-poor-token` lacks the admin scope.
pub const USER_TOKEN: &str = "user-token-with-tools-scope";
pub const SCOPE_POOR_TOKEN: &str = "scope-poor-token";
pub const AUTHORIZATION_SERVER: &str = "https://login.example.com/oauth2";

#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    pub authorization: Option<String>,
}

pub struct OAuthGateway {
    pub addr: SocketAddr,
    pub pki: TestPki,
    seen: Arc<Mutex<Vec<Seen>>>,
    task: JoinHandle<()>,
}

impl Drop for OAuthGateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl OAuthGateway {
    pub async fn start() -> OAuthGateway {
        let pki = issue(&[GATEWAY_HOST]);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let origin = format!("https://{GATEWAY_HOST}:{}", addr.port());
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let recorder = seen.clone();
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                let origin = origin.clone();
                let recorder = recorder.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let service = service_fn(move |req| {
                        let origin = origin.clone();
                        let recorder = recorder.clone();
                        async move { Ok::<_, Infallible>(answer(req, &origin, &recorder).await) }
                    });
                    let _ = auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
        OAuthGateway {
            addr,
            pki,
            seen,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

async fn answer(
    req: Request<Incoming>,
    origin: &str,
    seen: &Mutex<Vec<Seen>>,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let authorization = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    seen.lock().unwrap().push(Seen {
        path: path.clone(),
        authorization: authorization.clone(),
    });
    let metadata_url = format!("{origin}/.well-known/oauth-protected-resource/mcp");
    match path.as_str() {
        "/.well-known/oauth-protected-resource/mcp" | "/.well-known/oauth-protected-resource" => {
            json_answer(
                StatusCode::OK,
                json!({
                    "resource": format!("{origin}/mcp"),
                    "authorization_servers": [AUTHORIZATION_SERVER],
                    "scopes_supported": ["tools", "admin"],
                    "bearer_methods_supported": ["header"],
                }),
            )
        }
        "/mcp" => {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            match authorization.as_deref() {
                Some(a) if a == format!("Bearer {USER_TOKEN}") => json_answer(
                    StatusCode::OK,
                    json!({"jsonrpc": "2.0", "id": message["id"], "result": {}}),
                ),
                Some(a) if a == format!("Bearer {SCOPE_POOR_TOKEN}") => challenge(
                    StatusCode::FORBIDDEN,
                    format!(
                        r#"Bearer error="insufficient_scope", scope="tools admin", resource_metadata="{metadata_url}""#
                    ),
                ),
                _ => challenge(
                    StatusCode::UNAUTHORIZED,
                    format!(r#"Bearer resource_metadata="{metadata_url}", scope="tools""#),
                ),
            }
        }
        _ => json_answer(StatusCode::NOT_FOUND, json!({"error": "not found"})),
    }
}

fn json_answer(status: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())))
        .unwrap()
}

fn challenge(status: StatusCode, value: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("www-authenticate", value)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(
            br#"{"error":"unauthorized"}"#,
        )))
        .unwrap()
}
