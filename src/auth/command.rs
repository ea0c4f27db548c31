//! A token printed by a configured program: the escape hatch for any identity system.
//!
//! The program prints the token, or JSON `{"token"|"access_token": "...",
//! "expires_in": seconds | "expires_at": unix seconds or RFC 3339}`. Its output is cached
//! until the token expires (JSON expiry, else the JWT's `exp`, else `cache_for`), with
//! the single flight, refresh-ahead and backoff of `cache.rs`. The program runs without
//! a shell when given as a list, with stdin closed, in a process group of its own that
//! is killed whole when it overruns `timeout`.
//!
//! Its stderr may hold secrets, so it never reaches the agent: a failure answers only
//! that the command failed, with its exit status, and points to the log, which gets the
//! first lines of stderr through `scrub::for_log`.

use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderValue;

use super::cache::{CacheSettings, CachedBearer, Fetch, Fetched, TokenCache};
use super::config::{CommandConfig, CommandLine};
use super::oauth2::seconds;
use super::{bearer_value, jwt, scrub, BoxFuture, Context};
use crate::auth::secret::fingerprint;

pub struct TokenCommand;

impl TokenCommand {
    pub fn build(config: &CommandConfig, context: &Context<'_>) -> Result<CachedBearer, String> {
        let runner = Runner {
            command: config.command.clone(),
            route: context.route.to_string(),
        };
        let description = format!(
            "token printed by command {} (cached until it expires, else for {})",
            config.command.program(),
            humantime::format_duration(config.cache_for)
        );
        let cache = TokenCache::new(
            CacheSettings {
                route: context.route.to_string(),
                source: "command",
                refresh_margin: config.refresh_margin,
                timeout: config.timeout,
                unknown_expiry_lifetime: config.cache_for,
            },
            runner,
        );
        Ok(CachedBearer::new(cache, description))
    }
}

struct Runner {
    command: CommandLine,
    route: String,
}

impl Fetch<HeaderValue> for Runner {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<HeaderValue>, String>> {
        Box::pin(self.run())
    }

    fn endpoint(&self) -> String {
        format!("token command {}", self.command.program())
    }
}

impl Runner {
    async fn run(&self) -> Result<Fetched<HeaderValue>, String> {
        let program = self.command.program();
        let argv = self.command.argv();
        let child = tokio::process::Command::new(&argv[0])
            .args(&argv[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The cache's timeout drops this future: the program must not outlive it,
            // nor anything it started (its own process group goes with it).
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("token command {program} could not be started: {e}"))?;
        let group = ProcessGroup(child.id());
        let output = child
            .wait_with_output()
            .await
            .map_err(|e| format!("token command {program}: {e}"))?;
        // It ended by itself and every holder of its output closed it: nothing to kill.
        group.disarm();
        let stdout = String::from_utf8_lossy(&output.stdout);
        if !output.status.success() {
            tracing::warn!(
                route = %self.route,
                program = %program,
                status = %output.status,
                stderr = %scrub::for_log(&output.stderr).unwrap_or_else(|| "(empty)".into()),
                "token command failed"
            );
            return Err(format!(
                "token command {program} failed ({}); its output is in the proxy log",
                output.status
            ));
        }
        let (token, expires_at) =
            parse_output(&stdout).map_err(|e| format!("token command {program}: {e}"))?;
        let value = bearer_value(&token, &format!("the token printed by {program}"))?;
        tracing::debug!(program = %program, fingerprint = %fingerprint(value.as_bytes()), "token command printed a token");
        Ok(Fetched {
            value,
            expires_at: expires_at.or_else(|| jwt::expiry(&token)),
        })
    }
}

/// The process group of a running token command (the command leads it): killed whole
/// when dropped before [`ProcessGroup::disarm`], i.e. when the fetch is abandoned at
/// its timeout. tokio's `kill_on_drop` kills the leader only, so `sh -c 'helper & …'`
/// would leave the helper running.
struct ProcessGroup(Option<u32>);

impl ProcessGroup {
    fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        let Some(pgid) = self.0.and_then(|id| libc::pid_t::try_from(id).ok()) else {
            return;
        };
        // std has no kill(2) for a group. SAFETY: killpg only sends a signal. The group is
        // the command's own (`process_group(0)`); its id cannot be reused while any member
        // lives, and once none does the call finds nothing (ESRCH).
        if unsafe { libc::killpg(pgid, libc::SIGKILL) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::ESRCH) {
                tracing::warn!(pgid, "cannot kill the token command's process group: {e}");
            }
        }
    }
}

/// The token and its expiry from the program's output: plain text, or JSON.
fn parse_output(stdout: &str) -> Result<(String, Option<SystemTime>), String> {
    let text = stdout.trim();
    if text.is_empty() {
        return Err("printed nothing".into());
    }
    if !text.starts_with('{') {
        return Ok((text.to_string(), None));
    }
    let json: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| format!("printed JSON that does not parse ({e})"))?;
    let token = ["token", "access_token", "accessToken"]
        .iter()
        .find_map(|k| json.get(k).and_then(|v| v.as_str()))
        .ok_or("printed JSON without a \"token\" or \"access_token\" string")?
        .to_string();
    let expires_at = if let Some(secs) = json.get("expires_in").and_then(seconds) {
        Some(SystemTime::now() + Duration::from_secs(secs))
    } else {
        match json.get("expires_at") {
            None | Some(serde_json::Value::Null) => None,
            // The output holds the token: none of it is quoted back.
            Some(serde_json::Value::String(s)) => Some(
                humantime::parse_rfc3339_weak(s.trim())
                    .map_err(|e| format!("expires_at is not an RFC 3339 time ({e})"))?,
            ),
            Some(v) => Some(
                seconds(v)
                    .map(|secs| UNIX_EPOCH + Duration::from_secs(secs))
                    .ok_or("expires_at is neither unix seconds nor an RFC 3339 time")?,
            ),
        }
    };
    Ok((token, expires_at))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_json_outputs_are_understood() {
        assert_eq!(parse_output("  tok-1\n").unwrap(), ("tok-1".into(), None));
        let (t, at) = parse_output(r#"{"access_token":"tok-2","expires_at":1900000000}"#).unwrap();
        assert_eq!(t, "tok-2");
        assert_eq!(at, Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000)));
        let (_, at) = parse_output(r#"{"token":"t","expires_at":"2030-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(at, Some(UNIX_EPOCH + Duration::from_secs(1_893_456_000)));
        let (_, at) = parse_output(r#"{"token":"t","expires_in":60}"#).unwrap();
        assert!(at.unwrap() > SystemTime::now());
        assert!(parse_output("").is_err());
        assert!(parse_output(r#"{"tok":"t"}"#)
            .unwrap_err()
            .contains("without"));
    }
}
