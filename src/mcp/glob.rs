//! Glob patterns over tool and method names: `*` matches any run of characters (also
//! none, also `/` and `___`), `?` exactly one character, everything else itself.
//! Matching is case-sensitive, like the names it is applied to.

/// A compiled pattern. Patterns without wildcards compare as plain strings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    text: String,
    kind: Kind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Exact,
    Prefix,
    Wild,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        if pattern.is_empty() {
            return Err("an empty pattern matches nothing; remove it".into());
        }
        if pattern.chars().any(char::is_control) {
            return Err(format!("{pattern:?} contains control characters"));
        }
        let wild_at = pattern.find(['*', '?']);
        let kind = match wild_at {
            None => Kind::Exact,
            Some(i) if i == pattern.len() - 1 && pattern.ends_with('*') => Kind::Prefix,
            Some(_) => Kind::Wild,
        };
        Ok(Glob {
            text: pattern.to_string(),
            kind,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn matches(&self, name: &str) -> bool {
        match self.kind {
            Kind::Exact => self.text == name,
            Kind::Prefix => name.starts_with(&self.text[..self.text.len() - 1]),
            Kind::Wild => wild_match(self.text.as_bytes(), name.as_bytes()),
        }
    }
}

/// Iterative matching with one backtrack point (the last `*`): linear for the patterns
/// people write, never exponential. `?` matches one UTF-8 character.
fn wild_match(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == b'?' {
            p += 1;
            n += utf8_len(name[n]);
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            // Let the last `*` swallow one more character and retry from there.
            let next = sn + utf8_len(name[sn]);
            star = Some((sp, next));
            p = sp + 1;
            n = next;
        } else {
            return false;
        }
    }
    pattern[p.min(pattern.len())..].iter().all(|&b| b == b'*') && n == name.len()
}

fn utf8_len(first: u8) -> usize {
    match first {
        0xF0..=0xFF => 4,
        0xE0..=0xEF => 3,
        0xC0..=0xDF => 2,
        _ => 1,
    }
}

/// A list of patterns; a name matches the set when it matches any of them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GlobSet(Vec<Glob>);

impl GlobSet {
    /// Compiles `patterns`; `key` names the setting in errors (`route[0].policy.allow_tools`).
    pub fn new(patterns: &[String], key: &str) -> Result<GlobSet, String> {
        patterns
            .iter()
            .enumerate()
            .map(|(i, p)| Glob::new(p).map_err(|e| format!("{key}[{i}]: {e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(GlobSet)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn matches(&self, name: &str) -> bool {
        self.0.iter().any(|g| g.matches(name))
    }

    pub fn patterns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(Glob::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern).unwrap().matches(name)
    }

    #[test]
    fn exact_prefix_and_wildcards() {
        assert!(m("DemoTarget___echo", "DemoTarget___echo"));
        assert!(!m("DemoTarget___echo", "DemoTarget___echo2"));
        assert!(!m("demotarget___echo", "DemoTarget___echo"));
        assert!(m("DemoTarget___*", "DemoTarget___get_weather"));
        assert!(m("DemoTarget___*", "DemoTarget___"));
        assert!(!m("DemoTarget___*", "OtherTarget___get_weather"));
        assert!(m("*___delete_*", "Files___delete_everything"));
        assert!(!m("*___delete_*", "Files___undelete"));
        assert!(m("*", ""));
        assert!(m("*", "anything/at all"));
        assert!(m("resources/*", "resources/read"));
        assert!(!m("resources/*", "tools/list"));
        assert!(m("tools/?ist", "tools/list"));
        assert!(!m("tools/?ist", "tools/ist"));
        assert!(m("*_search", "x_amz_bedrock_agentcore_search"));
        assert!(m("a*b*c", "aXXbYYbZZc"));
        assert!(!m("a*b*c", "aXXbYYbZZ"));
        assert!(m("**", "x"));
        assert!(m("a?c", "aéc"), "? is one character, not one byte");
    }

    #[test]
    fn patterns_that_backtrack_a_lot_stay_fast() {
        let name = "a".repeat(10_000);
        assert!(!m(&format!("{}b", "*a".repeat(50)), &name));
        assert!(m(&"*a".repeat(50), &name));
    }

    #[test]
    fn bad_patterns_are_named() {
        assert!(Glob::new("").is_err());
        assert!(Glob::new("a\nb").is_err());
        let e = GlobSet::new(&["ok".into(), "".into()], "route[0].policy.deny_tools").unwrap_err();
        assert!(e.starts_with("route[0].policy.deny_tools[1]: "), "{e}");
    }
}
