//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (every route can reach its gateway over PrivateLink and has a credential),
//! `/routes` (the effective routes, secrets as fingerprints). Separate from the agent
//! listener so that probes and scrapes never compete with MCP traffic.
//!
//! Guarded like the agent listener: hyper configured from the same `[limits]`, a
//! connection closed when it sends no complete request head within
//! `limits.header_read_timeout` (of being accepted, or of its previous answer), at most
//! [`MAX_CONNECTIONS`] served at once (so that a flood of admin connections cannot take
//! the file descriptors the agents need), and a Host allow-list against DNS rebinding: a
//! request whose Host or `:authority` is not an IP literal, `localhost` or a name in
//! `admin_hosts` gets 421; two Host headers or a malformed one get 400.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::{CONTENT_TYPE, HOST};
use http::{Method, Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::inbound::{parse_request_host, RequestHost};
use crate::config::{Config, LimitsConfig};
use crate::ops::metrics::{metrics, NameLabels};
use crate::proxy::health::readiness;
use crate::proxy::route::RouteTable;

/// Admin connections served at once. Probes and scrapes need a handful; the bound keeps
/// a flood of admin connections from holding the file descriptors the agents need.
/// Connections over it are answered 503 and closed at once.
pub const MAX_CONNECTIONS: usize = 64;

/// What the admin listener allows, from the configuration.
#[derive(Debug, Clone, Default)]
pub struct AdminSettings {
    /// Host names accepted besides IP literals and `localhost` (`admin_hosts`).
    pub hosts: Vec<String>,
    /// The agent listener's `[limits]`: the admin listener takes the same head size and
    /// time bounds (`header_read_timeout` also closes idle connections).
    pub limits: LimitsConfig,
}

impl AdminSettings {
    pub fn from_config(config: &Config) -> AdminSettings {
        AdminSettings {
            hosts: config.admin_hosts.clone(),
            limits: config.limits.clone(),
        }
    }
}

pub struct Admin {
    listener: TcpListener,
    routes: Arc<ArcSwap<RouteTable>>,
    hosts: Arc<HostGuard>,
    limits: LimitsConfig,
}

impl Admin {
    /// Binds with the default settings (no extra host names, default `[limits]`).
    pub async fn bind(addr: SocketAddr, routes: Arc<ArcSwap<RouteTable>>) -> Result<Admin, String> {
        Admin::bind_with(addr, routes, AdminSettings::default()).await
    }

    pub async fn bind_with(
        addr: SocketAddr,
        routes: Arc<ArcSwap<RouteTable>>,
        settings: AdminSettings,
    ) -> Result<Admin, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?;
        Ok(Admin {
            listener,
            routes,
            hosts: Arc::new(HostGuard::new(&settings.hosts)),
            limits: settings.limits,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(admin = %self.local_addr(), "admin listening");
        let builder = crate::listener::server::http_builder(&self.limits);
        let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
        let mut last_busy_warning: Option<Instant> = None;
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                if last_busy_warning.is_none_or(|at| at.elapsed() >= BUSY_WARNING_EVERY) {
                    last_busy_warning = Some(Instant::now());
                    tracing::warn!(
                        limit = MAX_CONNECTIONS,
                        "admin listener busy: connections over the limit are refused (503)"
                    );
                }
                refuse_busy(stream);
                continue;
            };
            tokio::spawn(serve(
                stream,
                builder.clone(),
                self.routes.clone(),
                self.hosts.clone(),
                self.limits.header_read_timeout,
                slot,
            ));
        }
    }
}

/// How often a busy admin listener says so in the log.
const BUSY_WARNING_EVERY: Duration = Duration::from_secs(60);

/// Answers a connection over the limit with a 503, without reading it, and closes it.
fn refuse_busy(stream: TcpStream) {
    const BUSY: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: 55\r\nconnection: close\r\n\r\nmcp-vpce-proxy: admin: too many connections, try again\n";
    // Best effort: a fresh socket's send buffer takes it whole, or the client is gone.
    let _ = stream.try_write(BUSY);
}

