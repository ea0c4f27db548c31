//! The cache every fetching source shares (OAuth2, command, AgentCore Identity, AWS
//! credentials): one value at a time, fetched on demand.
//!
//! - Single flight: however many requests wait, one fetch runs; the others queue on a
//!   `tokio::sync::Mutex` and take its result (a token, or its error at once).
//! - Refresh ahead of expiry: inside the refresh window (the configured margin before
//!   expiry, capped at half the value's lifetime) requests keep using the cached value
//!   while one background task fetches the next. No timer runs while the route is idle.
//! - Backoff: after a failed fetch the next one waits 1 s, 2 s, 4 s ... up to 30 s, each
//!   with jitter. A still-valid value keeps being used meanwhile; without one, requests
//!   get the last error at once instead of hammering the endpoint or hanging.
//! - Invalidation (the gateway answered 401): the value is dropped and the next request
//!   fetches, bypassing backoff; at most once per `FORCED_REFRESH_GAP`, so that a burst
//!   of refused requests causes one refetch, not one each.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;

use super::{BoxFuture, CredentialState};
use crate::ops::metrics::{metrics, route, CredentialLabels};

const BACKOFF_FIRST: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A 401 forces a refetch at most this often.
const FORCED_REFRESH_GAP: Duration = Duration::from_secs(10);

/// A fetched value and when it expires (`None`: unknown).
pub struct Fetched<T> {
    pub value: T,
    pub expires_at: Option<SystemTime>,
}

/// One source's way of getting a fresh value.
pub trait Fetch<T>: Send + Sync + 'static {
    fn fetch(&self) -> BoxFuture<'_, Result<Fetched<T>, String>>;
    /// What is contacted, for the timeout message ("token endpoint https://…").
    fn endpoint(&self) -> String;
}

pub struct CacheSettings {
    pub route: String,
    pub source: &'static str,
    pub refresh_margin: Duration,
    pub timeout: Duration,
    /// How long a value of unknown expiry is used before it is fetched again.
    pub unknown_expiry_lifetime: Duration,
}

pub struct TokenCache<T> {
    inner: Arc<Inner<T>>,
}

struct Inner<T> {
    settings: CacheSettings,
    fetcher: Box<dyn Fetch<T>>,
    state: Mutex<State<T>>,
    /// Held while a fetch runs: the single flight.
    flight: Arc<tokio::sync::Mutex<()>>,
    fetched_ok: Counter,
    fetch_failed: Counter,
    expiry_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
}

struct State<T> {
    current: Option<Entry<T>>,
    /// Bumped by every finished fetch, so that a waiter sees one happened while it queued.
    attempts: u64,
    failures: u32,
    retry_at: Option<Instant>,
    last_error: Option<String>,
    /// The gateway refused `current`: never use it again.
    rejected: bool,
    last_forced: Option<Instant>,
}

struct Entry<T> {
    value: T,
    expires_at: Option<SystemTime>,
    /// `None`: unknown expiry, so only a 401 ends the value's use.
    expires: Option<Instant>,
    refresh_at: Instant,
}

enum Usable<T> {
    Fresh(T),
    /// Valid, but inside the refresh window.
    Refresh(T),
    No,
}

impl<T> State<T> {
    fn usable(&self, now: Instant) -> Usable<&T> {
        let Some(entry) = self.current.as_ref().filter(|_| !self.rejected) else {
            return Usable::No;
        };
        if entry.expires.is_some_and(|expires| now >= expires) {
            Usable::No
        } else if now >= entry.refresh_at {
            Usable::Refresh(&entry.value)
        } else {
            Usable::Fresh(&entry.value)
        }
    }

    fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|at| now < at)
    }
}

