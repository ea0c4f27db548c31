//! The MCP-aware parts of the request path.

pub mod peek;
