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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        policy: PolicyArgs,
    }

    #[test]
    fn flags_repeat_and_the_variables_take_lists() {
        let cli = Cli::try_parse_from([
            "x",
            "--allow-tool",
            "DemoTarget___*",
            "--allow-tool",
            "x_amz_bedrock_agentcore_search",
            "--deny-tool",
            "*___delete_*",
        ])
        .unwrap();
        let config = cli.policy.to_config().unwrap().unwrap();
        assert_eq!(
            config.allow_tools,
            ["DemoTarget___*", "x_amz_bedrock_agentcore_search"]
        );
        assert_eq!(config.deny_tools, ["*___delete_*"]);
        assert!(
            config.validate,
            "the other policy settings keep their defaults"
        );

        // The comma-separated MCP_VPCE_PROXY_*_TOOL variables are read by the binary in
        // tests/it/cli.rs: setting them here would race with the other tests of this
        // process that parse a command line.
        assert_eq!(
            Cli::try_parse_from(["x"]).unwrap().policy.to_config(),
            Ok(None)
        );
    }
}
