//! Readiness: can every route reach its gateway over PrivateLink right now? A route is
//! ready when its dial name resolves to at least one address the route may dial (an
//! in-VPC one unless `require_private` is off) and its credential can be had.

use serde::Serialize;

use crate::proxy::route::{Route, RouteTable};
use crate::upstream::connector::DialTarget;

#[derive(Debug, Serialize)]
pub struct RouteHealth {
    pub route: String,
    pub ready: bool,
    /// What is missing, when not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct Readiness {
    pub ready: bool,
    pub routes: Vec<RouteHealth>,
}

pub async fn readiness(table: &RouteTable) -> Readiness {
    let mut routes = Vec::new();
    for route in table.routes() {
        routes.push(route_health(table, route).await);
    }
    Readiness {
        ready: routes.iter().all(|r| r.ready),
        routes,
    }
}

async fn route_health(table: &RouteTable, route: &Route) -> RouteHealth {
    let mut missing = Vec::new();
    let allowed = |ip: &std::net::IpAddr| !route.config.require_private || table.dns.in_vpc(*ip);
    match route.dial_target() {
        DialTarget::Static(addrs) => {
            if !addrs.iter().any(|a| allowed(&a.ip())) {
                missing.push("no static address is inside the in-VPC ranges".to_string());
            }
        }
        DialTarget::Name { name, .. } => match table.dns.resolve(name).await {
            Ok(ips) if ips.iter().any(allowed) => {}
            Ok(ips) => {
                let list: Vec<String> = ips.iter().map(|ip| ip.to_string()).collect();
                missing.push(format!(
                    "{name} resolves only outside the in-VPC ranges ({})",
                    list.join(", ")
                ));
            }
            Err(e) => missing.push(e.to_string()),
        },
    }
    if let Err(e) = route.credential.ready() {
        missing.push(format!("credential: {e}"));
    }
    RouteHealth {
        route: route.name.to_string(),
        ready: missing.is_empty(),
        missing,
    }
}