/// Serves one admin connection until it closes, or until it has gone `idle` without a
/// request in progress: a connection must send a complete request head within `idle`
/// of being accepted and of its previous answer. This bounds what hyper's own timeouts
/// leave open: the wait for the first bytes, a half-sent HTTP/2 preface, an HTTP/2
/// connection that sends no request.
async fn serve(
    stream: TcpStream,
    builder: auto::Builder<TokioExecutor>,
    routes: Arc<ArcSwap<RouteTable>>,
    hosts: Arc<HostGuard>,
    idle: Duration,
    slot: OwnedSemaphorePermit,
) {
    let activity = Arc::new(Activity::new());
    let watched = activity.clone();
    let service = service_fn(move |req| {
        let table = routes.load_full();
        let hosts = hosts.clone();
        let busy = activity.begin();
        async move {
            let response = match hosts.check(&req) {
                Ok(()) => answer(&table, req).await,
                Err(refused) => refused.response(),
            };
            drop(busy);
            Ok::<_, Infallible>(response)
        }
    });
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::select! {
        _ = connection => {}
        _ = watched.idle_for(idle) => {
            tracing::debug!("admin connection sent no complete request within {}; closed", humantime::format_duration(idle));
        }
    }
    drop(slot);
}

/// Requests in progress on one connection and when the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Instant>,
}

struct Busy(Arc<Activity>);

impl Drop for Busy {
    fn drop(&mut self) {
        *self.0.last.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            last: Mutex::new(Instant::now()),
        }
    }

    fn begin(self: &Arc<Self>) -> Busy {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        Busy(self.clone())
    }

    /// Completes once no request has been in progress for `limit`.
    async fn idle_for(&self, limit: Duration) {
        loop {
            let last = *self.last.lock().unwrap_or_else(|p| p.into_inner());
            let busy = self.in_flight.load(Ordering::Relaxed) > 0;
            if !busy && last.elapsed() >= limit {
                return;
            }
            let wake = if busy {
                Instant::now() + limit
            } else {
                last + limit
            };
            tokio::time::sleep_until(wake).await;
        }
    }
}

/// The Host allow-list of the admin listener (DNS rebinding guard): a page whose name is
/// re-pointed at this address makes the browser send its own name as Host, so only IP
/// literals (the kubelet probes the pod IP), `localhost` and the configured names pass.
struct HostGuard {
    names: Vec<String>,
}

impl HostGuard {
    fn new(names: &[String]) -> HostGuard {
        HostGuard {
            names: names
                .iter()
                .map(|n| n.trim_end_matches('.').to_ascii_lowercase())
                .collect(),
        }
    }

    /// Every authority the request names (the one Host header, the `:authority` or
    /// absolute-form target) must be well-formed and allowed.
    fn check(&self, req: &Request<Incoming>) -> Result<(), Refused> {
        self.check_parts(req.version(), req.uri(), req.headers())
    }

