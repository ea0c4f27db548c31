//! The repository's own files as a user gets them (deploy/, docs/, config/), and the
//! external tools the deploy checks use.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A path inside the repository.
pub fn repo(path: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(path)
}

/// A repository file's text.
pub fn read(path: &str) -> String {
    std::fs::read_to_string(repo(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Whether `name` is on the PATH. Under CI (`CI` set), `.ci/run` installs every tool the
/// deploy checks use, so a missing one fails the test instead of skipping its part.
pub fn tool(name: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {name}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found && std::env::var_os("CI").is_some() {
        panic!("{name} is not installed, and under CI .ci/run installs it");
    }
    if !found {
        println!("note: {name} is not installed; the checks that need it are skipped");
    }
    found
}

/// The fenced code block that follows the line `<!-- {marker} -->` in a Markdown file:
/// the docs mark the blocks the tests run, so that what a user copies is what is tested.
pub fn marked_block(doc: &str, marker: &str) -> String {
    let text = read(doc);
    let tag = format!("<!-- {marker} -->");
    let after = text
        .split_once(&tag)
        .unwrap_or_else(|| panic!("{doc} has no {tag}"))
        .1;
    let mut lines = after.lines().skip_while(|l| l.trim().is_empty());
    let fence = lines.next().unwrap_or_default();
    assert!(
        fence.starts_with("```"),
        "{doc}: {tag} is not followed by a code block"
    );
    let body: Vec<&str> = lines.take_while(|l| !l.starts_with("```")).collect();
    body.join("\n") + "\n"
}