impl<T: Clone + Send + Sync + 'static> TokenCache<T> {
    pub fn new(settings: CacheSettings, fetcher: impl Fetch<T>) -> Self {
        let m = metrics();
        let labels = |result: &str| CredentialLabels {
            route: settings.route.clone(),
            source: settings.source.to_string(),
            result: result.to_string(),
        };
        let fetched_ok = m.credential_refreshes.get_or_create(&labels("ok")).clone();
        let fetch_failed = m
            .credential_refreshes
            .get_or_create(&labels("error"))
            .clone();
        let expiry_seconds = m
            .credential_expiry_seconds
            .get_or_create(&route(&settings.route))
            .clone();
        TokenCache {
            inner: Arc::new(Inner {
                settings,
                fetcher: Box::new(fetcher),
                state: Mutex::new(State {
                    current: None,
                    attempts: 0,
                    failures: 0,
                    retry_at: None,
                    last_error: None,
                    rejected: false,
                    last_forced: None,
                }),
                flight: Arc::new(tokio::sync::Mutex::new(())),
                fetched_ok,
                fetch_failed,
                expiry_seconds,
            }),
        }
    }

    /// The current value when one is usable without waiting: fresh, or due for a refresh
    /// (started in the background, once, unless fetches are backing off).
    pub fn get_now(&self) -> Option<T> {
        let state = self.inner.lock();
        let now = Instant::now();
        self.inner.report_expiry(&state);
        match state.usable(now) {
            Usable::Fresh(value) => Some(value.clone()),
            Usable::Refresh(value) => {
                let value = value.clone();
                let backing_off = state.backing_off(now);
                drop(state);
                if !backing_off {
                    self.refresh_in_background();
                }
                Some(value)
            }
            Usable::No => None,
        }
    }

    /// The current value, fetched if there is none (or it expired or was refused).
    pub async fn get(&self) -> Result<T, String> {
        if let Some(value) = self.get_now() {
            return Ok(value);
        }
        let seen_attempts = {
            let state = self.inner.lock();
            let now = Instant::now();
            if let Usable::Fresh(value) | Usable::Refresh(value) = state.usable(now) {
                // Fetched between the two looks.
                return Ok(value.clone());
            }
            if state.backing_off(now) {
                return Err(state.last_error.clone().unwrap_or_default());
            }
            state.attempts
        };
        let _flight = self.inner.flight.lock().await;
        {
            let state = self.inner.lock();
            if state.attempts != seen_attempts {
                // A fetch finished while this request queued: take its outcome.
                match state.usable(Instant::now()) {
                    Usable::Fresh(value) | Usable::Refresh(value) => return Ok(value.clone()),
                    Usable::No => {
                        if let Some(error) = &state.last_error {
                            return Err(error.clone());
                        }
                    }
                }
            }
        }
        self.inner.fetch_now().await
    }

    fn refresh_in_background(&self) {
        // Someone is fetching already: nothing to do.
        let Ok(flight) = self.inner.flight.clone().try_lock_owned() else {
            return;
        };
        let inner = self.inner.clone();
        tokio::spawn(async move {
            let _flight = flight;
            if matches!(inner.lock().usable(Instant::now()), Usable::Fresh(_)) {
                return;
            }
            tracing::debug!(
                route = %inner.settings.route,
                source = inner.settings.source,
                "refreshing the credential ahead of its expiry"
            );
            let _ = inner.fetch_now().await;
        });
    }

    /// The gateway refused the value: the next `get` fetches a new one, bypassing backoff.
    pub fn invalidate(&self) {
        let mut state = self.inner.lock();
        let now = Instant::now();
        if state
            .last_forced
            .is_some_and(|at| now.duration_since(at) < FORCED_REFRESH_GAP)
        {
            tracing::debug!(
                route = %self.inner.settings.route,
                "credential refused again within {}s of a forced refresh; not refetching",
                FORCED_REFRESH_GAP.as_secs()
            );
            return;
        }
        state.last_forced = Some(now);
        state.rejected = state.current.is_some();
        state.retry_at = None;
    }

    pub fn state(&self) -> CredentialState {
        let state = self.inner.lock();
        self.inner.report_expiry(&state);
        let usable = !matches!(state.usable(Instant::now()), Usable::No);
        CredentialState {
            ready: usable || state.last_error.is_none(),
            expires_at: state.current.as_ref().and_then(|e| e.expires_at),
            last_error: state.last_error.clone(),
        }
    }
}

