//! Where the configuration text comes from: a file (`--config`, `MCP_VPCE_PROXY_CONFIG`),
//! the whole TOML in one environment variable (`MCP_VPCE_PROXY_CONFIG_TOML`, for
//! containers that cannot mount a file: ECS fills it from a Secrets Manager secret or an
//! SSM parameter), or neither (flags and `MCP_VPCE_PROXY_*` variables alone).
//!
//! At most one of the two: given both, the configuration is refused rather than one
//! silently winning over the other (a stale file would otherwise hide the secret's text,
//! or the reverse). The text of the variable is validated exactly like a file's; errors
//! name it `$MCP_VPCE_PROXY_CONFIG_TOML` where they would name the file.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use super::ConfigError;

/// The variable holding the whole configuration as TOML text.
pub const CONFIG_TOML_VAR: &str = "MCP_VPCE_PROXY_CONFIG_TOML";

/// How errors name the text of [`CONFIG_TOML_VAR`].
pub const CONFIG_TOML_SOURCE: &str = "$MCP_VPCE_PROXY_CONFIG_TOML";

/// How errors name a configuration made of flags and variables only.
pub const COMMAND_LINE_SOURCE: &str = "command line";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// No file and no text: flags and `MCP_VPCE_PROXY_*` variables only.
    Flags,
    /// A TOML file, read again at each reload.
    File(PathBuf),
    /// The TOML text of `MCP_VPCE_PROXY_CONFIG_TOML`, as the process was started with
    /// (a process's environment does not change: a reload validates this same text).
    Variable(String),
}

impl ConfigSource {
    /// The source given `--config` (or `MCP_VPCE_PROXY_CONFIG`) and the value of
    /// `MCP_VPCE_PROXY_CONFIG_TOML` in this process's environment.
    pub fn from_environment(file: Option<&Path>) -> Result<ConfigSource, String> {
        ConfigSource::choose(file, std::env::var_os(CONFIG_TOML_VAR))
    }

    /// The source given `--config` and the value of the variable, if set.
    pub fn choose(file: Option<&Path>, variable: Option<OsString>) -> Result<ConfigSource, String> {
        match (file, variable) {
            (Some(file), Some(_)) => Err(format!(
                "the configuration is given twice: as a file ({}, from --config or \
                 MCP_VPCE_PROXY_CONFIG) and as text in {CONFIG_TOML_VAR}; give one of them",
                file.display()
            )),
            (Some(file), None) => Ok(ConfigSource::File(file.to_path_buf())),
            (None, Some(value)) => {
                let text = value
                    .into_string()
                    .map_err(|_| format!("{CONFIG_TOML_SOURCE} is not UTF-8 text"))?;
                if text.trim().is_empty() {
                    return Err(format!(
                        "{CONFIG_TOML_SOURCE} is set but empty; put the TOML configuration in \
                         it, or unset it"
                    ));
                }
                Ok(ConfigSource::Variable(text))
            }
            (None, None) => Ok(ConfigSource::Flags),
        }
    }

    /// How errors and `check` name it: the file's path, `$MCP_VPCE_PROXY_CONFIG_TOML`,
    /// or "command line".
    pub fn name(&self) -> String {
        match self {
            ConfigSource::Flags => COMMAND_LINE_SOURCE.to_string(),
            ConfigSource::File(path) => path.display().to_string(),
            ConfigSource::Variable(_) => CONFIG_TOML_SOURCE.to_string(),
        }
    }

    /// The file, when the configuration is one (what `--watch-config` watches).
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigSource::File(path) => Some(path),
            _ => None,
        }
    }

    /// The TOML text, `None` for flags only. A file is read now.
    pub fn text(&self) -> Result<Option<String>, ConfigError> {
        match self {
            ConfigSource::Flags => Ok(None),
            ConfigSource::Variable(text) => Ok(Some(text.clone())),
            ConfigSource::File(path) => std::fs::read_to_string(path).map(Some).map_err(|e| {
                ConfigError::new(&self.name(), "", format!("cannot read the file: {e}"))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_or_the_variable_or_neither_but_not_both() {
        let file = Path::new("/etc/proxy.toml");
        let text = || Some(OsString::from("[[route]]\n"));
        assert_eq!(
            ConfigSource::choose(Some(file), None).unwrap(),
            ConfigSource::File(file.into())
        );
        assert_eq!(
            ConfigSource::choose(None, text()).unwrap(),
            ConfigSource::Variable("[[route]]\n".into())
        );
        assert_eq!(
            ConfigSource::choose(None, None).unwrap(),
            ConfigSource::Flags
        );
        assert_eq!(
            ConfigSource::choose(Some(file), text()).unwrap_err(),
            "the configuration is given twice: as a file (/etc/proxy.toml, from --config or \
             MCP_VPCE_PROXY_CONFIG) and as text in MCP_VPCE_PROXY_CONFIG_TOML; give one of them"
        );
        assert_eq!(
            ConfigSource::choose(None, Some(" \n".into())).unwrap_err(),
            "$MCP_VPCE_PROXY_CONFIG_TOML is set but empty; put the TOML configuration in it, \
             or unset it"
        );
    }

    #[test]
    fn each_source_has_the_name_errors_use() {
        assert_eq!(ConfigSource::Flags.name(), "command line");
        assert_eq!(
            ConfigSource::File("/etc/p.toml".into()).name(),
            "/etc/p.toml"
        );
        assert_eq!(
            ConfigSource::Variable(String::new()).name(),
            "$MCP_VPCE_PROXY_CONFIG_TOML"
        );
        let missing = ConfigSource::File("/surely/not/here.toml".into());
        let e = missing.text().unwrap_err().to_string();
        assert!(
            e.starts_with("/surely/not/here.toml: cannot read the file: "),
            "{e}"
        );
    }
}
