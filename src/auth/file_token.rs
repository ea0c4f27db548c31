//! A bearer token read from a file and re-read when the file changes (a mounted
//! Kubernetes secret, a file another process rotates), without a restart.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use http::header::AUTHORIZATION;
use http::HeaderValue;

use super::{bearer_value, BoxFuture, Credential, CredentialError};
use crate::auth::secret::fingerprint;

/// How often the file's metadata is looked at: rotation shows within this delay, and a
/// busy route does not stat the file on every request.
const RECHECK_EVERY: Duration = Duration::from_secs(1);

pub struct FileToken {
    path: PathBuf,
    state: Mutex<State>,
}

struct State {
    value: HeaderValue,
    stamp: Stamp,
    checked_at: Instant,
}

/// What tells us the file changed. Kubernetes swaps a symlink, so we follow links.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    Ok(Stamp {
        modified: meta.modified().ok(),
        len: meta.len(),
    })
}

fn read(path: &Path) -> Result<(HeaderValue, Stamp), String> {
    let stamp = stamp(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("token file {}: {e}", path.display()))?;
    let value = bearer_value(&text, &format!("token file {}", path.display()))?;
    Ok((value, stamp))
}

impl FileToken {
    pub fn open(path: &Path) -> Result<Self, String> {
        let (value, stamp) = read(path)?;
        Ok(FileToken {
            path: path.to_path_buf(),
            state: Mutex::new(State {
                value,
                stamp,
                checked_at: Instant::now(),
            }),
        })
    }

    /// The current value, re-read if the file changed since the last look.
    fn current(&self) -> HeaderValue {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if state.checked_at.elapsed() >= RECHECK_EVERY {
            state.checked_at = Instant::now();
            match stamp(&self.path) {
                Ok(now) if now != state.stamp => match read(&self.path) {
                    Ok((value, stamp)) => {
                        tracing::info!(
                            file = %self.path.display(),
                            fingerprint = %fingerprint(value.as_bytes()),
                            "token file changed; using the new token"
                        );
                        state.value = value;
                        state.stamp = stamp;
                    }
                    // Mid-rotation the file can be briefly empty or gone: keep the old
                    // token rather than fail requests.
                    Err(e) => tracing::warn!("{e}; keeping the previous token"),
                },
                Ok(_) => {}
                Err(e) => tracing::warn!(
                    file = %self.path.display(),
                    "cannot stat token file: {e}; keeping the previous token"
                ),
            }
        }
        state.value.clone()
    }
}

impl Credential for FileToken {
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), CredentialError>> {
        let applied = self.apply_now(parts).unwrap_or(Ok(()));
        Box::pin(async { applied })
    }

    fn apply_now(&self, parts: &mut http::request::Parts) -> Option<Result<(), CredentialError>> {
        parts.headers.insert(AUTHORIZATION, self.current());
        Some(Ok(()))
    }

    fn refreshable(&self) -> bool {
        true
    }

    fn invalidate(&self) {
        // Force a look at the file on the next request.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.checked_at = Instant::now() - RECHECK_EVERY;
        state.stamp.len = u64::MAX;
    }

    fn describe(&self) -> String {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        format!(
            "bearer token from file {} ({})",
            self.path.display(),
            fingerprint(state.value.as_bytes())
        )
    }
}
