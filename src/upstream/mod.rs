//! Everything between a forwarded request and the gateway's socket: name resolution,
//! the in-VPC check, TCP, TLS, and the pooled HTTP client of each route.

pub mod client;
pub mod coalesce;
pub mod config;
pub mod connector;
pub mod dns;
pub mod gateway_conns;
pub mod per_worker;
pub mod tls;
