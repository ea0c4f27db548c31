//! The `[route.credential]` table: where a route's gateway credential comes from.

use std::path::PathBuf;

use serde::Deserialize;

/// Where the route's gateway credential comes from.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum CredentialConfig {
    /// No credential is attached; the caller's Authorization is removed.
    #[default]
    None,
    /// The caller's own Authorization header goes to the gateway unchanged.
    Passthrough,
    /// A bearer token read from an environment variable at start.
    Static { env: String },
    /// A bearer token read from a file, re-read when the file changes.
    File { path: PathBuf },
}
