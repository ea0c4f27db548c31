//! The MCP-aware parts of the request path.

pub mod cli;
pub mod config;
pub mod glob;
pub mod ids;
pub mod layer;
pub mod limits;
pub mod mirrored;
pub mod policy;
pub mod probe;
pub mod response;
pub mod sse;
pub mod tools_filter;
pub mod watch;
