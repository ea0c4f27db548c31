//! mcp-vpce-proxy: a sidecar that forwards MCP streamable-HTTP traffic from local agents
//! to Amazon Bedrock AgentCore Gateways over AWS PrivateLink, attaching the gateway
//! credential itself. `docs/architecture.md` draws the data flow.
//!
//! # Module map
//!
//! The folders are the layers, top to bottom; a module uses only the ones below it
//! (`.ci/check_layers.py` fails on any cycle, any upward use, and any use of `cmd`).
//!
//! | path | owns |
//! | --- | --- |
//! | `main.rs`, [`cmd`] | the command line and each subcommand: `run`/`check` ([`cmd::app`]), `doctor`, `demo`, `healthcheck` |
//! | [`listener`] | the accept loop ([`listener::server`]), thread-per-core [`listener::workers`], the [`listener::unix`] socket, the [`listener::admin`] listener, configuration [`listener::reload`] (SIGHUP, `--watch-config`), drain |
//! | [`proxy`] | the inbound guard ([`proxy::inbound`]: client CIDRs, token, Origin/Host), the route table ([`proxy::route`]), forwarding ([`proxy::forward`]), one attempt at the gateway ([`proxy::send`], `doctor`'s too), the OAuth discovery rewrite, readiness ([`proxy::health`]) |
//! | [`config`] | the file schema assembled from the sections the layers below declare, flag/env overrides, one validation pass with one error type ([`config::ConfigError`]); `[inbound]` and the strict authority syntax ([`config::inbound`]) |
//! | [`mcp`] | the MCP layer as two hooks ([`mcp::layer`]: on the request, on the response), SSE scanning, tool policy, list filtering, limits, what a request carries to its response ([`mcp::watch`]) |
//! | [`exchange`] | what `proxy` and `mcp` both speak: the per-request context ([`exchange::context`]), the JSON-RPC message model and its one parse ([`exchange::message`], [`exchange::peek`]), bodies ([`exchange::body`]), the one error type of the request path ([`exchange::error`]) |
//! | [`auth`] | the `Credential` trait, one file per credential source, the shared cache, the redacting [`auth::secret::Secret`] |
//! | [`upstream`] | DNS (with its own config types, [`upstream::config`]), the in-VPC check, connect, TLS (each timed where it happens), the per-worker gateway connections ([`upstream::per_worker`]) |
//! | [`ops`] | metrics, the audit sink, the access line's format, log output, OpenTelemetry traces ([`ops::telemetry`]: the `[telemetry]` table, the request span API, the bounded OTLP export), systemd notifications |
//!
//! # The life of one POST
//!
//! An agent's `POST /mcp` is accepted by [`listener::server`] and served on one worker
//! thread, which hands it to [`proxy::forward::handle`]. There its
//! [`exchange::context::RequestContext`] is made; the inbound guard
//! ([`proxy::inbound`]) checks who is asking and the [`proxy::route::RouteTable`] picks
//! the route by path. The body is read within its budgets ([`exchange::body`]) and parsed
//! once ([`exchange::message::read`]); the route's MCP layer
//! ([`mcp::layer::RouteLayer::on_request`]) validates it and applies the limits and the
//! tool policy, and forwards it, forwards part of a batch, answers, or refuses it. The
//! request is then rewritten for the gateway, given the route's credential from [`auth`],
//! and sent ([`proxy::send`]) through the route's pooled client in [`upstream`], which
//! resolves the endpoint name, refuses addresses outside the in-VPC ranges, connects and
//! does TLS. The answer streams back through the MCP layer's response hook
//! ([`mcp::layer::RouteLayer::on_response`]: tool lists filtered, each call's outcome
//! recorded) with the context riding in its body; when the answer ends — or breaks, or
//! the agent goes away — [`exchange::context::RequestContext::finish`] writes the one
//! access line, counts the request and audits a refusal. Every refusal on the way is an
//! [`exchange::error::ProxyError`] turned into an answer the agent can read.

pub mod auth;
pub mod cmd;
pub mod config;
pub mod exchange;
pub mod listener;
pub mod mcp;
pub mod ops;
pub mod proxy;
pub mod upstream;
