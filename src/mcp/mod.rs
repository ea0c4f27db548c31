//! The MCP-aware parts of the request path.

pub mod cli;
pub mod config;
pub mod layer;
pub mod peek;
