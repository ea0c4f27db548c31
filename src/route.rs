//! The Route (everything one local path needs to reach its gateway, built once from
//! config) and the route table that the server swaps whole on reload.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use crate::audit::AuditSink;
use crate::auth::{self, Credential};
use crate::config::{parse_address, parse_gateway_url, Config, GatewayUrl, RouteConfig};
use crate::discovery::UrlMap;
use crate::inbound::InboundGuard;
use crate::mcp::layer::RouteLayer;
use crate::metrics::RouteMetrics;
use crate::upstream::client::{self, UpstreamClient};
use crate::upstream::connector::{ConnectionUse, Connector, ConnectorSettings, DialTarget};
use crate::upstream::dns::Dns;
use crate::upstream::tls;
use crate::workers::PerWorker;

/// One worker's upstream pool.
pub struct WorkerPool {
    pub client: UpstreamClient,
    /// Set when a response came over a connection to an address DNS no longer
    /// answers: the following requests capture their connection so that the stale one
    /// can be poisoned (retired) when it serves one. Capturing costs several
    /// allocations per request, so it is done only while this is set.
    pub retiring: AtomicBool,
}

pub struct Route {
    pub name: Arc<str>,
    pub path: String,
    pub gateway: GatewayUrl,
    pub credential: Arc<dyn Credential>,
    pub metrics: Arc<RouteMetrics>,
    /// For passthrough routes: how gateway URLs in OAuth discovery answers map to ours.
    pub url_map: Option<UrlMap>,
    /// The MCP-aware layer: policy, validation, audit, response filtering.
    pub layer: RouteLayer,
    /// One pool per worker thread (see `workers`): a request is forwarded over a
    /// connection driven by its own thread.
    pools: PerWorker<WorkerPool>,
    pub max_body_bytes: u64,
    pub response_timeout: Duration,
    pub idle_timeout: Duration,
    target: DialTarget,
    dns: Arc<Dns>,
    /// The upstream URI for requests without a query string, built once.
    upstream_uri: Uri,
    /// What the route was built from, for `check` and comparisons on reload.
    pub config: RouteConfig,
}

impl Route {
    pub fn build(config: &RouteConfig, dns: &Arc<Dns>, audit: &AuditSink) -> Result<Route, String> {
        let gateway = parse_gateway_url(&config.gateway)?;
        let name = config.display_name();
        let metrics = Arc::new(RouteMetrics::new(&name));
        let target = if !config.addresses.is_empty() {
            DialTarget::Static(
                config
                    .addresses
                    .iter()
                    .map(|a| parse_address(a, gateway.port))
                    .collect::<Result<_, _>>()?,
            )
        } else {
            DialTarget::Name {
                name: config
                    .endpoint
                    .clone()
                    .unwrap_or_else(|| gateway.host.clone()),
                port: gateway.port,
            }
        };
        let extra_roots = match &config.ca_file {
            Some(path) => tls::read_ca_file(path)?,
            None => Vec::new(),
        };
        let connector = Connector::new(ConnectorSettings {
            target: target.clone(),
            gateway_host: gateway.host.clone(),
            metrics: metrics.clone(),
            tls: tls::client_config(&extra_roots)?,
            dns: dns.clone(),
            require_private: config.require_private,
            connect_timeout: config.connect_timeout,
            tls_timeout: config.tls_timeout,
            preferred: config.preferred_ranges.clone(),
        })?;
        let upstream_uri = format!("https://{}{}", gateway.authority, gateway.path)
            .parse()
            .map_err(|e| format!("gateway URL: {e}"))?;
        let credential = auth::build(
            &config.credential,
            &auth::Context {
                route: &name,
                gateway_host: &gateway.host,
            },
        )?;
        let url_map = credential.forwards_caller_authorization().then(|| {
            UrlMap::new(
                &gateway.authority,
                gateway.port,
                &gateway.path,
                &config.path,
            )
        });
        Ok(Route {
            url_map,
            layer: RouteLayer::build(&name, &config.policy, audit)?,
            metrics,
            name: Arc::from(name),
            path: config.path.clone(),
            credential,
            pools: PerWorker::new(|| WorkerPool {
                client: client::build(
                    connector.clone(),
                    config.pool_max_idle,
                    config.pool_idle_timeout,
                ),
                retiring: AtomicBool::new(false),
            }),
            max_body_bytes: config.max_body_bytes,
            response_timeout: config.response_timeout,
            idle_timeout: config.idle_timeout,
            upstream_uri,
            target,
            dns: dns.clone(),
            gateway,
            config: config.clone(),
        })
    }

    /// The pool of the worker running this request.
    pub fn pool(&self) -> &WorkerPool {
        self.pools.get()
    }

