//! Shared fixtures for the integration tests: real parts on loopback only.
//!
//! - `certs`: a throw-away CA and a leaf it signs;
//! - `upstream`: a TLS MCP server standing in for an AgentCore Gateway;
//! - `dns`: a DNS server whose answers tests change at run time;
//! - `client`: the rmcp client side, as the local agent uses it;
//! - `http`, `proxy`, `relay`: raw agent-side HTTP, the proxy under test and
//!   a counting TCP relay (written alongside the proxy).

// Each test binary compiles this module and uses only part of it.
#![allow(dead_code)]

pub mod aws;
pub mod certs;
pub mod client;
pub mod dns;
pub mod http;
pub mod oauth_upstream;
pub mod proxy;
pub mod relay;
pub mod token_server;
pub mod upstream;
