//! Loading the configuration for a diagnosis. `run` refuses a configuration whose
//! credential source cannot be read (an unset variable, a missing file); the doctor
//! instead sets such a credential aside, diagnoses everything else of the route, and
//! reports the credential as that route's failed credential check.

use std::collections::BTreeMap;

use crate::auth::{self, CredentialConfig};
use crate::cmd::cli::RunArgs;
use crate::config::Config;

pub struct Loaded {
    pub config: Config,
    /// Route index -> the credential set aside and why its source cannot be used.
    pub credential_errors: BTreeMap<usize, (CredentialConfig, String)>,
}

pub fn load(args: &RunArgs) -> Result<Loaded, String> {
    let mut overrides = args.overrides()?;
    let mut credential_errors = BTreeMap::new();
    // A credential given by flags replaces the one of the (single) route.
    if let Some(credential) = &overrides.credential {
        if let Err(e) = auth::check(credential) {
            credential_errors.insert(0, (credential.clone(), e));
            overrides.credential = Some(CredentialConfig::None);
        }
    }
    let config_source = args.config_source()?;
    let source = config_source.name();
    let Some(text) = config_source.text().map_err(|e| e.to_string())? else {
        let config = Config::load_from(&config_source, &overrides).map_err(|e| e.to_string())?;
        return Ok(Loaded {
            config,
            credential_errors,
        });
    };
    let mut table: toml::Table = match toml::from_str(&text) {
        Ok(table) => table,
        // Let the real loader phrase the syntax error.
        Err(_) => return Err(load_error(&text, &source, &overrides)),
    };
    let mut replaced = false;
    if overrides.credential.is_none() {
        if let Some(toml::Value::Array(routes)) = table.get_mut("route") {
            for (i, route) in routes.iter_mut().enumerate() {
                let Some(route) = route.as_table_mut() else {
                    continue;
                };
                let Some(value) = route.get("credential") else {
                    continue;
                };
                // A table that does not even parse is the loader's to report.
                let Ok(credential) = value.clone().try_into::<CredentialConfig>() else {
                    continue;
                };
                if let Err(e) = auth::check(&credential) {
                    credential_errors.insert(i, (credential, e));
                    let mut none = toml::Table::new();
                    none.insert("type".into(), toml::Value::String("none".into()));
                    route.insert("credential".into(), toml::Value::Table(none));
                    replaced = true;
                }
            }
        }
    }
    // Untouched text is loaded as written, so that errors point at the operator's lines.
    let text = if replaced {
        toml::to_string(&table).map_err(|e| format!("{source}: {e}"))?
    } else {
        text
    };
    let config = Config::parse(&text, &source, &overrides).map_err(|e| e.to_string())?;
    Ok(Loaded {
        config,
        credential_errors,
    })
}

fn load_error(text: &str, source: &str, overrides: &crate::config::Overrides) -> String {
    match Config::parse(text, source, overrides) {
        Err(e) => e.to_string(),
        Ok(_) => format!("{source}: not a valid TOML table"),
    }
}
