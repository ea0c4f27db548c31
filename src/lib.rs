//! mcp-vpce-proxy: a sidecar that forwards MCP streamable-HTTP traffic from local agents
//! to Amazon Bedrock AgentCore Gateways over AWS PrivateLink, attaching the gateway
//! credential itself. See DESIGN.md in the shared folder for the data flow.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod audit;
pub mod auth;
pub mod body;
pub mod cli;
pub mod config;
pub mod demo;
pub mod discovery;
pub mod doctor;
pub mod error;
pub mod health;
pub mod healthcheck;
pub mod inbound;
pub mod logging;
pub mod mcp;
pub mod metrics;
pub mod proxy;
pub mod route;
pub mod secret;
pub mod server;
pub mod systemd;
pub mod upstream;
pub mod watch;
pub mod workers;
