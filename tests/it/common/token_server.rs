//! A loopback OAuth 2.0 token endpoint (client credentials) for the credential tests.
//!
//! Plain HTTP on `127.0.0.1:0` (the proxy accepts http token URLs on loopback only), or
//! HTTPS with a certificate for a chosen name. Every request is recorded with its
//! headers and form body; tests script the answers (tokens with a given lifetime, JWTs,
//! OAuth errors) and a delay. Tokens are numbered: `oauth-access-token-0001`, ...
//!
//! `ConnectProxy` is an HTTP proxy that only does `CONNECT`, sending every tunnel to one
//! loopback address, to check that token requests honour `HTTPS_PROXY`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::certs::{self, TestPki};

pub const TOKEN_PATH: &str = "/oauth2/token";

/// What the server answers to the next token requests.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `{"access_token": <next token>, "token_type": "Bearer", "expires_in": ...}`.
    Token { expires_in: Option<u64> },
    /// A JWT whose `exp` is this many seconds ahead, without `expires_in`.
    Jwt { lifetime_secs: u64 },
    /// An OAuth error object with this status.
    Error {
        status: u16,
        error: &'static str,
        description: Option<&'static str>,
    },
}

/// One request as the token server saw it.
#[derive(Debug, Clone)]
pub struct SeenTokenRequest {
    pub method: Method,
    pub path: String,
    pub headers: HeaderMap,
    /// The form body, as sent.
    pub body: String,
}

#[derive(Debug)]
struct Script {
    answer: Answer,
    delay: Duration,
}

#[derive(Default)]
struct Shared {
    seen: Mutex<Vec<SeenTokenRequest>>,
    issued: Mutex<Vec<String>>,
    script: Mutex<Option<Script>>,
}

pub struct TokenServer {
    pub addr: SocketAddr,
    /// The certificate authority of the HTTPS variant.
    pub pki: Option<TestPki>,
    host: String,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl TokenServer {
    /// Plain HTTP on loopback, issuing tokens that live `expires_in` seconds.
    pub async fn start(expires_in: Option<u64>) -> TokenServer {
        Self::start_inner(Answer::Token { expires_in }, None).await
    }

    /// HTTPS with a certificate for `name` (signed by `pki`'s CA).
    pub async fn start_tls(name: &str, expires_in: Option<u64>) -> TokenServer {
        Self::start_inner(Answer::Token { expires_in }, Some(name)).await
    }

    async fn start_inner(answer: Answer, tls_name: Option<&str>) -> TokenServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let shared = Arc::new(Shared::default());
        *shared.script.lock().unwrap() = Some(Script {
            answer,
            delay: Duration::ZERO,
        });
        let pki = tls_name.map(|name| certs::issue(&[name]));
        let acceptor = pki
            .as_ref()
            .map(|p| tokio_rustls::TlsAcceptor::from(p.server_config.clone()));
        let task = tokio::spawn(accept_loop(listener, acceptor, shared.clone()));
        TokenServer {
            addr,
            host: tls_name.map_or_else(|| addr.ip().to_string(), str::to_string),
            pki,
            shared,
            task,
        }
    }

    /// The token endpoint's URL.
    pub fn url(&self) -> String {
        let scheme = if self.pki.is_some() { "https" } else { "http" };
        format!("{scheme}://{}:{}{TOKEN_PATH}", self.host, self.addr.port())
    }

    pub fn ca_file(&self) -> Option<&Path> {
        self.pki.as_ref().map(|p| p.ca_file.as_path())
    }

    pub fn answer_with(&self, answer: Answer) {
        self.shared.script.lock().unwrap().as_mut().unwrap().answer = answer;
    }

    /// Waits this long before answering each request.
    pub fn delay(&self, delay: Duration) {
        self.shared.script.lock().unwrap().as_mut().unwrap().delay = delay;
    }

    pub fn requests(&self) -> Vec<SeenTokenRequest> {
        self.shared.seen.lock().unwrap().clone()
    }

    /// The tokens issued so far, in order.
    pub fn issued(&self) -> Vec<String> {
        self.shared.issued.lock().unwrap().clone()
    }
}

