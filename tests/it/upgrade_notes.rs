//! The upgrade and rollback notes (docs/deploy.md, CHANGELOG.md) hold: the changelog's
//! newest entry is the crate's version, and a binary given a configuration with keys it
//! does not know — an older binary with a newer configuration — refuses it, naming the
//! key, in every table, as the notes say. (A reload with such a file keeps the running
//! configuration: reload::sighup_with_an_invalid_file_keeps_the_configuration_in_force.)

use crate::common::binary::{proxy, run};
use crate::common::repo_files::read;

#[test]
fn the_changelog_starts_with_this_version() {
    let changelog = read("CHANGELOG.md");
    let newest = changelog
        .lines()
        .find(|l| l.starts_with("## "))
        .expect("a version heading");
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        newest.starts_with(&format!("## [{version}]")),
        "Cargo.toml is at {version}; CHANGELOG.md's newest entry is {newest:?}"
    );
    assert!(changelog.contains("docs/deploy.md#upgrading-and-rolling-back"));
}

#[test]
fn a_configuration_from_a_newer_version_is_refused_naming_the_unknown_key() {
    let route = "[[route]]\ngateway = \"https://gw.gateway.bedrock-agentcore.us-east-1.amazonaws.com/mcp\"\n";
    let dir = tempfile::tempdir().unwrap();
    for (text, key) in [
        (format!("new_key = 1\n{route}"), "new_key"),
        (format!("{route}new_route_key = true\n"), "new_route_key"),
        (format!("{route}[route.credential]\ntype = \"file\"\npath = \"/t\"\nnew_credential_key = 1\n"), "new_credential_key"),
        (format!("[audit]\nnew_audit_key = 1\n{route}"), "new_audit_key"),
        (format!("[dns]\nnew_dns_key = 1\n{route}"), "new_dns_key"),
    ] {
        let file = dir.path().join("newer.toml");
        std::fs::write(&file, &text).unwrap();
        let (ok, _, err) = run(proxy().args(["check", "--config"]).arg(&file));
        assert!(!ok, "{text}");
        assert!(err.contains(&format!("unknown field `{key}`")), "{err}");
    }
    // The notes quote that message.
    let notes = read("docs/deploy.md")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(notes.contains("unknown field `new_key`, expected one of"));
}
