//! A TLS gateway that speaks HTTP/2 only, built on the `h2` crate's server, for the tests
//! of how the proxy shares its HTTP/2 connections: it advertises the
//! `SETTINGS_MAX_CONCURRENT_STREAMS` the test chooses, records on which connection each
//! request came and how many streams each connection had open at most, holds answers
//! until the test releases them (so requests are known to be in flight together),
//! refuses streams (`RST_STREAM` REFUSED_STREAM) and sends GOAWAY on demand.
//!
//! Each request takes the next scripted [`Reply`], and [`Reply::Answer`] once the script
//! is used up. Every answer is a JSON-RPC result naming the connection that carried it
//! (`result.connection`), so a test tells the connections apart from the agent's side too.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{Notify, Semaphore};
use tokio::task::JoinHandle;

use super::certs::{self, TestPki};
use super::upstream::{private_dns_off_route, GATEWAY_HOST};

/// What the gateway does with one request, once it has read it whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply {
    /// Answer at once.
    Answer,
    /// Answer once the test calls [`H2Gateway::release`].
    AnswerWhenReleased,
    /// Reset the stream with REFUSED_STREAM, without a byte of answer: the gateway did
    /// not process it (RFC 9113 8.7).
    Refuse,
    /// Close the whole connection (TLS and TCP) without a byte of answer or a GOAWAY: the
    /// gateway's host went away.
    Break,
}

/// One request as the gateway read it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    /// Which connection carried it (0 for the first accepted, in accept order).
    pub connection: usize,
    /// The JSON-RPC request (Null when the body is not JSON).
    pub body: Value,
}

impl SeenRequest {
    /// The JSON-RPC method.
    pub fn method(&self) -> &str {
        self.body["method"].as_str().unwrap_or_default()
    }
}

/// What the gateway knows of one connection.
#[derive(Debug, Clone, Default)]
pub struct ConnectionRecord {
    /// Streams accepted and not answered (or refused) yet.
    pub open: usize,
    /// The most streams it had open at once.
    pub max_open: usize,
    /// The client acknowledged a PING sent after this connection's GOAWAY: it has
    /// processed the GOAWAY (frames are handled in order).
    pub go_away_seen: bool,
    /// The HTTP/2 connection ended (after a GOAWAY: once its streams finished).
    pub closed: bool,
}

#[derive(Default)]
struct Shared {
    script: Mutex<VecDeque<Reply>>,
    requests: Mutex<Vec<SeenRequest>>,
    connections: Mutex<Vec<ConnectionRecord>>,
    /// Per connection, wakes its task to send GOAWAY.
    go_away: Mutex<Vec<Arc<Notify>>>,
}

/// A running HTTP/2 gateway on 127.0.0.1; stops (and drops every connection) when dropped.
pub struct H2Gateway {
    pub port: u16,
    pki: TestPki,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
    task: JoinHandle<()>,
}

