//! The tool and method policy of one route, compiled from `[route.policy]`.

use super::config::PolicyConfig;
use super::glob::GlobSet;

/// The gateway's built-in semantic search tool: its results describe other tools.
pub const SEARCH_TOOL: &str = "x_amz_bedrock_agentcore_search";

/// Which tools the agent may see and call: deny wins; no lists allow everything.
///
/// The agent chooses the names it sends, and a gateway may be lenient about case or
/// spaces, so a rule must not hinge on spelling: deny patterns also match the name
/// trimmed and in lower case (`secret___x` and `" Secret___x"` are denied by
/// `Secret___*`), allow patterns match the exact name only, and a name with whitespace or
/// control characters anywhere is never allowed (no gateway tool is named that way).
#[derive(Debug, Clone, Default)]
pub struct ToolPolicy {
    allow: GlobSet,
    deny: GlobSet,
    /// `deny` in lower case, matched against the folded name.
    deny_folded: GlobSet,
}

impl ToolPolicy {
    pub fn new(config: &PolicyConfig) -> Result<ToolPolicy, String> {
        let folded: Vec<String> = config.deny_tools.iter().map(|p| p.to_lowercase()).collect();
        Ok(ToolPolicy {
            allow: GlobSet::new(&config.allow_tools, "policy.allow_tools")?,
            deny: GlobSet::new(&config.deny_tools, "policy.deny_tools")?,
            deny_folded: GlobSet::new(&folded, "policy.deny_tools")?,
        })
    }

    /// True when some tool may be refused (so answers listing tools need filtering).
    pub fn is_active(&self) -> bool {
        !self.allow.is_empty() || !self.deny.is_empty()
    }

    pub fn allows(&self, tool: &str) -> bool {
        if !self.is_active() {
            return true;
        }
        if name_problem(tool).is_some() {
            return false;
        }
        let denied = self.deny.matches(tool) || self.deny_folded.matches(&fold(tool));
        !denied && (self.allow.is_empty() || self.allow.matches(tool))
    }

    /// A tool name that is the search tool in another spelling counts as the search tool:
    /// its results list tools and are filtered like the search tool's.
    pub fn is_search(tool: &str) -> bool {
        // `fold(tool) == SEARCH_TOOL`, compared char by char: no copy of the name on
        // every call (the same Unicode lowercasing, so `K` (U+212A) is still `k`).
        tool.trim()
            .chars()
            .flat_map(char::to_lowercase)
            .eq(SEARCH_TOOL.chars())
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

/// Why a tool name can never be allowed while a policy is on, if it cannot.
pub fn name_problem(tool: &str) -> Option<&'static str> {
    if tool.is_empty() {
        Some("the tool name is empty")
    } else if tool.chars().any(|c| c.is_whitespace() || c.is_control()) {
        Some("the tool name contains whitespace or control characters")
    } else {
        None
    }
}

/// A method that imitates an MCP method by case or by spaces (`Tools/Call`, `" tools/list"`)
/// or carries whitespace or control characters: a gateway lenient about spelling would run
/// it as the method it resembles, outside the policy's view. Returns the method it
/// resembles (for tests and logs), or `"(none)"` for a name no MCP method has.
pub fn method_problem(method: &str) -> Option<&'static str> {
    let trimmed = method.trim();
    if let Some(known) = crate::ops::metrics::MCP_METHODS
        .iter()
        .find(|k| **k != method && k.eq_ignore_ascii_case(trimmed))
    {
        return Some(known);
    }
    method
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
        .then_some("(none)")
}

/// The name as a lenient gateway might read it.
fn fold(tool: &str) -> String {
    tool.trim().to_lowercase()
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
    fn names_that_differ_in_case_or_spaces_are_denied_like_the_name_they_imitate() {
        let p = policy(&["Demo___*", "Secret___read"], &["Secret___*"]);
        for name in [
            "Secret___read",
            "secret___read",
            "SECRET___READ",
            " Secret___read",
            "Secret___read ",
            "Secret___read\t",
            "Secret___read\u{0}",
            "Demo___echo\n",
            "",
        ] {
            assert!(!p.allows(name), "{name:?}");
        }
        assert!(p.allows("Demo___echo"));
        assert!(
            !p.allows("demo___echo"),
            "allow patterns match the exact name"
        );
        assert!(name_problem(" x").is_some());
        assert!(name_problem("x").is_none());
        assert!(ToolPolicy::is_search("X_AMZ_BEDROCK_AGENTCORE_SEARCH "));
        assert!(!ToolPolicy::is_search("x_amz_bedrock_agentcore_search2"));
        // Unicode lowercasing, as `fold`: the Kelvin sign lowercases to `k`.
        assert!(ToolPolicy::is_search(
            "x_amz_bedroc\u{212A}_agentcore_search"
        ));
        assert!(!ToolPolicy::is_search("x_amz_bedrock_agentcore_searc"));
    }

    #[test]
    fn methods_that_imitate_mcp_methods_are_named() {
        assert_eq!(method_problem("Tools/Call"), Some("tools/call"));
        assert_eq!(method_problem(" tools/list"), Some("tools/list"));
        assert_eq!(method_problem("tools/list\n"), Some("tools/list"));
        assert_eq!(method_problem("LOGGING/SETLEVEL"), Some("logging/setLevel"));
        assert_eq!(method_problem("x y"), Some("(none)"));
        assert_eq!(method_problem("tools/call"), None);
        assert_eq!(method_problem("vendor/custom"), None);
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
