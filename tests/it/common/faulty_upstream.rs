//! A TLS upstream that misbehaves on purpose, for the fault tests.
//!
//! It speaks HTTP/1.1 by hand (ALPN offers only `http/1.1`) so that it can do what a
//! server library never would: reset the connection before answering or in the middle
//! of a body, accept TCP and never answer TLS, read a request and never answer, stall a
//! stream, close idle keep-alive connections. Each request takes the next scripted
//! [`Fault`], and [`Fault::Answer`] once the script is used up.
//!
//! One fixture may listen on several loopback addresses with the same port (one
//! gateway endpoint, several availability zones): every connection is recorded with the
//! address it arrived on, and every answer names that address (`result.servedBy`), so a
//! test tells the zones apart from either side.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::task::{JoinHandle, JoinSet};
use tokio_rustls::server::TlsStream;

use super::certs::{self, TestPki};
use super::upstream::{private_dns_off_route, GATEWAY_HOST};

/// What the upstream does with one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// A JSON-RPC result at once (`application/json`, keep-alive).
    Answer,
    /// The same answer, but only once the test calls [`FaultyUpstream::release`].
    AnswerWhenReleased,
    /// An SSE answer: a progress event at once, the result event once released, then
    /// the end of the stream.
    SseWhenReleased,
    /// Read the request, then reset the connection (TCP RST) without a byte of answer.
    ResetBeforeAnswer,
    /// Read the request, then close the connection cleanly (TLS close_notify, FIN)
    /// without answering: what a proxy sees when its request crosses the gateway's
    /// closing of an idle keep-alive connection.
    CloseBeforeAnswer,
    /// Send the head (`Content-Length` of the whole answer) and half of the JSON body,
    /// wait for a release, then reset.
    ResetMidJson,
    /// Send the SSE head and the progress event, wait for a release, then reset.
    ResetMidSse,
    /// Read the request and never answer (the connection stays open).
    NoHeaders,
    /// Send the SSE head and the progress event, then stay silent for good.
    StallMidStream,
}

/// What happens right after a TCP connection is accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// TLS, then HTTP/1.1.
    Tls,
    /// Keep the TCP connection open and never answer the TLS ClientHello.
    Never,
}

/// One request as the upstream read it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Which connection carried it (0 for the first accepted, in accept order).
    pub connection: usize,
    /// Header names (lower case) and values, in order.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct Script {
    faults: VecDeque<Fault>,
    handshake: Option<Handshake>,
    /// Per-address overrides of `handshake`.
    handshake_at: Vec<(IpAddr, Handshake)>,
    idle_close: Option<Duration>,
}

#[derive(Default)]
struct Shared {
    script: Mutex<Script>,
    /// Local address of each accepted connection, in accept order.
    accepted: Mutex<Vec<SocketAddr>>,
    requests: Mutex<Vec<SeenRequest>>,
    /// Connections the proxy closed (EOF or error while the upstream waited for a request).
    closed_by_peer: AtomicUsize,
    /// Connections the upstream closed because they sat idle too long.
    idle_closes: AtomicUsize,
}

