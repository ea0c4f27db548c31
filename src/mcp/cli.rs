//! The policy flags of the zero-file mode.

use clap::Args;

use super::config::PolicyConfig;

#[derive(Debug, Clone, Default, Args)]
pub struct PolicyArgs {
    /// Tool the agent may see and call (glob, e.g. 'DemoTarget___*'); repeatable.
    /// Without any, every tool not denied is allowed.
    #[arg(
        long = "allow-tool",
        env = "MCP_VPCE_PROXY_ALLOW_TOOL",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub allow_tools: Vec<String>,
    /// Tool the agent may never see or call (glob); repeatable; wins over --allow-tool.
    #[arg(
        long = "deny-tool",
        env = "MCP_VPCE_PROXY_DENY_TOOL",
        value_name = "GLOB",
        value_delimiter = ','
    )]
    pub deny_tools: Vec<String>,
}

impl PolicyArgs {
    /// The policy the flags describe, `None` when no policy flag was given.
    pub fn to_config(&self) -> Result<Option<PolicyConfig>, String> {
        if self.allow_tools.is_empty() && self.deny_tools.is_empty() {
            return Ok(None);
        }
        let trimmed = |list: &[String]| -> Vec<String> {
            list.iter()
                .map(|p| p.trim().to_string())
                .filter(|p| !p.is_empty())
                .collect()
        };
        let config = PolicyConfig {
            allow_tools: trimmed(&self.allow_tools),
            deny_tools: trimmed(&self.deny_tools),
            ..PolicyConfig::default()
        };
        config
            .validate()
            .map_err(|e| format!("--allow-tool/--deny-tool: {e}"))?;
        Ok(Some(config))
    }
}
