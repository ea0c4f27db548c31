//! The listener: accepts agent connections, serves HTTP/1.1 and h2c on each, hands every
//! request to the proxy with the route table in force, and drains on shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;

use crate::config::{Config, LimitsConfig};
use crate::exchange::body::{BoxError, BudgetPool, BufferBudget, ProxyBody};
use crate::listener::watchdog::{
    watch_connection, Activity, Deadlines, GracefulClose, OpenRequest,
};
use crate::listener::workers::Workers;
use crate::ops::audit::AuditSink;
use crate::proxy::forward;
use crate::proxy::route::RouteTable;
use crate::upstream::dns::Dns;

pub struct Server {
    listener: TcpListener,
    unix: Option<UnixListener>,
    routes: Arc<ArcSwap<RouteTable>>,
    grace: Duration,
    dns_refresh: Duration,
    limits: crate::config::LimitsConfig,
    reloader: Arc<Reloader>,
    /// Where connections are served: the worker threads, or this runtime when none.
    workers: Option<Arc<Workers>>,
}

/// Applies a new configuration to a running server: builds the new route table (taking
/// over unchanged routes with their pools and credentials) and swaps it in whole.
/// Requests already running keep the table they started with.
pub struct Reloader {
    routes: Arc<ArcSwap<RouteTable>>,
    state: std::sync::Mutex<(Config, AuditSink)>,
}

impl Reloader {
    pub fn apply(&self, new: Config) -> Result<(), String> {
        let result = self.swap(new);
        let label = if result.is_ok() { "ok" } else { "error" };
        crate::ops::metrics::metrics()
            .config_reloads
            .get_or_create(&crate::ops::metrics::ResultLabels {
                result: label.to_string(),
            })
            .inc();
        result
    }

    fn swap(&self, new: Config) -> Result<(), String> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let (current, audit) = &mut *state;
        if new.listen != current.listen || new.admin != current.admin {
            tracing::warn!(
                "listen and admin addresses change only on restart; keeping the current ones"
            );
        }
        if new.admin_hosts != current.admin_hosts {
            tracing::warn!("admin_hosts changes only on restart; keeping the current names");
        }
        let old = self.routes.load_full();
        let dns = if new.dns == current.dns {
            old.dns.clone()
        } else {
            Arc::new(Dns::new(&new.dns)?)
        };
        let new_audit = if new.audit == current.audit {
            audit.clone()
        } else {
            AuditSink::start(&new.audit)?
        };
        let table = RouteTable::build_reusing(&new, &dns, &new_audit, Some(&old))?;
        let kept = table
            .routes()
            .filter(|r| old.get(&r.path).is_some_and(|o| Arc::ptr_eq(o, r)))
            .count();
        tracing::info!(
            routes = table.routes().count(),
            kept,
            "configuration reloaded"
        );
        self.routes.store(Arc::new(table));
        *current = new;
        *audit = new_audit;
        Ok(())
    }
}

impl Server {
    /// Builds the routes and binds the listener; nothing is served until `run`.
    pub async fn bind(config: &Config) -> Result<Server, String> {
        let dns = Arc::new(Dns::new(&config.dns)?);
        let audit = AuditSink::start(&config.audit)?;
        let table = RouteTable::build(config, &dns, &audit)?;
        let listener = bind_tcp(config.listen)
            .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
        let unix = match &config.unix_socket {
            Some(u) => Some(bind_unix(u)?),
            None => None,
        };
        let routes = Arc::new(ArcSwap::from_pointee(table));
        Ok(Server {
            listener,
            unix,
            reloader: Arc::new(Reloader {
                routes: routes.clone(),
                state: std::sync::Mutex::new((config.clone(), audit)),
            }),
            routes,
            grace: config.shutdown_grace,
            dns_refresh: config.dns.refresh,
            limits: config.limits.clone(),
            workers: None,
        })
    }

