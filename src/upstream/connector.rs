//! The connector of a route: a tower `Service<Uri>` for hyper-util's pooled client.
//!
//! It ignores the URI's host for dialing (the URI always names the gateway) and instead
//! resolves the route's dial name: the VPC endpoint's name when private DNS is off, the
//! gateway's own name when it is on, or the route's static addresses. Every address is
//! checked against the in-VPC ranges before it is dialed; addresses are tried in turn;
//! TLS always uses SNI = gateway host and checks the certificate for that name.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::TlsConnector;

use super::coalesce::Coalescing;
use super::dns::{Dns, DnsError};
use crate::ops::metrics::{metrics, DnsLabels, DnsResult, RouteMetrics};

/// What the connector dials.
#[derive(Debug, Clone)]
pub enum DialTarget {
    /// Resolve this name, connect to its addresses on `port`.
    Name { name: String, port: u16 },
    /// Fixed addresses (the `addresses` setting).
    Static(Vec<SocketAddr>),
}

#[derive(Clone)]
pub struct Connector {
    inner: Arc<Inner>,
}

struct Inner {
    target: DialTarget,
    server_name: ServerName<'static>,
    tls: TlsConnector,
    dns: Arc<Dns>,
    require_private: bool,
    connect_timeout: Duration,
    tls_timeout: Duration,
    metrics: Arc<RouteMetrics>,
    preferred: Vec<ipnet::IpNet>,
}

pub struct ConnectorSettings {
    pub target: DialTarget,
    pub gateway_host: String,
    pub tls: Arc<rustls::ClientConfig>,
    pub dns: Arc<Dns>,
    pub require_private: bool,
    pub connect_timeout: Duration,
    pub tls_timeout: Duration,
    pub metrics: Arc<RouteMetrics>,
    /// Ranges tried first (the agent's own availability zone).
    pub preferred: Vec<ipnet::IpNet>,
}

/// Why no connection could be made; phrased for the agent (no secrets involved).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectError {
    Dns(DnsError),
    /// Every address is outside the in-VPC ranges: traffic would leave PrivateLink.
    NotPrivate {
        name: String,
        addrs: Vec<IpAddr>,
        ranges: String,
    },
    /// No address accepted a TCP connection.
    Unreachable {
        name: String,
        attempts: Vec<String>,
    },
    /// The TLS handshake failed or timed out.
    Tls {
        name: String,
        addr: SocketAddr,
        server_name: String,
        cause: String,
    },
}

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnectError::Dns(e) => e.fmt(f),
            ConnectError::NotPrivate {
                name,
                addrs,
                ranges,
            } => {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                write!(
                    f,
                    "PrivateLink is not in use: {name} resolved to {} (outside the in-VPC ranges {ranges}); \
                     refusing to connect. Enable private DNS on the VPC endpoint or set the route's \
                     `endpoint` to the endpoint's DNS name",
                    list.join(", ")
                )
            }
            ConnectError::Unreachable { name, attempts } => {
                write!(f, "cannot connect to {name}: {}", attempts.join("; "))
            }
            ConnectError::Tls {
                name,
                addr,
                server_name,
                cause,
            } => write!(
                f,
                "TLS handshake with {name} ({addr}) failed for server name {server_name}: {cause}"
            ),
        }
    }
}

impl std::error::Error for ConnectError {}

impl Connector {
    /// Dials a new connection to the gateway: resolve, in-VPC check, TCP, TLS.
    pub async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        self.inner.connect().await
    }

    pub fn new(settings: ConnectorSettings) -> Result<Self, String> {
        let server_name = ServerName::try_from(settings.gateway_host.clone()).map_err(|e| {
            format!(
                "{}: not a valid TLS server name: {e}",
                settings.gateway_host
            )
        })?;
        Ok(Connector {
            inner: Arc::new(Inner {
                target: settings.target,
                server_name,
                tls: TlsConnector::from(settings.tls),
                dns: settings.dns,
                require_private: settings.require_private,
                connect_timeout: settings.connect_timeout,
                tls_timeout: settings.tls_timeout,
                metrics: settings.metrics,
                preferred: settings.preferred,
            }),
        })
    }
}

impl Inner {
    fn dial_name(&self) -> String {
        match &self.target {
            DialTarget::Name { name, .. } => name.clone(),
            DialTarget::Static(addrs) => {
                let list: Vec<String> = addrs.iter().map(|a| a.to_string()).collect();
                format!("static addresses [{}]", list.join(", "))
            }
        }
    }

