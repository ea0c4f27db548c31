//! Where a client id or secret is read from: the configuration itself (ids only), an
//! environment variable, or a file (re-read at each use, so rotation needs no restart).

use std::path::PathBuf;

use crate::auth::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    /// A value written in the configuration (the second field names it in errors).
    Literal(String, &'static str),
    Env(String, &'static str),
    File(PathBuf, &'static str),
    Missing(&'static str),
}

impl SecretSource {
    /// The current value, trimmed; errors name the variable or file, never the value.
    pub fn read(&self) -> Result<Secret, String> {
        let (value, origin) = match self {
            SecretSource::Literal(v, what) => (v.clone(), what.to_string()),
            SecretSource::Env(var, what) => (
                std::env::var(var).map_err(|_| {
                    format!("{what}: environment variable {var} is not set (or not UTF-8)")
                })?,
                format!("{what} (environment variable {var})"),
            ),
            SecretSource::File(path, what) => (
                std::fs::read_to_string(path)
                    .map_err(|e| format!("{what}: cannot read {}: {e}", path.display()))?,
                format!("{what} (file {})", path.display()),
            ),
            SecretSource::Missing(what) => return Err(format!("no {what} configured")),
        };
        let value = value.trim();
        if value.is_empty() {
            return Err(format!("{origin} is empty"));
        }
        if value.chars().any(|c| c.is_control()) {
            return Err(format!("{origin} contains control characters"));
        }
        Ok(Secret::new(value))
    }

    /// Where the value comes from, for `check` output.
    pub fn describe(&self) -> String {
        match self {
            SecretSource::Literal(v, _) => format!("{v:?}"),
            SecretSource::Env(var, _) => format!("env {var}"),
            SecretSource::File(path, _) => format!("file {}", path.display()),
            SecretSource::Missing(_) => "none".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_trimmed_and_errors_never_show_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        std::fs::write(&path, "s3cr3t-value\n").unwrap();
        let source = SecretSource::File(path.clone(), "client secret");
        assert_eq!(source.read().unwrap().expose(), "s3cr3t-value");
        std::fs::write(&path, "bad\u{7}value").unwrap();
        let e = source.read().unwrap_err();
        assert!(
            e.contains("control characters") && !e.contains("value\u{7}"),
            "{e}"
        );
        let missing = SecretSource::File(dir.path().join("nope"), "client secret");
        assert!(missing
            .read()
            .unwrap_err()
            .starts_with("client secret: cannot read"));
    }
}
