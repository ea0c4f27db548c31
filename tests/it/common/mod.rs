//! Shared fixtures for the integration tests: real parts on loopback only.
//!
//! - `certs`: a throw-away CA and a leaf it signs;
//! - `upstream`: a TLS MCP server standing in for an AgentCore Gateway;
//! - `dns`: a DNS server whose answers tests change at run time;
//! - `client`: the rmcp client side, as the local agent uses it;
//! - `http`, `proxy`, `relay`: raw agent-side HTTP, the proxy under test and
//!   a counting TCP relay (written alongside the proxy);
//! - `faulty_upstream`, `agents`, `proxy_process`: a TLS upstream that misbehaves on
//!   script, agents that read answers frame by frame or keep calling meanwhile, and the
//!   proxy binary as a child process (signals, memory) — for the faults_*/hostile_* tests;
//! - `aws_api`, `cognito`, `secret_store`: AWS JSON 1.1 services on loopback HTTPS that
//!   check each request against botocore's model (tests/aws_models/) — Cognito's
//!   GetClientToken, Secrets Manager and SSM;
//! - `scripted_upstream`, `scripted_gateway`: a TLS gateway whose every answer the test
//!   writes (optionally held until released), and the proxy in front of it with one
//!   reloadable route and its metrics;
//! - `h2_gateway`: an HTTP/2-only TLS gateway on the `h2` crate's server (its own
//!   SETTINGS_MAX_CONCURRENT_STREAMS, held answers, REFUSED_STREAM, GOAWAY on demand);
//! - `otlp`: an OTLP/HTTP receiver recording the spans the proxy exports.

pub mod agents;
pub mod aws;
pub mod aws_api;
pub mod binary;
pub mod certs;
pub mod client;
pub mod cognito;
pub mod dns;
pub mod faulty_upstream;
pub mod h2_gateway;
pub mod http;
pub mod oauth_upstream;
pub mod otlp;
pub mod proxy;
pub mod proxy_process;
pub mod relay;
pub mod repo_files;
pub mod scripted_gateway;
pub mod scripted_upstream;
pub mod secret_store;
pub mod tls_records;
pub mod token_server;
pub mod upstream;
