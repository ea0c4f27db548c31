//! The MCP-aware parts of the request path.

pub mod cli;
pub mod config;
pub mod glob;
pub mod ids;
pub mod layer;
pub mod limits;
pub mod lists;
pub mod mirrored;
pub mod policy;
pub mod probe;
pub mod response;
pub mod shaping;
pub mod sse;
pub mod throttle;
pub mod tools_filter;
pub mod traffic;
pub mod watch;