    fn check_parts(
        &self,
        version: Version,
        uri: &http::Uri,
        headers: &http::HeaderMap,
    ) -> Result<(), Refused> {
        let mut hosts = headers.get_all(HOST).iter();
        let header = hosts.next();
        if hosts.next().is_some() {
            return Err(refusal(
                StatusCode::BAD_REQUEST,
                "more than one Host header".into(),
            ));
        }
        let target = uri.authority().map(|a| a.as_str().as_bytes());
        let named = [header.map(|h| h.as_bytes()), target];
        if named.iter().all(Option::is_none) && version != Version::HTTP_10 {
            return Err(refusal(StatusCode::BAD_REQUEST, "no Host header".into()));
        }
        for value in named.into_iter().flatten() {
            let host = parse_request_host(value).map_err(|problem| {
                refusal(StatusCode::BAD_REQUEST, format!("the Host {problem}"))
            })?;
            if let RequestHost::Name(name) = host {
                if name != "localhost" && !self.names.contains(&name) {
                    tracing::info!(host = %name, "admin request refused: Host is not a name of the admin listener");
                    return Err(refusal(
                        StatusCode::MISDIRECTED_REQUEST,
                        format!(
                            "Host {name:?} is not a name of this admin listener: \
                             use an IP address, localhost, or a name listed in admin_hosts"
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// A request the admin listener will not answer, and why.
#[derive(Debug, PartialEq, Eq)]
struct Refused {
    status: StatusCode,
    reason: String,
}

impl Refused {
    fn response(&self) -> Response<Full<Bytes>> {
        text(
            self.status,
            format!("mcp-vpce-proxy: admin: {}\n", self.reason),
        )
    }
}

fn refusal(status: StatusCode, reason: String) -> Refused {
    Refused { status, reason }
}

async fn answer(table: &RouteTable, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return text(StatusCode::METHOD_NOT_ALLOWED, "use GET\n".into());
    }
    match req.uri().path() {
        "/healthz" => text(StatusCode::OK, "ok\n".into()),
        "/readyz" => {
            let ready = readiness(table).await;
            let status = if ready.ready {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            json_response(status, serde_json::to_value(&ready).unwrap_or_default())
        }
        "/routes" => json_response(StatusCode::OK, routes_json(table)),
        "/metrics" => {
            for (name, age) in table.dns.answer_ages() {
                metrics()
                    .dns_answer_age_seconds
                    .get_or_create(&NameLabels { name })
                    .set(age.as_secs_f64());
            }
            let mut r = text(StatusCode::OK, metrics().encode());
            r.headers_mut().insert(
                CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found: try /metrics, /healthz, /readyz, /routes\n".into(),
        ),
    }
}

/// The effective routes; credentials only as `Credential::describe` shows them.
pub fn routes_json(table: &RouteTable) -> serde_json::Value {
    let routes: Vec<serde_json::Value> = table
        .routes()
        .map(|r| {
            let c = &r.config;
            json!({
                "name": &*r.name,
                "path": r.path,
                "gateway": c.gateway,
                "endpoint": c.endpoint,
                "addresses": c.addresses,
                "dial": r.dial_description(),
                "require_private": c.require_private,
                "credential": r.credential.describe(),
                "max_body_bytes": c.max_body_bytes,
                "connect_timeout": humantime::format_duration(c.connect_timeout).to_string(),
                "tls_timeout": humantime::format_duration(c.tls_timeout).to_string(),
                "response_timeout": humantime::format_duration(c.response_timeout).to_string(),
                "idle_timeout": humantime::format_duration(c.idle_timeout).to_string(),
                "pool_max_idle": c.pool_max_idle,
                "pool_idle_timeout": humantime::format_duration(c.pool_idle_timeout).to_string(),
            })
        })
        .collect();
    json!({ "routes": routes })
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(
        guard: &HostGuard,
        version: Version,
        uri: &str,
        hosts: &[&str],
    ) -> Option<(u16, String)> {
        let mut headers = http::HeaderMap::new();
        for host in hosts {
            headers.append(
                HOST,
                http::HeaderValue::from_bytes(host.as_bytes()).unwrap(),
            );
        }
        guard
            .check_parts(version, &uri.parse().unwrap(), &headers)
            .err()
            .map(|r| (r.status.as_u16(), r.reason))
    }

    #[test]
    fn admin_hosts_are_ip_literals_localhost_and_the_configured_names() {
        let g = HostGuard::new(&["Proxy.Internal.".to_string()]);
        let h11 = Version::HTTP_11;
        for host in [
            "127.0.0.1:9901",
            "10.1.2.3:9901",
            "[::1]:9901",
            "localhost",
            "LOCALHOST:9901",
            "proxy.internal",
            "proxy.internal.:80",
        ] {
            assert_eq!(check(&g, h11, "/routes", &[host]), None, "{host}");
        }
        let (status, body) = check(&g, h11, "/routes", &["evil.example"]).unwrap();
        assert_eq!(status, 421);
        assert_eq!(
            body,
            "Host \"evil.example\" is not a name of this admin listener: \
             use an IP address, localhost, or a name listed in admin_hosts"
        );
        // Absolute-form targets and h2's :authority count as well.
        assert_eq!(
            check(&g, h11, "http://evil.example/routes", &["127.0.0.1"])
                .unwrap()
                .0,
            421
        );
        assert_eq!(
            check(&g, Version::HTTP_2, "http://evil.example:9901/routes", &[])
                .unwrap()
                .0,
            421
        );
        assert_eq!(
            check(&g, Version::HTTP_2, "http://127.0.0.1:9901/routes", &[]),
            None
        );
        let (status, body) = check(&g, h11, "/routes", &["127.0.0.1", "evil.example"]).unwrap();
        assert_eq!(status, 400);
        assert!(body.contains("more than one Host header"), "{body}");
        assert_eq!(check(&g, h11, "/routes", &[]).unwrap().0, 400);
        assert_eq!(check(&g, Version::HTTP_10, "/routes", &[]), None);
        for bad in [
            "user@localhost",
            "\"localhost\"",
            "localhost, evil.example",
            "127.1",
        ] {
            assert_eq!(check(&g, h11, "/routes", &[bad]).unwrap().0, 400, "{bad}");
        }
    }

    #[tokio::test]
    async fn a_request_in_progress_is_never_idle() {
        let activity = Arc::new(Activity::new());
        let limit = Duration::from_millis(100);
        let busy = activity.begin();
        let idle = tokio::spawn({
            let activity = activity.clone();
            async move { activity.idle_for(limit).await }
        });
        tokio::time::sleep(limit * 5).await;
        assert!(!idle.is_finished(), "idle while a request was in progress");
        drop(busy);
        tokio::time::timeout(Duration::from_secs(30), idle)
            .await
            .expect("idle once the request ended")
            .unwrap();
    }
}