    /// The addresses we may dial, in order.
    async fn addresses(&self) -> Result<Vec<SocketAddr>, ConnectError> {
        let candidates: Vec<SocketAddr> = match &self.target {
            DialTarget::Name { name, port } => {
                let resolved = self.dns.lookup(name).await;
                let result = match &resolved {
                    Err(_) => DnsResult::error,
                    // Served, but the name servers failed: counted apart, so that an
                    // outage shows while the last good answer carries the traffic.
                    Ok(answer) if answer.stale => DnsResult::stale,
                    Ok(answer) if answer.addrs.iter().all(|ip| self.dns.in_vpc(*ip)) => {
                        DnsResult::in_vpc
                    }
                    Ok(_) => DnsResult::outside,
                };
                metrics()
                    .dns_resolutions
                    .get_or_create(&DnsLabels {
                        name: name.clone(),
                        result,
                    })
                    .inc();
                resolved
                    .map_err(ConnectError::Dns)?
                    .addrs
                    .into_iter()
                    .map(|ip| SocketAddr::new(ip, *port))
                    .collect()
            }
            DialTarget::Static(addrs) => addrs.clone(),
        };
        let mut candidates = candidates;
        // Same-zone addresses first; the sort is stable, so DNS order is kept otherwise.
        candidates.sort_by_key(|a| !self.preferred.iter().any(|r| r.contains(&a.ip())));
        if !self.require_private {
            return Ok(candidates);
        }
        let (allowed, refused): (Vec<SocketAddr>, Vec<SocketAddr>) = candidates
            .into_iter()
            .partition(|a| self.dns.in_vpc(a.ip()));
        if allowed.is_empty() {
            let ranges: Vec<String> = self.dns.ranges().iter().map(|r| r.to_string()).collect();
            return Err(ConnectError::NotPrivate {
                name: self.dial_name(),
                addrs: refused.iter().map(|a| a.ip()).collect(),
                ranges: ranges.join(", "),
            });
        }
        if !refused.is_empty() {
            tracing::warn!(
                name = %self.dial_name(),
                ?refused,
                "some addresses are outside the in-VPC ranges and will not be dialed"
            );
        }
        Ok(allowed)
    }

    async fn connect(&self) -> Result<UpstreamStream, ConnectError> {
        // Taken before resolving: the addresses dialed are current as of this generation.
        let dns_generation = self.dns.generation();
        let resolving = Instant::now();
        let resolving_at = SystemTime::now();
        let addrs = self.addresses().await?;
        let dns = resolving.elapsed();
        let mut attempts = Vec::new();
        let mut tls_failure = None;
        for addr in addrs {
            let started = Instant::now();
            let tcp =
                match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                    Ok(Ok(tcp)) => tcp,
                    Ok(Err(e)) => {
                        attempts.push(format!("{addr}: {e}"));
                        continue;
                    }
                    Err(_) => {
                        attempts.push(format!(
                            "{addr}: connect timed out after {}",
                            humantime::format_duration(self.connect_timeout)
                        ));
                        continue;
                    }
                };
            let connected_in = started.elapsed();
            // Requests are small JSON-RPC messages: send them at once.
            let _ = tcp.set_nodelay(true);
            let tls_started = Instant::now();
            let handshake = self.tls.connect(self.server_name.clone(), tcp);
            // A failed handshake on one address (a zone's endpoint interface that accepts
            // TCP but is broken) moves on to the next address, like a refused connect;
            // the agent hears of the TLS failure only when no address worked.
            let tls = match tokio::time::timeout(self.tls_timeout, handshake).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(e)) => {
                    self.metrics.tls_failures.inc();
                    tls_failure = Some(self.tls_error(addr, e.to_string()));
                    continue;
                }
                Err(_) => {
                    self.metrics.tls_failures.inc();
                    tls_failure = Some(self.tls_error(
                        addr,
                        format!(
                            "no handshake within {}",
                            humantime::format_duration(self.tls_timeout)
                        ),
                    ));
                    continue;
                }
            };
            let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
            tracing::debug!(
                %addr,
                connect_ms = connected_in.as_secs_f64() * 1000.0,
                tls_ms = tls_started.elapsed().as_secs_f64() * 1000.0,
                h2,
                "upstream connection established"
            );
            self.metrics.connections_opened.inc();
            self.metrics.connections_open.inc();
            let open_requests = Arc::new(AtomicUsize::new(0));
            return Ok(UpstreamStream {
                tls: if h2 {
                    Tls::Coalescing(Coalescing::new(tls, open_requests.clone()))
                } else {
                    Tls::Plain(tls)
                },
                h2,
                open_requests,
                used: ConnectionUse(Arc::new(ConnectionInfo {
                    used: AtomicBool::new(false),
                    retired: AtomicBool::new(false),
                    current_at: AtomicU64::new(dns_generation),
                    addr,
                    opened: OpeningTimes {
                        peer: addr,
                        at: resolving_at,
                        dns,
                        connect_from: started.duration_since(resolving),
                        connect: connected_in,
                        tls: tls_started.elapsed(),
                    },
                })),
                _open: OpenConnection(self.metrics.clone()),
            });
        }
        if let Some(tls) = tls_failure {
            return Err(tls);
        }
        Err(ConnectError::Unreachable {
            name: self.dial_name(),
            attempts,
        })
    }

    fn tls_error(&self, addr: SocketAddr, cause: String) -> ConnectError {
        ConnectError::Tls {
            name: self.dial_name(),
            addr,
            server_name: self.server_name.to_str().into_owned(),
            cause,
        }
    }
}