impl<T: Clone + Send + Sync + 'static> Inner<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn report_expiry(&self, state: &State<T>) {
        if let Some(at) = state.current.as_ref().and_then(|e| e.expires_at) {
            let left = match at.duration_since(SystemTime::now()) {
                Ok(d) => d.as_secs_f64(),
                Err(e) => -e.duration().as_secs_f64(),
            };
            self.expiry_seconds.set(left);
        }
    }

    /// Fetches now; the caller holds the flight.
    async fn fetch_now(&self) -> Result<T, String> {
        let timeout = self.settings.timeout;
        let result = match tokio::time::timeout(timeout, self.fetcher.fetch()).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "{} did not answer within {}",
                self.fetcher.endpoint(),
                humantime::format_duration(timeout)
            )),
        };
        let mut state = self.lock();
        state.attempts += 1;
        match result {
            Ok(fetched) => {
                let entry = self.entry(fetched);
                let value = entry.value.clone();
                let lifetime = entry
                    .expires
                    .map(|e| e.saturating_duration_since(Instant::now()));
                state.current = Some(entry);
                state.rejected = false;
                state.failures = 0;
                state.retry_at = None;
                state.last_error = None;
                self.fetched_ok.inc();
                self.report_expiry(&state);
                tracing::info!(
                    route = %self.settings.route,
                    source = self.settings.source,
                    expires_in = %lifetime.map_or("unknown".into(), |d| humantime::format_duration(Duration::from_secs(d.as_secs())).to_string()),
                    "credential fetched"
                );
                Ok(value)
            }
            Err(error) => {
                state.failures += 1;
                let delay = backoff(state.failures);
                state.retry_at = Some(Instant::now() + delay);
                state.last_error = Some(error.clone());
                self.fetch_failed.inc();
                let still_valid = !matches!(state.usable(Instant::now()), Usable::No);
                tracing::warn!(
                    route = %self.settings.route,
                    source = self.settings.source,
                    retry_in_ms = delay.as_millis() as u64,
                    still_valid,
                    "credential fetch failed: {error}"
                );
                Err(error)
            }
        }
    }

    fn entry(&self, fetched: Fetched<T>) -> Entry<T> {
        let now = Instant::now();
        match fetched.expires_at {
            Some(at) => {
                // A value already expired by our clock (skew) is used for the request that
                // fetched it and refetched on the next one.
                let lifetime = at
                    .duration_since(SystemTime::now())
                    .unwrap_or(Duration::ZERO);
                let margin = self.settings.refresh_margin.min(lifetime / 2);
                Entry {
                    value: fetched.value,
                    expires_at: Some(at),
                    expires: Some(now + lifetime),
                    refresh_at: now + (lifetime - margin),
                }
            }
            None => Entry {
                value: fetched.value,
                expires_at: None,
                expires: None,
                refresh_at: now + self.settings.unknown_expiry_lifetime,
            },
        }
    }
}

/// 1 s, 2 s, 4 s ... capped at 30 s, each scaled by a random factor in [0.5, 1].
fn backoff(failures: u32) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1 << failures.saturating_sub(1).min(16));
    let capped = exp.min(BACKOFF_MAX);
    capped.mul_f64(0.5 + fastrand::f64() / 2.0)
}

/// The credential of every source that fetches bearer tokens (oauth2, command,
/// agentcore_identity, cognito_client_token, secrets_manager, ssm_parameter): a token from the cache in `Authorization`, one refetch on 401.
pub struct CachedBearer {
    cache: TokenCache<http::HeaderValue>,
    description: String,
    endpoint: Option<super::SourceEndpoint>,
}

impl CachedBearer {
    pub fn new(cache: TokenCache<http::HeaderValue>, description: String) -> Self {
        CachedBearer {
            cache,
            description,
            endpoint: None,
        }
    }

    /// Names the endpoint the source calls, for `doctor`.
    pub fn with_endpoint(mut self, endpoint: super::SourceEndpoint) -> Self {
        self.endpoint = Some(endpoint);
        self
    }
}