/// A running misbehaving upstream; stops (and drops every connection) when dropped.
pub struct FaultyUpstream {
    /// The port, the same on every address.
    pub port: u16,
    pki: Arc<TestPki>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl FaultyUpstream {
    /// Listens on 127.0.0.1 with a certificate for [`GATEWAY_HOST`].
    pub async fn start() -> FaultyUpstream {
        Self::start_on(&["127.0.0.1".parse().unwrap()]).await
    }

    /// Listens on every one of `ips` (loopback only) with one port.
    pub async fn start_on(ips: &[IpAddr]) -> FaultyUpstream {
        let pki = Arc::new(certs::issue(&[GATEWAY_HOST]));
        Self::start_with_pki(ips, pki).await
    }

    /// Like [`start_on`](Self::start_on), presenting the leaf of an existing test PKI
    /// (so that two fixtures share one CA file).
    pub async fn start_with_pki(ips: &[IpAddr], pki: Arc<TestPki>) -> FaultyUpstream {
        assert!(!ips.is_empty());
        for ip in ips {
            assert!(
                ip.is_loopback(),
                "the faulty upstream listens on loopback only"
            );
        }
        let mut tls = (*pki.server_config).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listeners = bind_same_port(ips).await;
        let port = listeners[0].local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(Semaphore::new(0));
        let tasks = listeners
            .into_iter()
            .map(|listener| {
                tokio::spawn(accept_loop(
                    listener,
                    acceptor.clone(),
                    shared.clone(),
                    gate.clone(),
                ))
            })
            .collect();
        FaultyUpstream {
            port,
            pki,
            shared,
            gate,
            tasks,
        }
    }

    /// The CA file the proxy must trust (`ca_file` of the route).
    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    /// A `[[route]]` table for this upstream at `/mcp`: the gateway name with this port,
    /// dialing [`ENDPOINT_HOST`] (private DNS off), trusting the fixture's CA; `extra`
    /// lines are added to the table.
    pub fn route(&self, extra: &str) -> String {
        private_dns_off_route(self.port, self.ca_file(), extra)
    }

    /// Appends faults to the script: the next requests take them in order.
    pub fn script(&self, faults: &[Fault]) {
        self.lock().faults.extend(faults.iter().copied());
    }

    /// What new connections get before HTTP (default: TLS).
    pub fn set_handshake(&self, handshake: Handshake) {
        self.lock().handshake = Some(handshake);
    }

    /// What new connections to `ip` get before HTTP (one zone misbehaving).
    pub fn set_handshake_at(&self, ip: &str, handshake: Handshake) {
        let ip: IpAddr = ip.parse().unwrap();
        let mut script = self.lock();
        script.handshake_at.retain(|(i, _)| *i != ip);
        script.handshake_at.push((ip, handshake));
    }

    /// Close a keep-alive connection that has been idle this long after an answer, as a
    /// gateway's load balancer does (None: keep it open).
    pub fn close_idle_after(&self, idle: Option<Duration>) {
        self.lock().idle_close = idle;
    }

    /// Lets `n` waiting (or future) released faults go on.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// TCP connections accepted so far, on every address.
    pub fn connections(&self) -> usize {
        self.shared.accepted.lock().unwrap().len()
    }

    /// TCP connections accepted on `ip`.
    pub fn connections_to(&self, ip: &str) -> usize {
        let ip: IpAddr = ip.parse().unwrap();
        let accepted = self.shared.accepted.lock().unwrap();
        accepted.iter().filter(|a| a.ip() == ip).count()
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Connections the proxy closed while the upstream waited for their next request.
    pub fn closed_by_peer(&self) -> usize {
        self.shared.closed_by_peer.load(Ordering::SeqCst)
    }

    /// Connections the upstream closed for being idle.
    pub fn idle_closes(&self) -> usize {
        self.shared.idle_closes.load(Ordering::SeqCst)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Script> {
        self.shared.script.lock().unwrap()
    }
}

/// Binds `ips[0]:0`, then the same port on the others; retries with a new port when
/// another address has it taken.
async fn bind_same_port(ips: &[IpAddr]) -> Vec<TcpListener> {
    for _ in 0..50 {
        let first = TcpListener::bind((ips[0], 0)).await.expect("bind");
        let port = first.local_addr().unwrap().port();
        let mut listeners = vec![first];
        for ip in &ips[1..] {
            match TcpListener::bind((*ip, port)).await {
                Ok(l) => listeners.push(l),
                Err(_) => break,
            }
        }
        if listeners.len() == ips.len() {
            return listeners;
        }
    }
    panic!("no port free on every one of {ips:?}");
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    let mut connections = JoinSet::new();
    loop {
        let (tcp, local) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let local = tcp.local_addr().unwrap();
                    (tcp, local)
                }
                Err(_) => continue,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let id = {
            let mut accepted = shared.accepted.lock().unwrap();
            accepted.push(local);
            accepted.len() - 1
        };
        let handshake = {
            let script = shared.script.lock().unwrap();
            script
                .handshake_at
                .iter()
                .find(|(ip, _)| *ip == local.ip())
                .map(|(_, h)| *h)
                .or(script.handshake)
                .unwrap_or(Handshake::Tls)
        };
        let acceptor = acceptor.clone();
        let shared = shared.clone();
        let gate = gate.clone();
        connections.spawn(async move {
            if handshake == Handshake::Never {
                // Hold the connection open, silent, until the fixture is dropped.
                let _held = tcp;
                return std::future::pending::<()>().await;
            }
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            serve(tls, id, local, shared, gate).await;
        });
    }
}

async fn serve(
    mut tls: TlsStream<TcpStream>,
    connection: usize,
    local: SocketAddr,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    let mut buffer = Vec::new();
    loop {
        let idle = shared.script.lock().unwrap().idle_close;
        let read = read_request(&mut tls, &mut buffer);
        let request = match idle {
            Some(idle) => match tokio::time::timeout(idle, read).await {
                Ok(r) => r,
                Err(_) => {
                    // A clean close, as a load balancer does: TLS close_notify, then FIN.
                    shared.idle_closes.fetch_add(1, Ordering::SeqCst);
                    let _ = tls.shutdown().await;
                    return;
                }
            },
            None => read.await,
        };
        let Some((_method, _target, headers, body)) = request else {
            shared.closed_by_peer.fetch_add(1, Ordering::SeqCst);
            return;
        };
        let fault = shared
            .script
            .lock()
            .unwrap()
            .faults
            .pop_front()
            .unwrap_or(Fault::Answer);
        let answer = answer_for(&body, local);
        shared.requests.lock().unwrap().push(SeenRequest {
            connection,
            headers,
            body,
        });
        let kept_open = match fault {
            Fault::Answer => send_json(&mut tls, &answer).await,
            Fault::AnswerWhenReleased => {
                wait(&gate).await;
                send_json(&mut tls, &answer).await
            }
            Fault::SseWhenReleased => {
                let ok =
                    send_sse_head(&mut tls).await && send_chunk(&mut tls, &progress_event()).await;
                wait(&gate).await;
                ok && send_chunk(&mut tls, &sse_event(&answer)).await
                    && send_chunk(&mut tls, b"").await
            }
            Fault::ResetBeforeAnswer => {
                reset(tls);
                return;
            }
            Fault::CloseBeforeAnswer => {
                let _ = tls.shutdown().await;
                return;
            }
            Fault::ResetMidJson => {
                let head = json_head(answer.len());
                let _ = tls.write_all(head.as_bytes()).await;
                let _ = tls.write_all(&answer[..answer.len() / 2]).await;
                let _ = tls.flush().await;
                wait(&gate).await;
                reset(tls);
                return;
            }
            Fault::ResetMidSse => {
                let _ =
                    send_sse_head(&mut tls).await && send_chunk(&mut tls, &progress_event()).await;
                wait(&gate).await;
                reset(tls);
                return;
            }
            Fault::NoHeaders => {
                let _held = tls;
                std::future::pending::<()>().await;
                return;
            }
            Fault::StallMidStream => {
                let _ =
                    send_sse_head(&mut tls).await && send_chunk(&mut tls, &progress_event()).await;
                let _held = tls;
                std::future::pending::<()>().await;
                return;
            }
        };
        if !kept_open {
            return;
        }
    }
}

async fn wait(gate: &Semaphore) {
    gate.acquire()
        .await
        .expect("the gate is never closed")
        .forget();
}

/// Aborts the connection: TCP RST instead of FIN (SO_LINGER 0, then close).
fn reset(tls: TlsStream<TcpStream>) {
    let (tcp, _) = tls.get_ref();
    tcp.set_zero_linger().expect("SO_LINGER 0");
    drop(tls);
}

type Head = (String, String, Vec<(String, String)>, Vec<u8>);

/// Reads one request (head and `Content-Length` body); None when the peer closed or
/// the bytes are not HTTP/1.1. Bytes after the request stay in `buffer`.
async fn read_request<R: AsyncRead + Unpin>(io: &mut R, buffer: &mut Vec<u8>) -> Option<Head> {
    let end = loop {
        if let Some(at) = find(buffer, b"\r\n\r\n") {
            break at + 4;
        }
        if buffer.len() > 1 << 20 || !fill(io, buffer).await {
            return None;
        }
    };
    let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut words = lines.next()?.split(' ');
    let method = words.next()?.to_string();
    let target = words.next()?.to_string();
    let headers: Vec<(String, String)> = lines
        .filter(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0);
    while buffer.len() < end + length {
        if !fill(io, buffer).await {
            return None;
        }
    }
    let body = buffer[end..end + length].to_vec();
    buffer.drain(..end + length);
    Some((method, target, headers, body))
}

async fn fill<R: AsyncRead + Unpin>(io: &mut R, buffer: &mut Vec<u8>) -> bool {
    let mut chunk = [0u8; 16 * 1024];
    match io.read(&mut chunk).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buffer.extend_from_slice(&chunk[..n]);
            true
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The JSON-RPC result for the request's id, naming the address that served it.
fn answer_for(body: &[u8], local: SocketAddr) -> Vec<u8> {
    let id = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("id").cloned())
        .unwrap_or(Value::Null);
    answer(&id, &local.ip().to_string()).into_bytes()
}

/// The fixture's answer to request `id` served on `served_by`, byte for byte.
pub fn answer(id: &Value, served_by: &str) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": { "servedBy": served_by }
    })
    .to_string()
}

