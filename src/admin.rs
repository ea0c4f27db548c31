//! The admin listener: `/metrics` (Prometheus text), `/healthz` (the process runs),
//! `/readyz` (every route can reach its gateway over PrivateLink and has a credential),
//! `/routes` (the effective routes, secrets as fingerprints). Separate from the agent
//! listener so that probes and scrapes never compete with MCP traffic.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde_json::json;
use tokio::net::TcpListener;

use crate::health::readiness;
use crate::metrics::{metrics, NameLabels};
use crate::route::RouteTable;

pub struct Admin {
    listener: TcpListener,
    routes: Arc<ArcSwap<RouteTable>>,
}

impl Admin {
    pub async fn bind(addr: SocketAddr, routes: Arc<ArcSwap<RouteTable>>) -> Result<Admin, String> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| format!("cannot listen on {addr} (admin): {e}"))?;
        Ok(Admin { listener, routes })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tracing::info!(admin = %self.local_addr(), "admin listening");
        tokio::pin!(shutdown);
        loop {
            let stream = tokio::select! {
                _ = &mut shutdown => break,
                accepted = self.listener.accept() => match accepted {
                    Ok((stream, _)) => stream,
                    Err(e) => {
                        tracing::warn!("admin accept failed: {e}");
                        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            let routes = self.routes.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req| {
                    let table = routes.load_full();
                    async move { Ok::<_, Infallible>(answer(&table, req).await) }
                });
                let _ = auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    }
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
