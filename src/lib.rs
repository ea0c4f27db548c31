//! mcp-vpce-proxy: a sidecar that forwards MCP streamable-HTTP traffic from local agents
//! to Amazon Bedrock AgentCore Gateways over AWS PrivateLink, attaching the gateway
//! credential itself. `docs/architecture.md` draws the data flow.
//!
//! # Module map
//!
//! The folders are the layers, top to bottom; a module uses the ones below it
//! (`.ci/check_layers.py` checks that nothing uses `cmd` and lists the few uses that still
//! run upward).
//!
//! | path | owns |
//! | --- | --- |
//! | `main.rs`, [`cmd`] | the command line and each subcommand: `run`/`check` ([`cmd::app`]), `doctor`, `demo`, `healthcheck` |
//! | [`listener`] | the accept loop ([`listener::server`]), thread-per-core [`listener::workers`], the [`listener::unix`] socket, the [`listener::admin`] listener, configuration [`listener::reload`] (SIGHUP, `--watch-config`), drain |
//! | [`proxy`] | the inbound guard ([`proxy::inbound`]: client CIDRs, token, Origin/Host), the route table ([`proxy::route`]), forwarding ([`proxy::forward`]), one attempt at the gateway ([`proxy::send`], `doctor`'s too), request and response bodies ([`exchange::body`]), the OAuth discovery rewrite, the one error type of the request path ([`exchange::error`]), readiness ([`proxy::health`]) |
//! | [`mcp`] | JSON-RPC parsing, SSE scanning, tool policy, list filtering, limits, the per-request MCP state ([`mcp::watch`]) |
//! | [`auth`] | the `Credential` trait, one file per credential source, the shared cache, the redacting [`auth::secret::Secret`] |
//! | [`upstream`] | DNS (with its own config types, [`upstream::config`]), the in-VPC check, connect, TLS, the per-worker gateway connections ([`upstream::per_worker`]) |
//! | [`ops`] | metrics, the audit sink, the access log, log output, systemd notifications |
//! | [`config`] | the file schema, flag/env overrides, one validation pass at load with one error type ([`config::ConfigError`]); `[inbound]` and the strict authority syntax ([`config::inbound`]) |
//!
//! # The life of one POST
//!
//! An agent's `POST /mcp` is accepted by [`listener::server`] and served on one worker
//! thread, which hands it to [`proxy::forward`]. There the inbound guard
//! ([`proxy::inbound`]) checks who is asking and the [`proxy::route::RouteTable`] picks
//! the route by path; the body is read within its budgets ([`exchange::body`]), and the
//! [`mcp`] layer parses the JSON-RPC message(s) and applies the route's tool policy,
//! answering a refused call itself. The request is then
//! rewritten for the gateway, given the route's credential from [`auth`], and sent through
//! the route's pooled client in [`upstream`], which resolves the endpoint name, refuses
//! addresses outside the in-VPC ranges, connects and does TLS. The response streams back
//! unchanged, except for `tools/list` answers that policy filters and SSE events that the
//! [`mcp`] layer scans as they pass; every refusal on the way is a
//! [`exchange::error::ProxyError`] turned into an answer the agent can read. When the
//! response is done, [`ops::access_log`] writes its line, [`ops::metrics`] count it and
//! [`ops::audit`] records a `tools/call`.

pub mod auth;
pub mod cmd;
pub mod config;
pub mod exchange;
pub mod listener;
pub mod mcp;
pub mod ops;
pub mod proxy;
pub mod upstream;
