//! The generation of a route's lists (tools, prompts, resources): bumped whenever a
//! `notifications/*/list_changed` passes through the route (on any answer or stream the
//! MCP layer watches), so that answers kept from before (the proxy's cache of MCP
//! 2026-07-28 list answers) are known to be stale.

use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Debug, Default)]
pub struct Lists {
    generation: AtomicU64,
}

impl Lists {
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A list changed: everything kept from an earlier generation is stale.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        tracing::debug!("a list_changed notification passed; cached list answers dropped");
    }
}