/// The name of the n-th token (1-based).
pub fn token_name(n: usize) -> String {
    format!("oauth-access-token-{n:04}")
}

/// `Bearer ` and the n-th token: what the gateway must receive.
pub fn bearer(n: usize) -> String {
    format!("Bearer {}", token_name(n))
}

/// An unsigned JWT (the proxy reads `exp` only) with `exp` = now + `lifetime_secs`.
pub fn jwt(subject: &str, lifetime_secs: u64) -> String {
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + lifetime_secs;
    let enc = |s: String| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2lnbmF0dXJl",
        enc(r#"{"alg":"RS256","typ":"JWT"}"#.to_string()),
        enc(format!(r#"{{"sub":"{subject}","exp":{exp}}}"#))
    )
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: Option<tokio_rustls::TlsAcceptor>,
    shared: Arc<Shared>,
) {
    while let Ok((tcp, _)) = listener.accept().await {
        let shared = shared.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| answer(req, shared.clone()));
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            match acceptor {
                Some(acceptor) => {
                    if let Ok(tls) = acceptor.accept(tcp).await {
                        let _ = builder.serve_connection(TokioIo::new(tls), service).await;
                    }
                }
                None => {
                    let _ = builder.serve_connection(TokioIo::new(tcp), service).await;
                }
            }
        });
    }
}

async fn answer(
    req: Request<Incoming>,
    shared: Arc<Shared>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let (parts, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    shared.seen.lock().unwrap().push(SeenTokenRequest {
        method: parts.method.clone(),
        path: parts.uri.path().to_string(),
        headers: parts.headers.clone(),
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    let (answer, delay) = {
        let script = shared.script.lock().unwrap();
        let script = script.as_ref().unwrap();
        (script.answer.clone(), script.delay)
    };
    tokio::time::sleep(delay).await;
    let json = |status: u16, value: serde_json::Value| {
        Ok(Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(value.to_string())))
            .unwrap())
    };
    if parts.method != Method::POST || parts.uri.path() != TOKEN_PATH {
        return json(404, serde_json::json!({"error": "not_found"}));
    }
    let mut issued = shared.issued.lock().unwrap();
    match answer {
        Answer::Token { expires_in } => {
            let token = token_name(issued.len() + 1);
            issued.push(token.clone());
            let mut v = serde_json::json!({"access_token": token, "token_type": "Bearer"});
            if let Some(secs) = expires_in {
                v["expires_in"] = secs.into();
            }
            json(200, v)
        }
        Answer::Jwt { lifetime_secs } => {
            let token = jwt(&token_name(issued.len() + 1), lifetime_secs);
            issued.push(token.clone());
            json(
                200,
                serde_json::json!({"access_token": token, "token_type": "Bearer"}),
            )
        }
        Answer::Error {
            status,
            error,
            description,
        } => {
            let mut v = serde_json::json!({ "error": error });
            if let Some(d) = description {
                v["error_description"] = d.into();
            }
            json(status, v)
        }
    }
}

/// An HTTP proxy that only tunnels: every `CONNECT host:port` goes to `target`, and the
/// requested authorities are recorded.
pub struct ConnectProxy {
    pub addr: SocketAddr,
    pub connects: Arc<Mutex<Vec<String>>>,
    task: JoinHandle<()>,
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ConnectProxy {
    pub async fn start(target: SocketAddr) -> ConnectProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().unwrap();
        let connects = Arc::new(Mutex::new(Vec::new()));
        let seen = connects.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") && head.len() < 8192 {
                        if client.read_exact(&mut byte).await.is_err() {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let text = String::from_utf8_lossy(&head).into_owned();
                    let mut words = text.split_whitespace();
                    if words.next() != Some("CONNECT") {
                        let _ = client
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n",
                            )
                            .await;
                        return;
                    }
                    seen.lock()
                        .unwrap()
                        .push(words.next().unwrap_or("").to_string());
                    let Ok(mut upstream) = TcpStream::connect(target).await else {
                        let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\n\r\n").await;
                        return;
                    };
                    if client
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_ok()
                    {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
                    }
                });
            }
        });
        ConnectProxy {
            addr,
            connects,
            task,
        }
    }
}