/// A TLS connection to the gateway, and whether the gateway chose h2.
pub struct UpstreamStream {
    tls: Tls,
    h2: bool,
    /// Requests open on the connection, counted by its owner (`gateway_conns`); the
    /// write coalescing reads it.
    open_requests: Arc<AtomicUsize>,
    used: ConnectionUse,
    _open: OpenConnection,
}

impl UpstreamStream {
    /// Whether the gateway chose HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        self.h2
    }

    /// The count of requests open on this connection, for its owner to keep.
    pub fn open_requests(&self) -> Arc<AtomicUsize> {
        self.open_requests.clone()
    }

    /// What every response over this connection carries about it.
    pub fn connection_use(&self) -> ConnectionUse {
        self.used.clone()
    }
}

/// Carried by every answer's body (`UpstreamBody::connection`), so the proxy can tell a
/// reused connection from a fresh one and retire one to a stale address. One shared
/// record per connection: a request's copy is one pointer and one count.
#[derive(Clone)]
pub struct ConnectionUse(Arc<ConnectionInfo>);

pub struct ConnectionInfo {
    used: AtomicBool,
    /// Set when no new request may go over it (its address left the DNS answer).
    retired: AtomicBool,
    /// The DNS generation at which `addr` was last known to be in the answer.
    current_at: AtomicU64,
    /// The address the connection went to.
    pub addr: SocketAddr,
    /// What opening it took: the first request on it reports these as its own.
    pub opened: OpeningTimes,
}

impl std::ops::Deref for ConnectionUse {
    type Target = ConnectionInfo;

    fn deref(&self) -> &ConnectionInfo {
        &self.0
    }
}

/// Where the time of opening a connection went, recorded as it happened.
#[derive(Debug, Clone, Copy)]
pub struct OpeningTimes {
    /// The address connected to.
    pub peer: SocketAddr,
    /// When resolving began (wall clock, for trace spans); the rest are offsets from it.
    pub at: SystemTime,
    /// Resolving the dial name (the cache's answer is microseconds).
    pub dns: Duration,
    /// When the successful connect began (after any addresses that failed).
    pub connect_from: Duration,
    pub connect: Duration,
    pub tls: Duration,
}

impl ConnectionUse {
    /// No new request goes over this connection; those open finish.
    pub fn retire(&self) {
        self.retired
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }

    pub fn is_retired(&self) -> bool {
        self.retired.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether both describe the same connection.
    pub fn same_connection(&self, other: &ConnectionUse) -> bool {
        Arc::ptr_eq(&self.0, &other.0)
    }

    /// Marks the connection used; true when it had been used before.
    pub fn mark_used(&self) -> bool {
        self.used.swap(true, std::sync::atomic::Ordering::Relaxed)
    }

    /// The DNS generation at which the address was last known current.
    pub fn current_at(&self) -> u64 {
        self.current_at.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Records that the address is still in the answer as of `generation`.
    pub fn still_current_at(&self, generation: u64) {
        self.current_at
            .store(generation, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Over h2 the writes are coalesced (a request's HEADERS and DATA in one record); HTTP/1.1
/// already writes a small request's head and body together.
enum Tls {
    Plain(TlsStream<TcpStream>),
    Coalescing(Coalescing<TlsStream<TcpStream>>),
}

/// Keeps the open-connections gauge right: decremented when the connection is dropped.
struct OpenConnection(Arc<RouteMetrics>);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.connections_open.dec();
    }
}

/// Calls the same method on whichever stream `$tls` holds.
macro_rules! on_tls {
    ($tls:expr, $s:ident => $call:expr) => {
        match $tls {
            Tls::Plain($s) => $call,
            Tls::Coalescing($s) => $call,
        }
    };
}

impl AsyncRead for UpstreamStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        on_tls!(&mut self.tls, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for UpstreamStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        on_tls!(&mut self.tls, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        on_tls!(&mut self.tls, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        on_tls!(&self.tls, s => s.is_write_vectored())
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_tls!(&mut self.tls, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        on_tls!(&mut self.tls, s => Pin::new(s).poll_shutdown(cx))
    }
}