    /// Serves every accepted connection on one of `workers` (in turn) instead of on the
    /// runtime that runs the listener.
    pub fn serve_on(&mut self, workers: Arc<Workers>) {
        self.workers = Some(workers);
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The table in force; the handle through which a reload swaps it.
    pub fn routes(&self) -> Arc<ArcSwap<RouteTable>> {
        self.routes.clone()
    }

    /// The handle through which a new configuration is applied.
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// Serves until `shutdown` completes, then stops accepting and lets in-flight
    /// requests finish for up to the grace period.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let mut builder = http_builder(&self.limits);
        // Each connection's watchdog keeps the deadline of its heads, with one timer per
        // connection where hyper's makes one per request (see `watchdog`).
        builder.http1().header_read_timeout(None::<Duration>);
        // Bounds the connections (hence memory) one misbehaving client can hold.
        let slots = Arc::new(tokio::sync::Semaphore::new(self.limits.max_connections));
        let drain = Drain::new();
        // Request bodies buffered by all connections together.
        let buffered = Arc::new(BudgetPool::new(self.limits.max_buffered_bytes));
        let refresher = tokio::spawn(refresh_dns(self.routes.clone(), self.dns_refresh));
        tokio::pin!(shutdown);
        tracing::info!(listen = %self.local_addr(), "proxy listening");
        loop {
            let slot = tokio::select! {
                _ = &mut shutdown => break,
                slot = slots.clone().acquire_owned() => match slot {
                    Ok(slot) => slot,
                    Err(_) => break,
                },
            };
            let unix_accept = async {
                match &self.unix {
                    Some(unix) => unix.accept().await.map(|(stream, _)| stream),
                    None => std::future::pending().await,
                }
            };
            let accepted = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => accepted.map(|(stream, peer)| {
                    let _ = stream.set_nodelay(true);
                    let task = serve(&builder, &drain, &self.routes, Some(peer), slot, &self.limits, &buffered);
                    dispatch(self.workers.as_deref(), stream, task);
                }),
                accepted = unix_accept => accepted.map(|stream| {
                    let task = serve(&builder, &drain, &self.routes, None, slot, &self.limits, &buffered);
                    dispatch(self.workers.as_deref(), stream, task);
                }),
            };
            if let Err(e) = accepted {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        drop(self.listener);
        drop(self.unix);
        refresher.abort();
        crate::ops::systemd::stopping();
        let in_flight = drain.count();
        tracing::info!(in_flight, grace = %humantime::format_duration(self.grace), "shutting down: draining connections");
        tokio::select! {
            _ = drain.shutdown() => tracing::info!("all connections drained"),
            _ = tokio::time::sleep(self.grace) => tracing::warn!("grace period over; closing the remaining connections"),
        }
    }
}

/// hyper's settings for the connections of a listener (the agents' and the admin one):
/// HTTP/1.1 and h2c, request heads bounded in time (`header_read_timeout`, which also
/// closes an idle HTTP/1 keep-alive connection; the agents' listener turns hyper's off
/// and keeps the same deadline in each connection's watchdog) and size, h2 streams per
/// connection.
pub fn http_builder(limits: &crate::config::LimitsConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_header_list_size(limits.max_header_bytes as u32)
        .keep_alive_interval(limits.h2_keep_alive_interval)
        .keep_alive_timeout(limits.h2_keep_alive_timeout);
    builder
}

/// Binds with a listen backlog like nginx's (tokio's default is 128): a burst of agents
/// connecting at once must queue, not be dropped into SYN retries of seconds.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    const BACKLOG: u32 = 1024;
    let socket = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Runs `task` on `stream`: on the next worker thread, re-registered with that worker's
/// runtime, or here when there are no workers.
fn dispatch<S, F>(workers: Option<&Workers>, stream: S, task: impl FnOnce(S) -> F + Send + 'static)
where
    S: Transfer,
    F: Future<Output = ()> + Send + 'static,
{
    let Some(workers) = workers else {
        tokio::spawn(task(stream));
        return;
    };
    match stream.into_std() {
        Ok(detached) => workers.spawn(async move {
            match S::from_std(detached) {
                Ok(stream) => task(stream).await,
                Err(e) => tracing::warn!("cannot hand a connection to a worker: {e}"),
            }
        }),
        Err(e) => tracing::warn!("cannot hand a connection to a worker: {e}"),
    }
}

/// Serves one agent connection (TCP, or unix socket with no peer address) until it
/// closes; its slot is given back then.
///
/// hyper's HTTP version detection reads the first bytes with no timeout, so a connection
/// that never sends anything would hold its slot forever: it is closed when nothing
/// arrives within `header_read_timeout`. After that, its watchdog holds it to the
/// deadline of its request heads and to `idle_connection_timeout` (see
/// [`watch_connection`]). The request bodies it buffers draw on a budget of its own and
/// on `buffered`, the process's.
fn serve<S>(
    builder: &auto::Builder<TokioExecutor>,
    drain: &Drain,
    routes: &Arc<ArcSwap<RouteTable>>,
    peer: Option<SocketAddr>,
    slot: tokio::sync::OwnedSemaphorePermit,
    limits: &LimitsConfig,
    buffered: &Arc<BudgetPool>,
) -> impl FnOnce(S) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + 'static
where
    S: Readable + tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let routes = routes.clone();
    let builder = builder.clone();
    let drained = drain.watcher();
    let first_byte = limits.header_read_timeout;
    let deadlines = Deadlines {
        head: limits.header_read_timeout,
        idle: limits.idle_connection_timeout,
    };
    let per_connection = limits.max_buffered_bytes_per_connection;
    let buffered = buffered.clone();
    move |stream: S| {
        Box::pin(async move {
            if tokio::time::timeout(first_byte, stream.wait_readable())
                .await
                .is_err()
            {
                tracing::debug!(?peer, "agent connection sent nothing; closed");
                return;
            }
            let activity = Arc::new(Activity::from_first_byte());
            let tracker = activity.clone();
            let budget = BufferBudget::new(per_connection, buffered);
            let service = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let table = routes.load_full();
                let open = tracker.start(req.version());
                // Only POST bodies are buffered (see `proxy::forward`). Passed along, not
                // put in the request's extensions (a map and a box allocated per request).
                let budget = (req.method() == http::Method::POST).then(|| budget.clone());
                // hyper keeps the space of the service future for as long as the agent's
                // connection lives (an SSE stream, an idle keep-alive), so the request's
                // state (~5.5 KB) goes on the heap for the request only. It is made in its
                // heap space: `Box::pin(future)` builds it on the stack and copies all of
                // it, though only its first few hundred bytes are set before it runs.
                let space = Box::new_uninit();
                let answer = Box::write(space, request_answer(table, peer, budget, req, open));
                Box::into_pin(answer) as ServiceFuture
            });
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watch_connection(connection, &activity, drained, deadlines, peer).await
            {
                tracing::debug!(?peer, "agent connection ended: {e}");
            }
            drop(slot);
        })
    }
}

