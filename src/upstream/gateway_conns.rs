//! One worker's connections to one route's gateway, driven directly: HTTP/2 with the
//! `h2` crate (hyper's own HTTP/2 implementation), HTTP/1.1 with `hyper::client::conn`.
//!
//! - HTTP/2 (what the gateway offers by ALPN): one connection whose `SendRequest` every
//!   request clones; a second one only when the first has as many requests open as the
//!   gateway allows (its `SETTINGS_MAX_CONCURRENT_STREAMS`) or `max_streams`.
//!   The request task itself opens the stream, queues HEADERS and DATA together and
//!   waits for the answer: hyper's h2 client would pass each request through a channel
//!   to its connection task and spawn two tasks per request (the body pipe and the
//!   response), each a copy of a future of several hundred bytes, which cost more CPU per
//!   request than everything else the gateway connection does (issue 19).
//! - HTTP/1.1: a small pool of idle connections; at most `max_connecting` are being
//!   opened at once, further requests wait for one of them (or for one to come back).
//! - Single flight: while a connection is being opened, requests wait for it instead of
//!   dialing their own, so a cold burst of any size opens one h2 connection per worker.
//!
//! A connection is left (no new request is given to it) when it closes (GOAWAY, reset),
//! when it goes to an address DNS no longer gives (`retire`), and when it has had no
//! request open for `idle_timeout` (its driver then closes it). Dialing, the in-VPC check
//! and TLS are the connector's; so are the connection metrics.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::{FutureExt, Shared};
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::client::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::sync::Notify;

use super::connector::{ConnectError, ConnectionUse, Connector};
use super::h2_stream::{self, H2Body};
use super::quiet::Quiet;

/// An HTTP/1.1 request's body: the buffered payload (empty for GET and DELETE).
type H1Body = Full<Bytes>;

/// What a request to the gateway can fail with.
#[derive(Debug)]
pub enum SendError {
    /// No connection could be made (DNS, in-VPC check, TCP, TLS).
    Connect(ConnectError),
    /// The HTTP/1.1 connection failed before the answer's head.
    Http(hyper::Error),
    /// The HTTP/2 stream or connection failed before the answer's head. `sent`: whether
    /// the request had been handed to the connection (false: it never left the proxy).
    H2 { err: h2::Error, sent: bool },
    /// The HTTP handshake on a new connection failed.
    Handshake(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => e.fmt(f),
            SendError::Http(e) => e.fmt(f),
            // rustls words an abrupt close with a link to its manual; say what happened.
            SendError::H2 { err, .. }
                if err
                    .get_io()
                    .is_some_and(|io| io.kind() == std::io::ErrorKind::UnexpectedEof) =>
            {
                f.write_str("http2 error: the gateway closed the connection before answering")
            }
            SendError::H2 { err, .. } => write!(f, "http2 error: {err}"),
            SendError::Handshake(e) => write!(f, "HTTP handshake with the gateway failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SendError::Connect(e) => Some(e),
            SendError::Http(e) => Some(e),
            // h2's own message already says it (an I/O error's text included).
            SendError::H2 { .. } => None,
            SendError::Handshake(_) => None,
        }
    }
}

/// Settings of one worker's connections.
#[derive(Debug, Clone, Copy)]
pub struct ConnSettings {
    /// Close a connection that had no request open for this long.
    pub idle_timeout: Duration,
    /// HTTP/1.1 connections kept idle for reuse.
    pub max_idle: usize,
    /// HTTP/2: requests open on one connection before the next is opened (or fewer, when
    /// the gateway allows fewer concurrent streams).
    pub max_streams: usize,
    /// HTTP/1.1: connections being opened at once; further requests queue.
    pub max_connecting: usize,
}

/// How long a new h2 connection waits for the gateway's SETTINGS before taking requests.
const SETTINGS_WAIT: Duration = Duration::from_secs(5);

/// A connection being opened, which every request that needs one waits for.
type Opening = Shared<Pin<Box<dyn Future<Output = Result<Opened, Arc<OpenFailure>>> + Send>>>;

/// Why opening failed, shared by every request that waited for it.
#[derive(Debug)]
pub enum OpenFailure {
    Connect(ConnectError),
    Handshake(String),
}

