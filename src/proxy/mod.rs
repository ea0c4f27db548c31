//! One request on its way to the gateway: the route table, forwarding, one attempt at the
//! gateway (`send`, which `doctor` uses too), the request and response bodies, the OAuth
//! discovery rewrite, the one error type of the request path, and the readiness check of
//! the routes.

pub mod body;
pub mod discovery;
pub mod error;
pub mod forward;
pub mod health;
pub mod inbound;
pub mod route;
pub mod send;
