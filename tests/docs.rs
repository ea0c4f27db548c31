//! The documentation holds together: every relative link in README.md, docs/**/*.md,
//! bench/README.md and CHANGELOG.md names a file or directory that exists, the README
//! stays a front page (at most 300 lines), and docs/ holds the reference.
//!
//! Only std: this is its own small test binary, with no fixtures.

use std::fs;
use std::path::{Path, PathBuf};

const README_MAX_LINES: usize = 300;
const DOCS_MIN_FILES: usize = 4;

/// The repository root: Cargo's manifest directory, or the current directory when the
/// file is compiled by hand (`rustc --test tests/docs.rs`, run from the root).
fn root() -> PathBuf {
    match option_env!("CARGO_MANIFEST_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => std::env::current_dir().expect("current directory"),
    }
}

/// Every `.md` file under `dir`, recursively, in a stable order.
fn markdown_under(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(entries) = fs::read_dir(dir) else {
        return found;
    };
    let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    paths.sort();
    for path in paths {
        if path.is_dir() {
            found.extend(markdown_under(&path));
        } else if path.extension().is_some_and(|e| e == "md") {
            found.push(path);
        }
    }
    found
}

/// The documents whose links are checked.
fn documents(root: &Path) -> Vec<PathBuf> {
    let mut docs = vec![root.join("README.md")];
    docs.extend(markdown_under(&root.join("docs")));
    for optional in ["bench/README.md", "CHANGELOG.md"] {
        let path = root.join(optional);
        if path.is_file() {
            docs.push(path);
        }
    }
    docs
}

/// The targets of inline links, `](target)`, with the line each is on. Text inside
/// fenced code blocks is skipped; a title after the target (`](a.md "title")`) and
/// angle brackets (`](<a b.md>)`) are handled.
fn link_targets(text: &str) -> Vec<(usize, String)> {
    let mut targets = Vec::new();
    let mut in_fence = false;
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("```") {
            in_fence = !in_fence;
            continue;
        }
        if in_fence {
            continue;
        }
        let mut rest = line;
        while let Some(start) = rest.find("](") {
            let after = &rest[start + 2..];
            let Some(end) = after.find(')') else { break };
            let raw = after[..end].trim();
            let target = match raw.strip_prefix('<') {
                Some(inner) => inner.split('>').next().unwrap_or(""),
                None => raw.split_whitespace().next().unwrap_or(""),
            };
            targets.push((index + 1, target.to_string()));
            rest = &after[end + 1..];
        }
    }
    targets
}

/// Links to check: not external, not mailto, not a fragment of the same page.
fn is_relative(target: &str) -> bool {
    !(target.is_empty()
        || target.contains("://")
        || target.starts_with("mailto:")
        || target.starts_with('#'))
}

#[test]
fn every_relative_link_resolves() {
    let root = root();
    let mut broken = Vec::new();
    let mut checked = 0;
    for doc in documents(&root) {
        let text = fs::read_to_string(&doc)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", doc.display()));
        let dir = doc.parent().expect("a document has a directory");
        for (line, target) in link_targets(&text) {
            if !is_relative(&target) {
                continue;
            }
            let path = target.split('#').next().unwrap_or("");
            let path = path.split('?').next().unwrap_or("");
            if path.is_empty() {
                continue;
            }
            checked += 1;
            if !dir.join(path).exists() {
                let shown = doc.strip_prefix(&root).unwrap_or(&doc);
                broken.push(format!("{}:{line}: {target}", shown.display()));
            }
        }
    }
    assert!(
        checked > 0,
        "no relative links found: is the root right ({})?",
        root.display()
    );
    assert!(
        broken.is_empty(),
        "{} broken relative link(s) (path relative to the file that holds it):\n  {}",
        broken.len(),
        broken.join("\n  ")
    );
}

#[test]
fn the_readme_is_a_front_page() {
    let readme = root().join("README.md");
    let text = fs::read_to_string(&readme).expect("README.md");
    let lines = text.lines().count();
    assert!(
        lines <= README_MAX_LINES,
        "README.md has {lines} lines; at most {README_MAX_LINES}: move reference material to docs/"
    );
}

#[test]
fn docs_holds_the_reference() {
    let docs = markdown_under(&root().join("docs"));
    assert!(
        docs.len() >= DOCS_MIN_FILES,
        "docs/ holds {} .md files; expected at least {DOCS_MIN_FILES}: {docs:?}",
        docs.len()
    );
}

#[test]
fn link_extraction_reads_titles_brackets_and_skips_code() {
    let text = "see [a](docs/a.md#x) and [b](<b c.md>) [t](t.md \"title\")\n\
                ```\n[not](checked.md)\n```\n[web](https://example.com) [m](mailto:x@y)";
    let targets: Vec<String> = link_targets(text).into_iter().map(|(_, t)| t).collect();
    assert_eq!(
        targets,
        [
            "docs/a.md#x",
            "b c.md",
            "t.md",
            "https://example.com",
            "mailto:x@y"
        ]
    );
    let relative: Vec<&String> = targets.iter().filter(|t| is_relative(t)).collect();
    assert_eq!(relative, ["docs/a.md#x", "b c.md", "t.md"]);
}