#[derive(Clone)]
enum Opened {
    H2(H2Conn),
    H1(Arc<Mutex<Option<H1Conn>>>),
}

#[derive(Clone)]
struct H2Conn {
    send: h2::client::SendRequest<Bytes>,
    used: ConnectionUse,
    /// Shared with its driver, which closes it after `idle_timeout` without requests.
    activity: Arc<Activity>,
}

struct H1Conn {
    send: http1::SendRequest<H1Body>,
    used: ConnectionUse,
    activity: Arc<Activity>,
}

/// The open requests of one connection, and how many have ended.
struct Activity {
    /// Shared with the connection's write coalescing (`UpstreamStream::open_requests`).
    open: Arc<AtomicUsize>,
    /// Requests ended so far. The driver finds the connection idle when, check after
    /// check, this has not moved and nothing is open: no clock read and no lock per
    /// request.
    ended: AtomicU64,
    /// Set when no new request may be given to it; its driver closes it when idle.
    left: AtomicBool,
}

impl Activity {
    fn new(open: Arc<AtomicUsize>) -> Arc<Activity> {
        Arc::new(Activity {
            open,
            ended: AtomicU64::new(0),
            left: AtomicBool::new(false),
        })
    }

    fn begin(&self) {
        self.open.fetch_add(1, Ordering::Relaxed);
    }

    fn end(&self) {
        // Counted before the request stops being open: a driver that sees nothing open
        // and the count unchanged since its last check knows nothing ended meanwhile.
        self.ended.fetch_add(1, Ordering::Relaxed);
        self.open.fetch_sub(1, Ordering::Relaxed);
    }

    /// What a check of the driver sees: the requests ended so far, when nothing is open.
    fn quiet(&self) -> Option<u64> {
        let ended = self.ended.load(Ordering::Relaxed);
        (self.open.load(Ordering::Relaxed) == 0).then_some(ended)
    }
}

#[derive(Default)]
struct State {
    h2: Vec<H2Conn>,
    h1_idle: Vec<H1Conn>,
    /// The connection being opened (single flight), when the protocol is h2 or not
    /// known yet.
    opening: Option<Opening>,
    /// HTTP/1.1 connections being opened.
    h1_opening: usize,
    /// What the gateway spoke on the last connection: h2 once seen.
    h1_only: bool,
}

/// One worker's connections to one route's gateway.
pub struct WorkerConns {
    connector: Connector,
    settings: ConnSettings,
    state: Mutex<State>,
    /// Woken when an HTTP/1.1 connection comes back or finished opening.
    h1_ready: Notify,
}

/// A connection lent to one request.
enum Lent {
    H2(H2Conn),
    H1(H1Conn),
}

