//! A TLS gateway whose every answer the test writes: a function of the request it saw.
//! For behaviour no MCP server library would produce on its own: ids written back in
//! another spelling, compressed bodies, answers listing tools to requests that did not
//! ask, events split anywhere. HTTP/1.1 and h2 (ALPN) like the real gateway.
//!
//! Started with [`ScriptedUpstream::start_held`], it records each request as it arrives
//! and answers only when the test releases it, so that requests can be known to be in
//! flight together.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::certs::{self, TestPki};
use super::upstream::GATEWAY_HOST;

/// A request as the gateway saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: http::Method,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Seen {
    /// The body as JSON (Null when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// What the gateway answers.
pub struct Scripted {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Sent as separate DATA frames / chunks, in order.
    pub chunks: Vec<Vec<u8>>,
}

impl Scripted {
    pub fn json(body: impl Into<String>) -> Scripted {
        Scripted {
            status: 200,
            headers: vec![("content-type".into(), "application/json".into())],
            chunks: vec![body.into().into_bytes()],
        }
    }

    /// An SSE answer of these events (each a `data:` payload), one chunk per event.
    pub fn sse<S: AsRef<str>>(events: &[S]) -> Scripted {
        Scripted {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            chunks: events
                .iter()
                .map(|e| format!("data: {}\n\n", e.as_ref()).into_bytes())
                .collect(),
        }
    }

    pub fn header(mut self, name: &str, value: &str) -> Scripted {
        self.headers.push((name.into(), value.into()));
        self
    }
}

type Script = dyn Fn(&Seen) -> Scripted + Send + Sync;

pub struct ScriptedUpstream {
    pub addr: SocketAddr,
    pub pki: TestPki,
    seen: Arc<Mutex<Vec<Seen>>>,
    gate: Option<Arc<Semaphore>>,
    task: JoinHandle<()>,
}

impl ScriptedUpstream {
    pub async fn start(script: impl Fn(&Seen) -> Scripted + Send + Sync + 'static) -> Self {
        Self::start_gated(script, None).await
    }

    /// Like [`start`](Self::start), but every answer waits for a [`release`](Self::release).
    pub async fn start_held(script: impl Fn(&Seen) -> Scripted + Send + Sync + 'static) -> Self {
        Self::start_gated(script, Some(Arc::new(Semaphore::new(0)))).await
    }

    /// Lets `n` more answers go.
    pub fn release(&self, n: usize) {
        if let Some(gate) = &self.gate {
            gate.add_permits(n);
        }
    }

    async fn start_gated(
        script: impl Fn(&Seen) -> Scripted + Send + Sync + 'static,
        gate: Option<Arc<Semaphore>>,
    ) -> Self {
        let pki = certs::issue(&[GATEWAY_HOST]);
        let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let task = {
            let seen = seen.clone();
            let gate = gate.clone();
            tokio::spawn(async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        return;
                    };
                    let (acceptor, seen, script, gate) =
                        (acceptor.clone(), seen.clone(), script.clone(), gate.clone());
                    tokio::spawn(async move {
                        let Ok(tls) = acceptor.accept(tcp).await else {
                            return;
                        };
                        let service = hyper::service::service_fn(move |req| {
                            answer(req, seen.clone(), script.clone(), gate.clone())
                        });
                        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                            .serve_connection(TokioIo::new(tls), service)
                            .await;
                    });
                }
            })
        };
        ScriptedUpstream {
            addr,
            pki,
            seen,
            gate,
            task,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Chunks = futures_util::stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>;

async fn answer(
    req: Request<Incoming>,
    seen: Arc<Mutex<Vec<Seen>>>,
    script: Arc<Script>,
    gate: Option<Arc<Semaphore>>,
) -> Result<Response<StreamBody<Chunks>>, Infallible> {
    let (head, body) = req.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let request = Seen {
        method: head.method,
        headers: head.headers,
        body,
    };
    let scripted = script(&request);
    seen.lock().unwrap().push(request);
    if let Some(gate) = gate {
        if let Ok(permit) = gate.acquire().await {
            permit.forget();
        }
    }
    let frames: Vec<_> = scripted
        .chunks
        .into_iter()
        .map(|c| Ok(Frame::data(Bytes::from(c))))
        .collect();
    let mut response = Response::builder().status(scripted.status);
    for (name, value) in &scripted.headers {
        response = response.header(name.as_str(), value.as_str());
    }
    Ok(response
        .body(StreamBody::new(futures_util::stream::iter(frames)))
        .unwrap())
}
