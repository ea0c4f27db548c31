//! One exchange with an agent, in the words both the proxy and the MCP layer speak: the
//! JSON-RPC message model of a POST body (one parse, [`message`], and its view,
//! [`peek`]), the request and response bodies with their budgets ([`body`]), the one
//! error type of the request path and the answers made of it ([`error`]), and the
//! per-request context that records the exchange and writes its access line, metrics and
//! audit record once ([`context`]).
//!
//! This layer sits below `mcp` so that the MCP layer can answer, refuse and record
//! without reaching up into `proxy`.

pub mod body;
pub mod context;
pub mod error;
pub mod message;
pub mod peek;