/// One request's answer, from the proxy and counted in the connection's activity. Not
/// inlined, so that it writes its (unstarted) state straight into the space its caller
/// passes (LLVM's call-slot optimisation) instead of a copy on the stack.
#[inline(never)]
#[allow(clippy::manual_async_fn)] // an async block, like `forward::handle`'s
fn request_answer(
    table: Arc<RouteTable>,
    peer: Option<SocketAddr>,
    budget: Option<BufferBudget>,
    req: http::Request<hyper::body::Incoming>,
    open: OpenRequest,
) -> impl Future<Output = Result<http::Response<Tracked>, Infallible>> + Send {
    async move {
        let response = forward::handle(table, peer, budget, req).await;
        Ok(response.map(|inner| Tracked { inner, _open: open }))
    }
}

impl<I, S, B> GracefulClose for auto::Connection<'_, I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<BoxError>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: Body + 'static,
    B::Error: Into<BoxError>,
    TokioExecutor: auto::HttpServerConnExec<S::Future, B>,
{
    fn graceful_close(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// A response body that keeps its request counted as in progress until it is dropped
/// (hyper drops it once sent, or when the agent goes away).
struct Tracked {
    inner: ProxyBody,
    _open: OpenRequest,
}

impl Body for Tracked {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Graceful shutdown of every agent connection: each watches the drain signal, and
/// `shutdown` completes when all have closed.
struct Drain {
    signal: watch::Sender<()>,
}

impl Drain {
    fn new() -> Drain {
        Drain {
            signal: watch::channel(()).0,
        }
    }

    /// Made when a connection is accepted, so that a drain that starts meanwhile is
    /// not missed.
    fn watcher(&self) -> watch::Receiver<()> {
        self.signal.subscribe()
    }

    /// Connections not closed yet.
    fn count(&self) -> usize {
        self.signal.receiver_count()
    }

    async fn shutdown(self) {
        let _ = self.signal.send(());
        self.signal.closed().await;
    }
}

type ServiceFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Tracked>, Infallible>> + Send>>;

/// Streams that can leave the runtime that accepted them and join another (a worker's).
pub trait Transfer: Sized + Send + 'static {
    type Detached: Send + 'static;
    fn into_std(self) -> std::io::Result<Self::Detached>;
    /// Must run inside the runtime that is to drive the stream.
    fn from_std(detached: Self::Detached) -> std::io::Result<Self>;
}

impl Transfer for tokio::net::TcpStream {
    type Detached = std::net::TcpStream;
    fn into_std(self) -> std::io::Result<std::net::TcpStream> {
        tokio::net::TcpStream::into_std(self)
    }
    fn from_std(detached: std::net::TcpStream) -> std::io::Result<Self> {
        tokio::net::TcpStream::from_std(detached)
    }
}

impl Transfer for tokio::net::UnixStream {
    type Detached = std::os::unix::net::UnixStream;
    fn into_std(self) -> std::io::Result<std::os::unix::net::UnixStream> {
        tokio::net::UnixStream::into_std(self)
    }
    fn from_std(detached: std::os::unix::net::UnixStream) -> std::io::Result<Self> {
        tokio::net::UnixStream::from_std(detached)
    }
}

/// Streams on which the first byte can be awaited without consuming it.
pub trait Readable {
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send;
}

impl Readable for tokio::net::TcpStream {
    /// `peek` waits for data itself (readiness alone may be reported early).
    async fn wait_readable(&self) -> std::io::Result<()> {
        let mut first = [0u8; 1];
        self.peek(&mut first).await.map(|_| ())
    }
}

impl Readable for tokio::net::UnixStream {
    /// Unix sockets are reachable only by who the file mode allows: readiness suffices.
    fn wait_readable(&self) -> impl Future<Output = std::io::Result<()>> + Send {
        self.readable()
    }
}

#[cfg(unix)]
fn bind_unix(config: &crate::config::UnixSocketConfig) -> Result<UnixListener, String> {
    let listener = crate::listener::unix::bind_unix(
        &config.path,
        config.mode_bits()?,
        config.owner,
        config.group,
    )?;
    tracing::info!(path = %config.path.display(), mode = %config.mode, "also listening on a unix socket");
    Ok(listener)
}

/// Resolves every route's dial name again at each interval, so that the last good
/// answers (readiness, `dns_answer_age_seconds`, retiring connections to addresses an
/// endpoint gave up) follow DNS even while pooled connections carry all the traffic.
async fn refresh_dns(routes: Arc<ArcSwap<RouteTable>>, every: Duration) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let table = routes.load_full();
        for route in table.routes() {
            if let crate::upstream::connector::DialTarget::Name { name, .. } = route.dial_target() {
                if let Err(e) = table.dns.resolve(name).await {
                    tracing::warn!(route = %route.name, "DNS refresh: {e}");
                }
            }
        }
    }
}

/// Completes on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!("cannot watch SIGTERM: {e}");
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