impl super::Credential for CachedBearer {
    fn apply<'a>(
        &'a self,
        parts: &'a mut http::request::Parts,
        _body: &'a [u8],
    ) -> BoxFuture<'a, Result<(), super::CredentialError>> {
        Box::pin(async move {
            let value = self.cache.get().await.map_err(super::CredentialError)?;
            parts.headers.insert(http::header::AUTHORIZATION, value);
            Ok(())
        })
    }

    fn apply_now(
        &self,
        parts: &mut http::request::Parts,
    ) -> Option<Result<(), super::CredentialError>> {
        let value = self.cache.get_now()?;
        parts.headers.insert(http::header::AUTHORIZATION, value);
        Some(Ok(()))
    }

    fn refreshable(&self) -> bool {
        true
    }

    fn invalidate(&self) {
        self.cache.invalidate();
    }

    fn state(&self) -> CredentialState {
        self.cache.state()
    }

    fn describe(&self) -> String {
        self.description.clone()
    }

    fn source_endpoint(&self) -> Option<&super::SourceEndpoint> {
        self.endpoint.as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A scripted answer: a value and its lifetime, or an error.
    type Scripted = Result<(String, Option<Duration>), String>;

    struct Script {
        calls: Arc<AtomicUsize>,
        answers: Arc<Mutex<Vec<Scripted>>>,
        delay: Duration,
    }

    impl Fetch<String> for Script {
        fn fetch(&self) -> BoxFuture<'_, Result<Fetched<String>, String>> {
            Box::pin(async move {
                self.calls.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.delay).await;
                let next = self.answers.lock().unwrap().remove(0);
                next.map(|(value, life)| Fetched {
                    value,
                    expires_at: life.map(|l| SystemTime::now() + l),
                })
            })
        }
        fn endpoint(&self) -> String {
            "test endpoint".into()
        }
    }

    fn cache(answers: Vec<Scripted>, delay: Duration) -> (TokenCache<String>, Arc<AtomicUsize>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let cache = TokenCache::new(
            CacheSettings {
                route: "unit".into(),
                source: "test",
                refresh_margin: Duration::from_secs(60),
                timeout: Duration::from_secs(5),
                unknown_expiry_lifetime: Duration::from_secs(300),
            },
            Script {
                calls: calls.clone(),
                answers: Arc::new(Mutex::new(answers)),
                delay,
            },
        );
        (cache, calls)
    }

    #[tokio::test]
    async fn concurrent_waiters_share_one_fetch() {
        let hour = Some(Duration::from_secs(3600));
        let (cache, calls) = cache(vec![Ok(("t1".into(), hour))], Duration::from_millis(50));
        let cache = Arc::new(cache);
        let mut tasks = Vec::new();
        for _ in 0..20 {
            let cache = cache.clone();
            tasks.push(tokio::spawn(async move { cache.get().await }));
        }
        for t in tasks {
            assert_eq!(t.await.unwrap().unwrap(), "t1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_value_is_had_at_once_only_while_one_is_usable() {
        let hour = Some(Duration::from_secs(3600));
        let (cache, calls) = cache(
            vec![Ok(("t1".into(), hour)), Ok(("t2".into(), hour))],
            Duration::ZERO,
        );
        assert_eq!(
            cache.get_now(),
            None,
            "nothing fetched yet: no value, no fetch"
        );
        assert_eq!(calls.load(Ordering::SeqCst), 0);
        assert_eq!(cache.get().await.unwrap(), "t1");
        assert_eq!(cache.get_now().as_deref(), Some("t1"));
        assert_eq!(
            calls.load(Ordering::SeqCst),
            1,
            "a fresh value needs no fetch"
        );
        cache.invalidate();
        assert_eq!(cache.get_now(), None, "a refused value is not lent");
        assert_eq!(cache.get().await.unwrap(), "t2");
    }

    #[tokio::test]
    async fn waiters_get_the_error_of_the_fetch_they_waited_for() {
        let (cache, calls) = cache(
            vec![Err("endpoint said no".into())],
            Duration::from_millis(50),
        );
        let cache = Arc::new(cache);
        let (a, b) = tokio::join!(cache.get(), cache.get());
        assert_eq!(a.unwrap_err(), "endpoint said no");
        assert_eq!(b.unwrap_err(), "endpoint said no");
        // Backing off: the error again, without a fetch.
        assert_eq!(cache.get().await.unwrap_err(), "endpoint said no");
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        let state = cache.state();
        assert!(!state.ready);
        assert_eq!(state.last_error.as_deref(), Some("endpoint said no"));
    }

    #[tokio::test]
    async fn invalidation_refetches_once_per_gap() {
        let hour = Some(Duration::from_secs(3600));
        let (cache, calls) = cache(
            vec![Ok(("t1".into(), hour)), Ok(("t2".into(), hour))],
            Duration::ZERO,
        );
        assert_eq!(cache.get().await.unwrap(), "t1");
        cache.invalidate();
        assert_eq!(cache.get().await.unwrap(), "t2");
        cache.invalidate();
        assert_eq!(cache.get().await.unwrap(), "t2");
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for _ in 0..20 {
            let first = backoff(1);
            assert!(first >= Duration::from_millis(500) && first <= Duration::from_secs(1));
            let late = backoff(40);
            assert!(late >= Duration::from_secs(15) && late <= BACKOFF_MAX);
        }
    }
}
