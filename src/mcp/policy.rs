//! The tool and method policy of one route, compiled from `[route.policy]`.

use super::config::PolicyConfig;
use super::glob::GlobSet;

/// The gateway's built-in semantic search tool: its results describe other tools.
pub const SEARCH_TOOL: &str = "x_amz_bedrock_agentcore_search";

/// Which tools the agent may see and call: deny wins; no lists allow everything.
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    allow: GlobSet,
    deny: GlobSet,
}

impl ToolPolicy {
    pub fn new(config: &PolicyConfig) -> Result<ToolPolicy, String> {
        Ok(ToolPolicy {
            allow: GlobSet::new(&config.allow_tools, "policy.allow_tools")?,
            deny: GlobSet::new(&config.deny_tools, "policy.deny_tools")?,
        })
    }

    /// True when some tool may be refused (so answers listing tools need filtering).
    pub fn is_active(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    pub fn allows(&self, tool: &str) -> bool {
        !self.deny.matches(tool) && (self.allow.is_empty() || self.allow.matches(tool))
    }

    /// For `check` and logs: `allow [a, b]; deny [c]`.
    pub fn describe(&self) -> String {
        let list = |set: &GlobSet| set.patterns().collect::<Vec<_>>().join(", ");
        match (self.allow.is_empty(), self.deny.is_empty()) {
            (true, true) => "every tool".into(),
            (false, true) => format!("allow [{}]", list(&self.allow)),
            (true, false) => format!("every tool but [{}]", list(&self.deny)),
            (false, false) => format!(
                "allow [{}] except [{}]",
                list(&self.allow),
                list(&self.deny)
            ),
        }
    }
}

/// Which JSON-RPC methods the agent may send; no list allows every method.
/// Responses the agent sends back to the gateway (to sampling or elicitation requests)
/// carry no method and are not subject to it.
#[derive(Debug, Clone, Default)]
pub struct MethodPolicy {
    allow: GlobSet,
}

impl MethodPolicy {
    pub fn new(config: &PolicyConfig) -> Result<MethodPolicy, String> {
        Ok(MethodPolicy {
            allow: GlobSet::new(&config.allow_methods, "policy.allow_methods")?,
        })
    }

    pub fn is_active(&self) -> bool {
        !self.allow.is_empty()
    }

    pub fn allows(&self, method: &str) -> bool {
        self.allow.is_empty() || self.allow.matches(method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str], deny: &[&str]) -> ToolPolicy {
        ToolPolicy::new(&PolicyConfig {
            allow_tools: allow.iter().map(|s| s.to_string()).collect(),
            deny_tools: deny.iter().map(|s| s.to_string()).collect(),
            ..PolicyConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn no_lists_allow_everything() {
        let p = policy(&[], &[]);
        assert!(!p.is_active());
        assert!(p.allows("Anything___at_all"));
    }

    #[test]
    fn deny_wins_over_allow() {
        let p = policy(&["DemoTarget___*"], &["*___delete_*"]);
        assert!(p.is_active());
        assert!(p.allows("DemoTarget___echo"));
        assert!(!p.allows("DemoTarget___delete_all"));
        assert!(!p.allows("OtherTarget___echo"));
        let only_deny = policy(&[], &["OtherTarget___*"]);
        assert!(only_deny.allows("DemoTarget___echo"));
        assert!(!only_deny.allows("OtherTarget___echo"));
        assert_eq!(p.describe(), "allow [DemoTarget___*] except [*___delete_*]");
    }

    #[test]
    fn methods() {
        let m = MethodPolicy::new(&PolicyConfig {
            allow_methods: vec!["initialize".into(), "tools/*".into()],
            ..PolicyConfig::default()
        })
        .unwrap();
        assert!(m.allows("tools/call"));
        assert!(!m.allows("resources/read"));
        assert!(MethodPolicy::default().allows("resources/read"));
    }
}
