//! One request on its way to the gateway: the inbound guard, the route table, forwarding,
//! one attempt at the gateway (`send`, which `doctor` uses too), the sharing of list
//! answers (`share`: coalescing and the cache), the OAuth discovery rewrite, and the
//! readiness check of the routes.

pub mod answer_cache;
pub mod coalesce;
pub mod discovery;
pub mod forward;
pub mod health;
pub mod inbound;
pub mod route;
pub mod send;
pub mod share;
pub mod shared_answer;
