//! The integration tests, linked as one test binary (`cargo test --test it`): one
//! module per capability, each the file of the same name beside this one, and
//! `common` the shared fixtures (loopback upstreams, DNS, the proxy in-process or as
//! a child process). One binary links once instead of once per file.
//!
//! All modules share this process: a test must not change process-wide state (the
//! environment, the working directory) and, where it asserts on process-wide
//! metrics, must use route names of its own or run the proxy as a child process.

mod common;

mod admin_and_command_security;
mod audit;
mod cli;
mod configuration;
mod credentials_agentcore_identity;
mod credentials_cognito;
mod credentials_command;
mod credentials_flags;
mod credentials_oauth2;
mod credentials_secrets;
mod credentials_secrets_manager;
mod credentials_sigv4;
mod demo_gateway;
mod deploy_ecs;
mod deploy_files;
mod deploy_kubernetes;
mod deploy_systemd;
mod doctor;
mod error_sources;
mod faults_credentials;
mod faults_dns;
mod faults_idle_close;
mod faults_shutdown;
mod faults_timeouts;
mod faults_upstream_resets;
mod faults_zones;
mod fixtures_selftest;
mod forwarding;
mod gateway_h2_limits;
mod gateway_throttling;
mod gateway_writes;
mod healthcheck;
mod hostile_agent_bounds;
mod hostile_config_injection;
mod hostile_endless_body;
mod hostile_h2_rapid_reset;
mod hostile_header_flood;
mod hostile_hop_by_hop;
mod hostile_open_proxy;
mod hostile_pipelined_garbage;
mod hostile_slowloris;
mod hostile_smuggling;
mod inbound_security;
mod list_sharing;
mod listener_exhaustion;
mod local_shaping;
mod metrics;
mod passthrough_discovery;
mod policy_bypasses;
mod pooling;
mod private_link;
mod rate_limits;
mod readiness;
mod refusals;
mod reload;
mod reload_and_dns_state;
mod request_lifecycle;
mod request_validation;
mod safe_retries;
mod shutdown;
mod tool_policy;
mod tracing;
mod unix_socket;
mod upgrade_notes;
mod upstream_identity;
mod workers;
