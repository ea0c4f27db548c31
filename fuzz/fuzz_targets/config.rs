//! The configuration loader's TOML schema (`Config::from_toml`): any text is a
//! configuration or an error that can be shown, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mcp_vpce_proxy::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Config::from_toml(text, "fuzz.toml") {
        Ok(config) => {
            let _ = format!("{config:?}");
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.starts_with("fuzz.toml: "), "{message}");
        }
    }
});