    /// The pooled client of the worker running this request.
    pub fn client(&self) -> &UpstreamClient {
        &self.pool().client
    }

    /// The gateway URI for a request that carried `query`.
    pub fn upstream_uri(&self, query: Option<&str>) -> Uri {
        match query {
            None | Some("") => self.upstream_uri.clone(),
            Some(q) => format!("{}?{q}", self.upstream_uri)
                .parse()
                // The query came from a URI that parsed; keep the bare path otherwise.
                .unwrap_or_else(|_| self.upstream_uri.clone()),
        }
    }

    /// True when `connection` should be retired: the name it was resolved from now
    /// answers with other addresses (the endpoint moved). While no DNS answer changed
    /// since the connection was last found current, this is one atomic load.
    pub fn is_stale(&self, connection: &ConnectionUse) -> bool {
        let DialTarget::Name { name, .. } = &self.target else {
            return false;
        };
        let generation = self.dns.generation();
        if connection.current_at() == generation {
            return false;
        }
        match self.dns.answers_with(name, connection.addr.ip()) {
            Some(false) => true,
            _ => {
                connection.still_current_at(generation);
                false
            }
        }
    }

    /// What the connector dials.
    pub fn dial_target(&self) -> &DialTarget {
        &self.target
    }

    /// The gateway URI for another path on the gateway (OAuth discovery documents).
    pub fn upstream_uri_at(&self, path: &str, query: Option<&str>) -> Uri {
        let uri = match query {
            None | Some("") => format!("https://{}{path}", self.gateway.authority),
            Some(q) => format!("https://{}{path}?{q}", self.gateway.authority),
        };
        uri.parse().unwrap_or_else(|_| self.upstream_uri.clone())
    }

    /// The name the connector dials, for logs and `check`.
    pub fn dial_description(&self) -> String {
        if !self.config.addresses.is_empty() {
            format!("static addresses {}", self.config.addresses.join(", "))
        } else if let Some(endpoint) = &self.config.endpoint {
            format!("{endpoint} (VPC endpoint; private DNS off)")
        } else {
            format!("{} (private DNS on)", self.gateway.host)
        }
    }
}

/// Everything a reload swaps at once: the routes by local path and the inbound rules.
pub struct RouteTable {
    pub inbound: InboundGuard,
    /// The resolver every route's connector uses.
    pub dns: Arc<Dns>,
    /// Time an agent has to send a request body (`limits.body_read_timeout`).
    pub body_read_timeout: std::time::Duration,
    by_path: HashMap<String, Arc<Route>>,
    /// Paths in configuration order, for listings.
    order: Vec<String>,
}

impl RouteTable {
    pub fn build(config: &Config, dns: &Arc<Dns>, audit: &AuditSink) -> Result<RouteTable, String> {
        RouteTable::build_reusing(config, dns, audit, None)
    }

    /// Builds the table for `config`, taking over from `previous` every route whose
    /// configuration is unchanged (with its connection pool and cached credential), as
    /// long as the resolver is the same.
    pub fn build_reusing(
        config: &Config,
        dns: &Arc<Dns>,
        audit: &AuditSink,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, String> {
        let previous = previous.filter(|p| Arc::ptr_eq(&p.dns, dns));
        let mut table = RouteTable {
            dns: dns.clone(),
            body_read_timeout: config.limits.body_read_timeout,
            inbound: InboundGuard::build(&config.inbound, config.listen)
                .map_err(|e| format!("inbound: {e}"))?,
            by_path: HashMap::new(),
            order: Vec::new(),
        };
        for (i, route) in config.routes.iter().enumerate() {
            let kept = previous
                .and_then(|p| p.get(&route.path))
                .filter(|old| old.config == *route)
                .cloned();
            let built = match kept {
                Some(old) => old,
                None => Arc::new(
                    Route::build(route, dns, audit).map_err(|e| format!("route[{i}]: {e}"))?,
                ),
            };
            table.order.push(built.path.clone());
            table.by_path.insert(built.path.clone(), built);
        }
        Ok(table)
    }

    pub fn get(&self, path: &str) -> Option<&Arc<Route>> {
        self.by_path.get(path)
    }

    pub fn routes(&self) -> impl Iterator<Item = &Arc<Route>> {
        self.order.iter().filter_map(|p| self.by_path.get(p))
    }

    /// The route the bare well-known discovery paths lead to: the only passthrough
    /// route, if there is exactly one.
    pub fn bare_discovery_route(&self) -> Option<&Arc<Route>> {
        let mut passthrough = self.routes().filter(|r| r.url_map.is_some());
        match (passthrough.next(), passthrough.next()) {
            (Some(only), None) => Some(only),
            _ => None,
        }
    }

    pub fn paths(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }
}
