//! Everything between a forwarded request and the gateway's socket: name resolution,
//! the in-VPC check, TCP, TLS, and each worker's connections to each route's gateway.

pub mod coalesce;
pub mod config;
pub mod connector;
pub mod content_length;
pub mod dns;
pub mod gateway_conns;
pub mod h2_stream;
pub mod header_names;
pub mod per_worker;
pub mod quiet;
pub mod tls;