impl Drop for H2Gateway {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// How long a test waits for something the gateway should see before failing.
const PATIENCE: Duration = Duration::from_secs(30);

impl H2Gateway {
    /// A gateway with a certificate for [`GATEWAY_HOST`], offering only `h2` by ALPN;
    /// `max_concurrent_streams` is its SETTINGS_MAX_CONCURRENT_STREAMS (None: not sent,
    /// no limit).
    pub async fn start(max_concurrent_streams: Option<u32>) -> H2Gateway {
        let pki = certs::issue(&[GATEWAY_HOST]);
        let mut tls = (*pki.server_config).clone();
        tls.alpn_protocols = vec![b"h2".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared = Arc::new(Shared::default());
        let gate = Arc::new(Semaphore::new(0));
        let task = tokio::spawn(accept_loop(
            listener,
            acceptor,
            max_concurrent_streams,
            shared.clone(),
            gate.clone(),
        ));
        H2Gateway {
            port,
            pki,
            shared,
            gate,
            task,
        }
    }

    /// The CA file the proxy must trust (`ca_file` of the route).
    pub fn ca_file(&self) -> &Path {
        &self.pki.ca_file
    }

    /// A `[[route]]` table for this gateway at `/mcp`: the gateway name with this port,
    /// dialing [`ENDPOINT_HOST`] (private DNS off), trusting the fixture's CA; `extra`
    /// lines are added to the table.
    pub fn route(&self, extra: &str) -> String {
        private_dns_off_route(self.port, self.ca_file(), extra)
    }

    /// Appends replies to the script: the next requests take them in order.
    pub fn script(&self, replies: &[Reply]) {
        self.shared
            .script
            .lock()
            .unwrap()
            .extend(replies.iter().copied());
    }

    /// Lets `n` held answers (waiting or future) go.
    pub fn release(&self, n: usize) {
        self.gate.add_permits(n);
    }

    /// Sends a graceful GOAWAY (NO_ERROR) on `connection` and waits (bounded) until the
    /// client has processed it: streams already open on it go on, the client may open no
    /// new one.
    pub async fn go_away(&self, connection: usize) {
        let notify = self.shared.go_away.lock().unwrap()[connection].clone();
        notify.notify_one();
        self.wait_until(&format!("connection {connection} saw its GOAWAY"), |g| {
            g.connection(connection).go_away_seen
        })
        .await;
    }

    /// HTTP/2 connections accepted so far.
    pub fn connections(&self) -> usize {
        self.shared.connections.lock().unwrap().len()
    }

    /// What the gateway knows of one connection.
    pub fn connection(&self, connection: usize) -> ConnectionRecord {
        self.shared.connections.lock().unwrap()[connection].clone()
    }

    /// Every request read so far, in arrival order.
    pub fn requests(&self) -> Vec<SeenRequest> {
        self.shared.requests.lock().unwrap().clone()
    }

    /// Waits (at most 30 s) until the gateway has read `n` requests.
    pub async fn wait_for_requests(&self, n: usize) {
        self.wait_until(&format!("{n} requests"), |g| g.requests().len() >= n)
            .await;
    }

    /// Waits (at most 30 s) until `done` holds, failing with `what` otherwise.
    pub async fn wait_until(&self, what: &str, done: impl Fn(&H2Gateway) -> bool) {
        let deadline = tokio::time::Instant::now() + PATIENCE;
        while !done(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the gateway waited in vain for: {what}; requests {:?}, connections {:?}",
                self.requests(),
                self.shared.connections.lock().unwrap()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// The answer the gateway gives to a JSON-RPC request `id` read on `connection`.
pub fn answer(id: &Value, connection: usize) -> String {
    json!({
        "jsonrpc": "2.0",
        "id": id,
        "result": { "connection": connection }
    })
    .to_string()
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    max_concurrent_streams: Option<u32>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    loop {
        let Ok((tcp, _)) = listener.accept().await else {
            return;
        };
        let (acceptor, shared, gate) = (acceptor.clone(), shared.clone(), gate.clone());
        tokio::spawn(async move {
            let Ok(tls) = acceptor.accept(tcp).await else {
                return;
            };
            let mut builder = h2::server::Builder::new();
            if let Some(max) = max_concurrent_streams {
                builder.max_concurrent_streams(max);
            }
            let Ok(conn) = builder.handshake::<_, Bytes>(tls).await else {
                return;
            };
            serve_connection(conn, shared, gate).await;
        });
    }
}

/// Serves one HTTP/2 connection: each stream in a task of its own, a GOAWAY when the test
/// asks for one, until the connection ends.
async fn serve_connection<T>(
    mut conn: h2::server::Connection<T, Bytes>,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let go_away = Arc::new(Notify::new());
    let broken = Arc::new(Notify::new());
    // Streams of a broken connection hold their handles until it is gone: dropped earlier,
    // h2 would reset them (CANCEL) before the connection closes.
    let (gone, gone_seen) = tokio::sync::watch::channel(false);
    let index = {
        // Both lists grow together, under the connections lock.
        let mut connections = shared.connections.lock().unwrap();
        connections.push(ConnectionRecord::default());
        shared.go_away.lock().unwrap().push(go_away.clone());
        connections.len() - 1
    };
    let mut pings = conn.ping_pong();
    loop {
        tokio::select! {
            next = conn.accept() => match next {
                Some(Ok((request, respond))) => {
                    {
                        let mut connections = shared.connections.lock().unwrap();
                        let record = &mut connections[index];
                        record.open += 1;
                        record.max_open = record.max_open.max(record.open);
                    }
                    let stream = Stream { connection: index, broken: broken.clone(), gone: gone_seen.clone() };
                    tokio::spawn(serve_stream(request, respond, stream, shared.clone(), gate.clone()));
                }
                Some(Err(_)) | None => break,
            },
            // Dropping the connection closes it, with nothing said.
            () = broken.notified() => break,
            () = go_away.notified() => {
                conn.graceful_shutdown();
                // A PING after the GOAWAY: its answer proves the client processed both.
                if let Some(mut pings) = pings.take() {
                    let shared = shared.clone();
                    tokio::spawn(async move {
                        if pings.ping(h2::Ping::opaque()).await.is_ok() {
                            shared.connections.lock().unwrap()[index].go_away_seen = true;
                        }
                    });
                }
            }
        }
    }
    drop(conn);
    let _ = gone.send(true);
    shared.connections.lock().unwrap()[index].closed = true;
}

/// Which connection a stream came on, and how to break that connection.
struct Stream {
    connection: usize,
    broken: Arc<Notify>,
    /// Turns true once the connection is closed.
    gone: tokio::sync::watch::Receiver<bool>,
}

/// Reads one request whole, records it, and does what the script says.
async fn serve_stream(
    request: Request<h2::RecvStream>,
    mut respond: h2::server::SendResponse<Bytes>,
    stream: Stream,
    shared: Arc<Shared>,
    gate: Arc<Semaphore>,
) {
    let connection = stream.connection;
    let mut body = request.into_body();
    let mut bytes = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else { break };
        let _ = body.flow_control().release_capacity(chunk.len());
        bytes.extend_from_slice(&chunk);
    }
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let id = body["id"].clone();
    shared
        .requests
        .lock()
        .unwrap()
        .push(SeenRequest { connection, body });
    let reply = shared
        .script
        .lock()
        .unwrap()
        .pop_front()
        .unwrap_or(Reply::Answer);
    match reply {
        Reply::Refuse => respond.send_reset(h2::Reason::REFUSED_STREAM),
        Reply::Break => {
            stream.broken.notify_one();
            let mut gone = stream.gone.clone();
            let _ = tokio::time::timeout(Duration::from_secs(30), gone.wait_for(|g| *g)).await;
            drop(respond);
        }
        Reply::Answer | Reply::AnswerWhenReleased => {
            if reply == Reply::AnswerWhenReleased {
                if let Ok(permit) = gate.acquire().await {
                    permit.forget();
                }
            }
            let text = answer(&id, connection);
            let head = Response::builder()
                .status(200)
                .header("content-type", "application/json")
                .header("content-length", text.len())
                .body(())
                .unwrap();
            if let Ok(mut stream) = respond.send_response(head, false) {
                let _ = stream.send_data(Bytes::from(text), true);
            }
        }
    }
    shared.connections.lock().unwrap()[connection].open -= 1;
}
