//! The Route (everything one local path needs to reach its gateway, built once from
//! config) and the route table that the server swaps whole on reload.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use http::Uri;

use crate::auth::{self, Credential};
use crate::config::{parse_gateway_url, Config, GatewayUrl, RouteConfig};
use crate::mcp::layer::RouteLayer;
use crate::ops::audit::AuditSink;
use crate::ops::metrics::RouteMetrics;
use crate::proxy::discovery::UrlMap;
use crate::proxy::inbound::InboundGuard;
use crate::proxy::share::Sharing;
use crate::upstream::config::parse_address;
use crate::upstream::connector::{ConnectionUse, Connector, ConnectorSettings, DialTarget};
use crate::upstream::dns::Dns;
use crate::upstream::gateway_conns::{ConnSettings, WorkerConns};
use crate::upstream::per_worker::PerWorker;
use crate::upstream::tls;

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
    /// Coalescing of identical list requests and the cache of their answers (new, and
    /// empty, whenever the route is built: a reload drops the cache).
    pub sharing: Sharing,
    /// One pool per worker thread (see `workers`): a request is forwarded over a
    /// connection driven by its own thread. Shared with the route this one replaced on
    /// reload when the connection settings did not change.
    pools: Arc<PerWorker<Arc<WorkerConns>>>,
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
        Route::build_from(config, dns, audit, None)
    }

    /// Builds the route for `config`, taking over from `previous` (the route that served
    /// the same path before a reload) whatever `config` would build the same again:
    /// - its credential, with the token it has cached, when the credential's table and
    ///   what the credential knows of its route (name, gateway host) are unchanged;
    /// - its upstream pools, with their open connections, when the connection settings
    ///   (see [`same_connections`]) are unchanged and `dns` is the resolver it used.
    ///
    /// So a reload that changes a timeout or a policy does not throw away a valid token
    /// (and call the token endpoint, which may be down) or the warm connections.
    fn build_from(
        config: &RouteConfig,
        dns: &Arc<Dns>,
        audit: &AuditSink,
        previous: Option<&Route>,
    ) -> Result<Route, String> {
        let gateway = parse_gateway_url(&config.gateway)?;
        let name = config.display_name();
        let upstream_uri = format!("https://{}{}", gateway.authority, gateway.path)
            .parse()
            .map_err(|e| format!("gateway URL: {e}"))?;
        let kept_credential = previous
            .filter(|old| {
                old.config.credential == config.credential
                    && *old.name == *name
                    && old.gateway.host == gateway.host
                    // A source that dials through the route's resolver keeps it.
                    && (Arc::ptr_eq(&old.dns, dns)
                        || !old.credential.source_endpoint().is_some_and(|e| e.private))
            })
            .map(|old| old.credential.clone());
        let kept_pools = previous
            .filter(|old| Arc::ptr_eq(&old.dns, dns) && same_connections(&old.config, config));
        let credential_kept = kept_credential.is_some();
        let credential = match kept_credential {
            Some(credential) => credential,
            None => auth::build(
                &config.credential,
                &auth::Context {
                    route: &name,
                    gateway_host: &gateway.host,
                    dns,
                },
            )?,
        };
        let (metrics, target, pools) = match kept_pools {
            Some(old) => (old.metrics.clone(), old.target.clone(), old.pools.clone()),
            None => {
                let metrics = Arc::new(RouteMetrics::new(&name));
                let target = dial_target(config, &gateway)?;
                let pools = pools(config, &gateway, &target, &metrics, dns)?;
                (metrics, target, pools)
            }
        };
        if previous.is_some() {
            tracing::info!(
                route = %name,
                kept_credential = credential_kept,
                kept_connections = kept_pools.is_some(),
                "route rebuilt"
            );
        }
        let url_map = credential.forwards_caller_authorization().then(|| {
            UrlMap::new(
                &gateway.authority,
                gateway.port,
                &gateway.path,
                &config.path,
            )
        });
        let sharing = Sharing::new(&config.traffic, credential.forwards_caller_authorization());
        Ok(Route {
            sharing,
            url_map,
            layer: RouteLayer::build(
                &name,
                &config.policy,
                &config.traffic,
                &config.shaping,
                audit,
            )?,
            metrics,
            name: Arc::from(name),
            path: config.path.clone(),
            credential,
            pools,
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

    /// The gateway connections of the worker running this request.
    pub fn pool(&self) -> &Arc<WorkerConns> {
        self.pools.get()
    }

    /// The gateway URI for a request that carried `query` (a bare `+` written `%2B`).
    pub fn upstream_uri(&self, query: Option<&str>) -> Uri {
        match query {
            None | Some("") => self.upstream_uri.clone(),
            Some(q) => format!("{}?{}", self.upstream_uri, plus_escaped(q))
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
            Some(q) => format!(
                "https://{}{path}?{}",
                self.gateway.authority,
                plus_escaped(q)
            ),
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

/// The query with each `+` written `%2B`. Readers of a query disagree on a bare `+`
/// (a space in form encoding, a plus in RFC 3986; the AWS SDKs differ too), so a SigV4
/// signature over it could be computed one way and checked the other. `%2B` means a
/// plus to every reader, and `aws-sigv4` signs it as such.
fn plus_escaped(query: &str) -> std::borrow::Cow<'_, str> {
    if query.contains('+') {
        query.replace('+', "%2B").into()
    } else {
        query.into()
    }
}

/// What the route's connector dials: the static addresses, or the endpoint's name (the
/// gateway's when private DNS is on).
fn dial_target(config: &RouteConfig, gateway: &GatewayUrl) -> Result<DialTarget, String> {
    Ok(if !config.addresses.is_empty() {
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
    })
}

/// The route's upstream pools, one per worker, over one connector.
fn pools(
    config: &RouteConfig,
    gateway: &GatewayUrl,
    target: &DialTarget,
    metrics: &Arc<RouteMetrics>,
    dns: &Arc<Dns>,
) -> Result<Arc<PerWorker<Arc<WorkerConns>>>, String> {
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
    let settings = ConnSettings {
        idle_timeout: config.pool_idle_timeout,
        max_idle: config.pool_max_idle,
        max_streams: config.max_streams_per_connection.max(1),
        max_connecting: config.max_connecting.max(1),
    };
    Ok(Arc::new(PerWorker::new(|| {
        Arc::new(WorkerConns::new(connector.clone(), settings))
    })))
}

/// Whether two configurations of a route build the same upstream connections (given the
/// same resolver): then a reload keeps the pools and their open connections. Every field
/// is named here, so that a setting added later has to be sorted into one kind or the
/// other.
fn same_connections(a: &RouteConfig, b: &RouteConfig) -> bool {
    let RouteConfig {
        // The connector counts connections under the route's name.
        name: _,
        path: _,
        gateway,
        endpoint,
        addresses,
        ca_file,
        preferred_ranges,
        require_private,
        connect_timeout,
        tls_timeout,
        pool_max_idle,
        pool_idle_timeout,
        max_streams_per_connection,
        max_connecting,
        // Used per request, not by the connections.
        credential: _,
        policy: _,
        traffic: _,
        shaping: _,
        max_body_bytes: _,
        response_timeout: _,
        idle_timeout: _,
    } = a;
    a.display_name() == b.display_name()
        && *gateway == b.gateway
        && *endpoint == b.endpoint
        && *addresses == b.addresses
        && *ca_file == b.ca_file
        && *preferred_ranges == b.preferred_ranges
        && *require_private == b.require_private
        && *connect_timeout == b.connect_timeout
        && *tls_timeout == b.tls_timeout
        && *pool_max_idle == b.pool_max_idle
        && *pool_idle_timeout == b.pool_idle_timeout
        && *max_streams_per_connection == b.max_streams_per_connection
        && *max_connecting == b.max_connecting
}

/// Everything a reload swaps at once: the routes by local path and the inbound rules.
pub struct RouteTable {
    pub inbound: InboundGuard,
    /// The resolver every route's connector uses.
    pub dns: Arc<Dns>,
    /// Where the routes' layers send audit records.
    audit: AuditSink,
    /// Time an agent has to send a request body (`limits.body_read_timeout`).
    pub body_read_timeout: std::time::Duration,
    /// Looked up per request by the agent's path: foldhash, as the metrics' maps (its
    /// keys come from the config only).
    by_path: HashMap<String, Arc<Route>, foldhash::fast::RandomState>,
    /// Paths in configuration order, for listings.
    order: Vec<String>,
    /// See [`RouteTable::bare_discovery_route`]; found once when the table is built, as
    /// every request asks.
    bare_discovery: Option<Arc<Route>>,
}

impl RouteTable {
    /// Where refusals made before a route is chosen are recorded.
    pub fn audit(&self) -> &AuditSink {
        &self.audit
    }

    pub fn build(config: &Config, dns: &Arc<Dns>, audit: &AuditSink) -> Result<RouteTable, String> {
        RouteTable::build_reusing(config, dns, audit, None)
    }

    /// Builds the table for `config`, taking over from `previous` every route whose
    /// configuration is unchanged (with its connection pool and cached credential), as
    /// long as the resolver and the audit sink are the same. A route that changed (or
    /// whose audit sink did) is built again, still keeping its credential and its pools
    /// where their own settings did not change (see `Route::build_from`).
    pub fn build_reusing(
        config: &Config,
        dns: &Arc<Dns>,
        audit: &AuditSink,
        previous: Option<&RouteTable>,
    ) -> Result<RouteTable, String> {
        // Routes hold the audit sink in their layer: a new sink means new layers.
        let same_audit = previous.is_some_and(|p| p.audit.same_as(audit));
        let mut table = RouteTable {
            dns: dns.clone(),
            audit: audit.clone(),
            body_read_timeout: config.limits.body_read_timeout,
            inbound: InboundGuard::build(&config.inbound, config.listen)
                .map_err(|e| format!("inbound: {e}"))?,
            by_path: HashMap::default(),
            order: Vec::new(),
            bare_discovery: None,
        };
        for (i, route) in config.routes.iter().enumerate() {
            let old = previous.and_then(|p| p.get(&route.path));
            let built = match old {
                Some(old) if old.config == *route && Arc::ptr_eq(&old.dns, dns) && same_audit => {
                    old.clone()
                }
                _ => Arc::new(
                    Route::build_from(route, dns, audit, old.map(|o| &**o))
                        .map_err(|e| format!("route[{i}]: {e}"))?,
                ),
            };
            table.order.push(built.path.clone());
            table.by_path.insert(built.path.clone(), built);
        }
        table.bare_discovery = {
            let mut passthrough = table.routes().filter(|r| r.url_map.is_some());
            match (passthrough.next(), passthrough.next()) {
                (Some(only), None) => Some(only.clone()),
                _ => None,
            }
        };
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
        self.bare_discovery.as_ref()
    }

    pub fn paths(&self) -> Vec<&str> {
        self.order.iter().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_plus_in_the_query_is_forwarded_as_percent_2b() {
        assert_eq!(super::plus_escaped("q=a+b&c=1+"), "q=a%2Bb&c=1%2B");
        assert_eq!(super::plus_escaped("q=a%20b"), "q=a%20b");
    }

    use super::*;
    use crate::config::CredentialConfig;
    use crate::upstream::config::DnsConfig;

    fn config(route: RouteConfig) -> Config {
        Config {
            routes: vec![route],
            ..Config::default()
        }
    }

    fn oauth2(scope: Option<&str>) -> CredentialConfig {
        CredentialConfig::Oauth2(crate::auth::config::OAuth2Config {
            token_url: "http://127.0.0.1:9/token".into(),
            client_id: Some("id".into()),
            client_id_env: None,
            client_id_file: None,
            // Any variable that is set: nothing is fetched here.
            client_secret_env: Some("PATH".into()),
            client_secret_file: None,
            scope: scope.map(str::to_string),
            client_auth: Default::default(),
            ca_file: None,
            refresh_margin: Duration::from_secs(60),
            timeout: Duration::from_secs(1),
        })
    }

    /// What a reload from `a` to `b` keeps of the route: (the route whole, its
    /// credential, its pools).
    fn kept(a: RouteConfig, b: RouteConfig, same_dns: bool) -> (bool, bool, bool) {
        kept_with(a, b, same_dns, false)
    }

    fn kept_with(
        a: RouteConfig,
        b: RouteConfig,
        same_dns: bool,
        new_audit: bool,
    ) -> (bool, bool, bool) {
        let dns = Arc::new(
            Dns::new(&DnsConfig {
                servers: vec!["127.0.0.1:9".into()],
                ..DnsConfig::default()
            })
            .unwrap(),
        );
        let audit = AuditSink::default();
        let old = RouteTable::build(&config(a), &dns, &audit).unwrap();
        let new_dns = if same_dns {
            dns.clone()
        } else {
            Arc::new(
                Dns::new(&DnsConfig {
                    servers: vec!["127.0.0.1:10".into()],
                    ..DnsConfig::default()
                })
                .unwrap(),
            )
        };
        let audit = if new_audit {
            AuditSink::start(&crate::ops::audit::AuditConfig {
                to: crate::ops::audit::AuditTo::Stdout,
                ..Default::default()
            })
            .unwrap()
        } else {
            audit
        };
        let new = RouteTable::build_reusing(&config(b), &new_dns, &audit, Some(&old)).unwrap();
        let (old, new) = (old.get("/mcp").unwrap(), new.get("/mcp").unwrap());
        (
            Arc::ptr_eq(old, new),
            Arc::ptr_eq(&old.credential, &new.credential),
            Arc::ptr_eq(&old.pools, &new.pools),
        )
    }

    #[tokio::test]
    async fn a_reload_keeps_what_the_changed_settings_do_not_build() {
        let mut base = RouteConfig::new("https://gw.example.com/mcp");
        base.credential = oauth2(None);
        let with = |change: fn(&mut RouteConfig)| {
            let mut changed = base.clone();
            change(&mut changed);
            changed
        };
        assert_eq!(kept(base.clone(), base.clone(), true), (true, true, true));
        // Per-request settings: the credential and the connections are kept.
        let per_request = with(|r| r.response_timeout = Duration::from_secs(1));
        assert_eq!(kept(base.clone(), per_request, true), (false, true, true));
        let policy = with(|r| r.policy.max_in_flight = 3);
        assert_eq!(kept(base.clone(), policy, true), (false, true, true));
        // Connection settings: new pools, the same credential.
        for change in [
            with(|r| r.pool_idle_timeout = Duration::from_secs(1)),
            with(|r| r.pool_max_idle = 1),
            with(|r| r.connect_timeout = Duration::from_secs(1)),
            with(|r| r.endpoint = Some("vpce-1.example.com".into())),
            with(|r| r.preferred_ranges = vec!["10.0.0.0/24".parse().unwrap()]),
            with(|r| r.require_private = false),
        ] {
            assert_eq!(kept(base.clone(), change, true), (false, true, false));
        }
        // Another audit sink: a new layer, the same credential and pools.
        assert_eq!(
            kept_with(base.clone(), base.clone(), true, true),
            (false, true, true)
        );
        // Another resolver: new pools, the same credential.
        assert_eq!(
            kept(base.clone(), base.clone(), false),
            (false, true, false)
        );
        // The credential's table, or what it knows of its route: a new credential.
        let scope = with(|r| r.credential = oauth2(Some("s")));
        assert_eq!(kept(base.clone(), scope, true), (false, false, true));
        let renamed = with(|r| r.name = Some("other".into()));
        assert_eq!(kept(base.clone(), renamed, true), (false, false, false));
        let gateway = with(|r| r.gateway = "https://gw2.example.com/mcp".into());
        assert_eq!(kept(base.clone(), gateway, true), (false, false, false));
    }
}