impl WorkerConns {
    pub fn new(connector: Connector, settings: ConnSettings) -> WorkerConns {
        WorkerConns {
            connector,
            settings,
            state: Mutex::new(State::default()),
            h1_ready: Notify::new(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sends a request (`parts` with the absolute URI naming the gateway, and its
    /// buffered body) over a connection of this worker, opening one if none can take it.
    pub async fn send(
        self: &Arc<Self>,
        parts: http::request::Parts,
        payload: Bytes,
    ) -> Result<Response<UpstreamBody>, SendError> {
        let lent = self.lend().await?;
        match lent {
            Lent::H2(conn) => {
                conn.activity.begin();
                // Ends the request's share of the connection when dropped, on failure too.
                let returned = Returned::H2(Some(conn.activity.clone()));
                let answer = match h2_stream::open(&conn.send, parts, payload) {
                    Ok(answer) => answer,
                    Err(err) => {
                        // Refused before anything was sent: the connection is going
                        // away (GOAWAY) or gone. No new request goes to it.
                        self.leave_h2(&conn);
                        return Err(SendError::H2 { err, sent: false });
                    }
                };
                let response = answer.await.map_err(|err| {
                    if err.is_go_away() || err.is_io() {
                        self.leave_h2(&conn);
                    }
                    SendError::H2 { err, sent: true }
                })?;
                let (head, recv) = response.into_parts();
                let body = H2Body::new(recv, &head.headers);
                Ok(Response::from_parts(
                    head,
                    UpstreamBody::new(Inner::H2(body), conn.used.clone(), returned),
                ))
            }
            // Boxed: gateways speak h2, and inline this branch's state would be part of
            // every request's future.
            Lent::H1(conn) => Box::pin(self.send_h1(conn, parts, payload)).await,
        }
    }

    async fn send_h1(
        self: &Arc<Self>,
        mut conn: H1Conn,
        parts: http::request::Parts,
        payload: Bytes,
    ) -> Result<Response<UpstreamBody>, SendError> {
        conn.activity.begin();
        let request = origin_form(Request::from_parts(parts, Full::new(payload)));
        let used = conn.used.clone();
        let sending = conn.send.send_request(request);
        let returned = Returned::H1 {
            conn: Some(conn),
            home: Arc::downgrade(self),
        };
        let response = sending.await.map_err(SendError::Http)?;
        Ok(response.map(|body| UpstreamBody::new(Inner::H1(body), used, returned)))
    }

    /// Marks the connection `used` describes as left: no new request goes to it (its
    /// open requests finish; its driver closes it when they have).
    pub fn retire(&self, used: &ConnectionUse) {
        used.retire();
        let mut state = self.state();
        state.h2.retain(|c| {
            let same = c.used.same_connection(used);
            if same {
                c.activity.left.store(true, Ordering::Relaxed);
            }
            !same
        });
        state.h1_idle.retain(|c| !c.used.same_connection(used));
    }

    fn leave_h2(&self, conn: &H2Conn) {
        conn.activity.left.store(true, Ordering::Relaxed);
        self.state()
            .h2
            .retain(|c| !c.used.same_connection(&conn.used));
    }

    /// A connection for one request: an open one with room, the one being opened, or a
    /// new one.
    async fn lend(self: &Arc<Self>) -> Result<Lent, SendError> {
        loop {
            // `own`: an HTTP/1.1 opening of this request's own (counted in h1_opening);
            // otherwise the single-flight opening everyone shares.
            let (opening, own) = {
                let mut state = self.state();
                // A connection is left when its driver ends (closed, GOAWAY and drained,
                // idle), when it failed a request, or when it was retired.
                // A connection that received GOAWAY takes no new stream: left now, so
                // that the request goes over another one instead of failing unsent.
                state.h2.retain_mut(|c| {
                    if going_away(&mut c.send) {
                        c.activity.left.store(true, Ordering::Relaxed);
                    }
                    !c.activity.left.load(Ordering::Relaxed)
                });
                let max = self.settings.max_streams;
                if let Some(conn) = state.h2.iter().find(|c| {
                    // What the gateway allows (SETTINGS_MAX_CONCURRENT_STREAMS; 100
                    // until its SETTINGS arrive), at least one.
                    let allowed = c.send.current_max_send_streams().max(1);
                    c.activity.open.load(Ordering::Relaxed) < max.min(allowed)
                }) {
                    return Ok(Lent::H2(conn.clone()));
                }
                while let Some(conn) = state.h1_idle.pop() {
                    if conn.send.is_ready() {
                        return Ok(Lent::H1(conn));
                    }
                }
                if state.h1_only {
                    if state.h1_opening >= self.settings.max_connecting {
                        (None, true)
                    } else {
                        state.h1_opening += 1;
                        (Some(self.open()), true)
                    }
                } else {
                    let opening = match &state.opening {
                        Some(opening) => opening.clone(),
                        None => {
                            let opening = self.open();
                            state.opening = Some(opening.clone());
                            opening
                        }
                    };
                    (Some(opening), false)
                }
            };
            let Some(opening) = opening else {
                // HTTP/1.1 and enough being opened: wait for a connection to come back
                // or to finish opening (bounded: re-check now and then).
                let _ =
                    tokio::time::timeout(Duration::from_millis(50), self.h1_ready.notified()).await;
                continue;
            };
            let opened = opening.clone().await;
            let mut state = self.state();
            if own {
                state.h1_opening = state.h1_opening.saturating_sub(1);
            } else if state.opening.as_ref().is_some_and(|o| o.ptr_eq(&opening)) {
                state.opening = None;
            }
            match opened {
                Ok(Opened::H2(conn)) => {
                    state.h1_only = false;
                    if !state.h2.iter().any(|c| c.used.same_connection(&conn.used)) {
                        state.h2.push(conn);
                    }
                    // Everyone who waited shares it, within max_streams (next turn).
                }
                Ok(Opened::H1(slot)) => {
                    state.h1_only = true;
                    drop(state);
                    // An HTTP/1.1 connection serves one request at a time: the one that
                    // takes it first; those that waited on the same opening open their
                    // own on the next turn (bounded by max_connecting).
                    let taken = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
                    self.h1_ready.notify_one();
                    if let Some(conn) = taken {
                        return Ok(Lent::H1(conn));
                    }
                }
                Err(failure) => {
                    drop(state);
                    self.h1_ready.notify_one();
                    return Err(match &*failure {
                        OpenFailure::Connect(e) => SendError::Connect(e.clone()),
                        OpenFailure::Handshake(e) => SendError::Handshake(e.clone()),
                    });
                }
            }
        }
    }

    /// Opens one connection: dial (the connector), handshake, spawn its driver.
    fn open(&self) -> Opening {
        let connector = self.connector.clone();
        let idle = self.settings.idle_timeout;
        async move {
            let stream = connector
                .connect()
                .await
                .map_err(|e| Arc::new(OpenFailure::Connect(e)))?;
            let used = stream.connection_use();
            let h2 = stream.is_h2();
            let activity = Activity::new(stream.open_requests());
            if h2 {
                let (send, mut conn) = h2_stream::builder()
                    .handshake::<_, Bytes>(stream)
                    .await
                    .map_err(|e| Arc::new(OpenFailure::Handshake(e.to_string())))?;
                let ping = conn.ping_pong();
                tokio::spawn(drive(conn, activity.clone(), idle));
                // The gateway's SETTINGS (its concurrent-stream limit) come first in its
                // preface: once a PING sent after the handshake is answered they have
                // been applied, so that everyone waiting on this opening is spread
                // within the limit instead of queueing inside h2 behind the first ones.
                // One round trip per new connection; a gateway that does not answer
                // within the bound gets its requests anyway (h2 then queues what is over
                // its limit).
                if let Some(mut ping) = ping {
                    let settled =
                        tokio::time::timeout(SETTINGS_WAIT, ping.ping(h2::Ping::opaque()));
                    if let Ok(Err(e)) = settled.await {
                        return Err(Arc::new(OpenFailure::Handshake(e.to_string())));
                    }
                }
                Ok(Opened::H2(H2Conn {
                    send,
                    used,
                    activity,
                }))
            } else {
                let (send, conn) = http1::Builder::new()
                    .handshake(TokioIo::new(stream))
                    .await
                    .map_err(|e| Arc::new(OpenFailure::Handshake(e.to_string())))?;
                tokio::spawn(drive(conn, activity.clone(), idle));
                Ok(Opened::H1(Arc::new(Mutex::new(Some(H1Conn {
                    send,
                    used,
                    activity,
                })))))
            }
        }
        .boxed()
        .shared()
    }

    /// An HTTP/1.1 connection whose answer was read to the end comes back for reuse.
    fn give_back(&self, conn: H1Conn) {
        {
            let mut state = self.state();
            if !conn.send.is_closed()
                && !conn.used.is_retired()
                && !conn.activity.left.load(Ordering::Relaxed)
                && state.h1_idle.len() < self.settings.max_idle
            {
                state.h1_idle.push(conn);
            }
        }
        self.h1_ready.notify_one();
    }
}

/// Drives one connection until it ends, or until it has been idle for `idle` (or left
/// and idle): then it is dropped, which closes it.
async fn drive<C, E>(conn: C, activity: Arc<Activity>, idle: Duration)
where
    C: Future<Output = Result<(), E>>,
    E: std::fmt::Display,
{
    let mut conn = std::pin::pin!(conn);
    let check = (idle / 2).max(Duration::from_millis(100));
    // How long nothing has been open and nothing has ended, counted in whole checks (the
    // connection closes between `idle` and `idle + check` after its last request).
    let mut quiet = Duration::ZERO;
    let mut ended = activity.ended.load(Ordering::Relaxed);
    // Polled only when it fires, not on each of the connection's wake-ups.
    let mut timer = std::pin::pin!(Quiet::new(tokio::time::sleep(check)));
    loop {
        tokio::select! {
            result = &mut conn => {
                if let Err(e) = result {
                    tracing::debug!("upstream connection ended: {e}");
                }
                activity.left.store(true, Ordering::Relaxed);
                return;
            }
            () = &mut timer => {
                timer.as_mut().inner().reset(tokio::time::Instant::now() + check);
                let seen = activity.quiet();
                match seen {
                    Some(now) if now == ended => quiet += check,
                    Some(now) => {
                        quiet = Duration::ZERO;
                        ended = now;
                    }
                    None => quiet = Duration::ZERO,
                }
                let left = activity.left.load(Ordering::Relaxed);
                if seen.is_some() && (left || quiet >= idle) {
                    activity.left.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    }
}

/// Whether an h2 connection takes no new stream any more: the gateway sent GOAWAY, or
/// the connection failed. (Polling the readiness of the connection's kept handle has no
/// other effect: requests send through clones of it, so it never has a stream of its own
/// pending, and no waker is kept.)
fn going_away(send: &mut h2::client::SendRequest<Bytes>) -> bool {
    let mut cx = Context::from_waker(std::task::Waker::noop());
    matches!(send.poll_ready(&mut cx), Poll::Ready(Err(_)))
}

/// HTTP/1.1 requests carry the path only; Host names the gateway.
fn origin_form(mut request: Request<H1Body>) -> Request<H1Body> {
    if let Some(authority) = request.uri().authority().cloned() {
        if !request.headers().contains_key(http::header::HOST) {
            if let Ok(host) = http::HeaderValue::from_str(authority.as_str()) {
                request.headers_mut().insert(http::header::HOST, host);
            }
        }
        let path = request
            .uri()
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| http::uri::PathAndQuery::from_static("/"));
        *request.uri_mut() = http::Uri::from(path);
    }
    request
}

/// What gives the connection back when the answer's body is done (or the request
/// failed: then it is dropped without `done`).
enum Returned {
    H2(Option<Arc<Activity>>),
    H1 {
        conn: Option<H1Conn>,
        home: std::sync::Weak<WorkerConns>,
    },
}

impl Returned {
    /// Runs once: `complete` when the answer was read to its end.
    fn done(&mut self, complete: bool) {
        match self {
            Returned::H2(activity) => {
                if let Some(activity) = activity.take() {
                    activity.end();
                }
            }
            Returned::H1 { conn, home } => {
                if let Some(conn) = conn.take() {
                    conn.activity.end();
                    // Only an answer read to its end leaves the connection reusable.
                    match home.upgrade() {
                        Some(home) if complete => home.give_back(conn),
                        Some(home) => home.h1_ready.notify_one(),
                        None => {}
                    }
                }
            }
        }
    }
}

impl Drop for Returned {
    fn drop(&mut self) {
        self.done(false);
    }
}

/// The gateway's answer body over either protocol.
enum Inner {
    H1(Incoming),
    H2(H2Body),
}

/// The gateway's answer body; gives its connection's stream back when it ends or is
/// dropped.
pub struct UpstreamBody {
    inner: Inner,
    /// The connection it came over (in the body rather than the response's extensions,
    /// which would allocate a map and a box per request).
    used: ConnectionUse,
    returned: Option<Returned>,
}

impl Drop for UpstreamBody {
    fn drop(&mut self) {
        if let Some(mut returned) = self.returned.take() {
            let complete = self.is_end_stream();
            returned.done(complete);
        }
    }
}

impl UpstreamBody {
    fn new(inner: Inner, used: ConnectionUse, returned: Returned) -> UpstreamBody {
        UpstreamBody {
            inner,
            used,
            returned: Some(returned),
        }
    }

    /// The connection the answer came over.
    pub fn connection(&self) -> &ConnectionUse {
        &self.used
    }
}

/// What reading the answer can fail with: the connection broke or the gateway reset
/// the stream.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = match &mut this.inner {
            Inner::H1(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            Inner::H2(body) => body.poll_frame(cx).map_err(Into::into),
        };
        if let Poll::Ready(None) | Poll::Ready(Some(Err(_))) = &polled {
            if let Some(mut returned) = this.returned.take() {
                returned.done(matches!(polled, Poll::Ready(None)));
            }
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        match &self.inner {
            Inner::H1(body) => body.is_end_stream(),
            Inner::H2(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.inner {
            Inner::H1(body) => body.size_hint(),
            Inner::H2(body) => body.size_hint(),
        }
    }
}