fn json_head(length: usize) -> String {
    format!("HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {length}\r\n\r\n")
}

async fn send_json(tls: &mut TlsStream<TcpStream>, body: &[u8]) -> bool {
    let mut out = json_head(body.len()).into_bytes();
    out.extend_from_slice(body);
    tls.write_all(&out).await.is_ok() && tls.flush().await.is_ok()
}

async fn send_sse_head(tls: &mut TlsStream<TcpStream>) -> bool {
    let head = "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n";
    tls.write_all(head.as_bytes()).await.is_ok() && tls.flush().await.is_ok()
}

/// One chunk of a chunked body; an empty one ends the body.
async fn send_chunk(tls: &mut TlsStream<TcpStream>, data: &[u8]) -> bool {
    let mut out = format!("{:x}\r\n", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\r\n");
    tls.write_all(&out).await.is_ok() && tls.flush().await.is_ok()
}

/// The first event of every SSE answer.
pub const PROGRESS_EVENT: &str = "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progressToken\":1,\"progress\":1}}\n\n";

fn progress_event() -> Vec<u8> {
    PROGRESS_EVENT.as_bytes().to_vec()
}

fn sse_event(data: &[u8]) -> Vec<u8> {
    let mut out = b"event: message\ndata: ".to_vec();
    out.extend_from_slice(data);
    out.extend_from_slice(b"\n\n");
    out
}
