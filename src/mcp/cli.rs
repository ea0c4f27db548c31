//! The policy flags of the zero-file mode.

use clap::Args;

use super::config::PolicyConfig;

#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {}

impl PolicyArgs {
    /// The policy the flags describe, `None` when no policy flag was given.
    pub fn to_config(&self) -> Result<Option<PolicyConfig>, String> {
        Ok(None)
    }
}
