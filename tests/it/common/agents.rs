//! The agent side of the fault and hostile-input tests: a request whose answer is read
//! frame by frame (to see exactly how a stream ends), and well-behaved bystander agents
//! that keep calling through the proxy while a test misbehaves, recording every answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tokio::task::JoinHandle;

/// The headers an MCP client sends with a POST.
pub const MCP_POST_HEADERS: [(&str, &str); 2] = [
    ("content-type", "application/json"),
    ("accept", "application/json, text/event-stream"),
];

/// A JSON-RPC request with this id (the upstream fixtures answer any method): a
/// `tools/call`, which reaches the gateway once per request — never answered with
/// another request's answer (list requests in flight together may be), never sent twice.
pub fn rpc(id: u64) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"DemoTarget___echo","arguments":{{}}}}}}"#
    )
}

/// A `tools/list` with this id: a read, which the proxy may share with identical ones in
/// flight and sends once more when its connection fails before any answer.
pub fn list(id: u64) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/list","params":{{}}}}"#)
}

/// An answer whose head has arrived; the body is read as the test goes.
pub struct Open {
    pub status: StatusCode,
    pub headers: HeaderMap,
    body: Incoming,
    /// Everything read so far.
    pub received: Vec<u8>,
}

/// How a body ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The end of the message, as framed (Content-Length reached, last chunk).
    Complete,
    /// The connection failed before the message was complete; the error's text.
    Broken(String),
}

impl Open {
    /// POSTs `body` to `url` as an MCP client would; waits (at most 30 s) for the head.
    pub async fn post(url: &str, body: &str) -> Open {
        let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
        let mut request = Request::post(url);
        for (name, value) in MCP_POST_HEADERS {
            request = request.header(name, value);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .unwrap();
        let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
            .await
            .expect("the proxy answers within 30 s")
            .expect("the proxy is reachable");
        let (parts, body) = response.into_parts();
        Open {
            status: parts.status,
            headers: parts.headers,
            body,
            received: Vec::new(),
        }
    }

    /// Reads until `received` contains `needle` (at most 30 s); panics if the body ends
    /// first.
    pub async fn read_until(&mut self, needle: &str) {
        let found = |r: &[u8]| String::from_utf8_lossy(r).contains(needle);
        while !found(&self.received) {
            match self.next_frame().await {
                Some(Ok(())) => {}
                other => panic!(
                    "the body ended ({other:?}) before {needle:?}; received {:?}",
                    String::from_utf8_lossy(&self.received)
                ),
            }
        }
    }

    /// Reads to the end (at most 30 s) and says how the body ended.
    pub async fn finish(&mut self) -> Ending {
        loop {
            match self.next_frame().await {
                Some(Ok(())) => {}
                Some(Err(e)) => return Ending::Broken(e),
                None => return Ending::Complete,
            }
        }
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.received).into_owned()
    }

    async fn next_frame(&mut self) -> Option<Result<(), String>> {
        let frame = tokio::time::timeout(Duration::from_secs(30), self.body.frame())
            .await
            .expect("the body moves within 30 s")?;
        Some(match frame {
            Ok(frame) => {
                if let Some(data) = frame.data_ref() {
                    self.received.extend_from_slice(data);
                }
                Ok(())
            }
            Err(e) => Err(error_chain(&e)),
        })
    }
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

/// Agents that keep POSTing JSON-RPC requests through the proxy (each over its own
/// keep-alive connection, as a long-running agent does) while something else goes on.
pub struct Bystanders {
    stop: Arc<AtomicBool>,
    outcomes: Arc<Mutex<Outcomes>>,
    tasks: Vec<JoinHandle<()>>,
}

/// What the bystanders got.
#[derive(Debug, Default, Clone)]
pub struct Outcomes {
    pub ok: usize,
    /// Every answer that was not a 200 JSON-RPC result for the request's id.
    pub failures: Vec<String>,
}

impl Bystanders {
    /// `agents` agents, each calling `url` every `pause`.
    pub fn start(url: &str, agents: usize, pause: Duration) -> Bystanders {
        let stop = Arc::new(AtomicBool::new(false));
        let outcomes = Arc::new(Mutex::new(Outcomes::default()));
        let tasks = (0..agents)
            .map(|agent| {
                let (url, stop, outcomes) = (url.to_string(), stop.clone(), outcomes.clone());
                tokio::spawn(async move {
                    let client = Client::builder(TokioExecutor::new()).build_http::<Full<Bytes>>();
                    let mut id = agent as u64 * 1_000_000;
                    while !stop.load(Ordering::SeqCst) {
                        id += 1;
                        let outcome = call(&client, &url, id).await;
                        {
                            let mut o = outcomes.lock().unwrap();
                            match outcome {
                                Ok(()) => o.ok += 1,
                                Err(e) => o.failures.push(e),
                            }
                        }
                        tokio::time::sleep(pause).await;
                    }
                })
            })
            .collect();
        Bystanders {
            stop,
            outcomes,
            tasks,
        }
    }

    /// Successful calls so far.
    pub fn ok(&self) -> usize {
        self.outcomes.lock().unwrap().ok
    }

    /// Waits until `more` further calls have succeeded (at most 60 s).
    pub async fn wait_for_more(&self, more: usize) {
        let target = self.ok() + more;
        for _ in 0..1200 {
            if self.ok() >= target {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!(
            "the bystanders made no progress: {:?}",
            self.outcomes.lock().unwrap()
        );
    }

    /// Stops them and returns what they got.
    pub async fn stop(self) -> Outcomes {
        self.stop.store(true, Ordering::SeqCst);
        for task in self.tasks {
            let _ = task.await;
        }
        let outcomes = self.outcomes.lock().unwrap().clone();
        outcomes
    }

    /// Stops them and asserts that every call succeeded and at least `min` did.
    pub async fn assert_all_succeeded(self, min: usize) {
        let outcomes = self.stop().await;
        assert!(
            outcomes.failures.is_empty(),
            "well-behaved agents failed: {:?}",
            outcomes.failures
        );
        assert!(
            outcomes.ok >= min,
            "only {} bystander calls succeeded",
            outcomes.ok
        );
    }
}

async fn call(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
    id: u64,
) -> Result<(), String> {
    let mut request = Request::post(url);
    for (name, value) in MCP_POST_HEADERS {
        request = request.header(name, value);
    }
    let request = request.body(Full::new(Bytes::from(rpc(id)))).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(30), client.request(request))
        .await
        .map_err(|_| format!("call {id}: no answer within 30 s"))?
        .map_err(|e| format!("call {id}: {}", error_chain(&e)))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("call {id}: body: {e}"))?
        .to_bytes();
    let value: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|_| format!("call {id}: {status} {}", String::from_utf8_lossy(&body)))?;
    if status == StatusCode::OK && value["id"] == id && value.get("result").is_some() {
        Ok(())
    } else {
        Err(format!("call {id}: {status} {value}"))
    }
}
