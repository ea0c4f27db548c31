//! The gateway's throttle windows of one route: what it throttled (a tool for
//! `tools/call`, the method otherwise) and until when, so that the route answers further
//! requests for the same thing itself instead of spending quota other agents need and
//! prolonging the throttle.
//!
//! Only what the gateway throttled enters (the names an agent merely sends never do),
//! at most `max` windows at once: an expired one goes first, then the one ending
//! soonest. The map is not even locked while it is empty.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use tokio::time::Instant;

use super::traffic::ThrottleMode;
use crate::ops::metrics::{metrics, ReasonLabels, RouteLabels};

/// The longest window the proxy keeps, whatever the gateway says: a larger `retryAfter`
/// (a daily quota) is answered by the gateway itself after this.
pub const MAX_WINDOW: Duration = Duration::from_secs(3600);

/// The longest `limitKey` kept and echoed.
const MAX_LIMIT_KEY: usize = 256;

/// What a request is for, as far as the gateway's throttles go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Subject<'a> {
    Tool(&'a str),
    Method(&'a str),
}

/// A subject remembered with a window (owned; a tool's name is shared with the call's
/// record, one allocation for both).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Throttled {
    Tool(Arc<str>),
    Method(Arc<str>),
}

impl Throttled {
    pub fn of(subject: Subject<'_>) -> Throttled {
        match subject {
            Subject::Tool(t) => Throttled::Tool(t.into()),
            Subject::Method(m) => Throttled::Method(m.into()),
        }
    }
}

/// How the gateway throttled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub until: Instant,
    /// The gateway's `limitKey`, when it gave one.
    pub limit_key: Option<String>,
    /// The HTTP status it answered with (200 for the JSON-RPC form).
    pub status: u16,
}

/// A window still open for a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    pub left: Duration,
    pub limit_key: Option<String>,
    pub status: u16,
}

pub struct Throttles {
    mode: ThrottleMode,
    hold_max: Duration,
    max: usize,
    /// Entries in `windows` (read without the lock: zero on the common path).
    len: AtomicUsize,
    windows: Mutex<Maps>,
    seen: Counter,
    answered: Counter,
    held: Counter,
}

#[derive(Default)]
struct Maps {
    tools: HashMap<Box<str>, Window>,
    methods: HashMap<Box<str>, Window>,
}

impl Maps {
    fn len(&self) -> usize {
        self.tools.len() + self.methods.len()
    }

    fn map(&mut self, kind: &Throttled) -> &mut HashMap<Box<str>, Window> {
        match kind {
            Throttled::Tool(_) => &mut self.tools,
            Throttled::Method(_) => &mut self.methods,
        }
    }
}

impl Throttles {
    pub fn new(route: &str, mode: ThrottleMode, hold_max: Duration, max: usize) -> Throttles {
        let m = metrics();
        let route_labels = RouteLabels {
            route: route.to_string(),
        };
        let locally = |reason: &'static str| {
            m.throttled_locally
                .get_or_create(&ReasonLabels {
                    route: route.into(),
                    reason,
                })
                .clone()
        };
        Throttles {
            mode,
            hold_max,
            max: max.max(1),
            len: AtomicUsize::new(0),
            windows: Mutex::new(Maps::default()),
            seen: m.gateway_throttles.get_or_create(&route_labels).clone(),
            answered: locally("gateway_window"),
            held: m.throttle_holds.get_or_create(&route_labels).clone(),
        }
    }

    /// Whether the route watches for throttles at all.
    pub fn is_on(&self) -> bool {
        self.mode != ThrottleMode::Off
    }

    /// The gateway throttled `subject` for `retry_after` (capped at [`MAX_WINDOW`]).
    pub fn record(
        &self,
        subject: Throttled,
        retry_after: Duration,
        limit_key: Option<String>,
        status: u16,
    ) {
        self.record_at(subject, retry_after, limit_key, status, Instant::now());
    }

    fn record_at(
        &self,
        subject: Throttled,
        retry_after: Duration,
        limit_key: Option<String>,
        status: u16,
        now: Instant,
    ) {
        self.seen.inc();
        if !self.is_on() {
            return;
        }
        let until = now + retry_after.min(MAX_WINDOW);
        let limit_key = limit_key.map(|mut k| {
            if k.len() > MAX_LIMIT_KEY {
                let mut cut = MAX_LIMIT_KEY;
                while !k.is_char_boundary(cut) {
                    cut -= 1;
                }
                k.truncate(cut);
            }
            k
        });
        let name: Box<str> = match &subject {
            Throttled::Tool(n) | Throttled::Method(n) => Box::from(&**n),
        };
        tracing::info!(
            subject = ?subject,
            retry_after_ms = retry_after.as_millis() as u64,
            limit_key = limit_key.as_deref().unwrap_or("-"),
            "the gateway throttled; answering this until the window ends"
        );
        let mut maps = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let exists = maps.map(&subject).contains_key(&name);
        if !exists && maps.len() >= self.max {
            evict(&mut maps, now, self.max);
        }
        let window = Window {
            until,
            limit_key,
            status,
        };
        let map = maps.map(&subject);
        match map.get_mut(&name) {
            // A later throttle of the same thing may only lengthen the window.
            Some(old) if old.until >= until => {}
            Some(old) => *old = window,
            None => {
                map.insert(name, window);
            }
        }
        self.len.store(maps.len(), Ordering::Relaxed);
    }

    /// The window open for `subject`, if any. While no window is kept (the common
    /// case) this reads neither the lock nor the clock.
    pub fn open(&self, subject: Subject<'_>) -> Option<Open> {
        if !self.may_be_open() {
            return None;
        }
        self.open_at(subject, Instant::now())
    }

    /// False when no request can find a window open: the route ignores throttles, or
    /// none is kept.
    pub fn may_be_open(&self) -> bool {
        self.is_on() && self.len.load(Ordering::Relaxed) > 0
    }

    /// False when no request can be held: not in `hold` mode, or no window is kept.
    pub fn may_hold(&self) -> bool {
        self.mode == ThrottleMode::Hold && self.may_be_open()
    }

    fn open_at(&self, subject: Subject<'_>, now: Instant) -> Option<Open> {
        if !self.may_be_open() {
            return None;
        }
        let mut maps = self.windows.lock().unwrap_or_else(|p| p.into_inner());
        let (map, name) = match subject {
            Subject::Tool(t) => (&mut maps.tools, t),
            Subject::Method(m) => (&mut maps.methods, m),
        };
        let window = map.get(name)?;
        if window.until <= now {
            map.remove(name);
            let len = maps.len();
            self.len.store(len, Ordering::Relaxed);
            return None;
        }
        Some(Open {
            left: window.until - now,
            limit_key: window.limit_key.clone(),
            status: window.status,
        })
    }

    /// In `hold` mode, how long a request for `subject` waits before it is judged: the
    /// time left of its window when that is within `throttle_hold_max`.
    pub fn hold_for(&self, subject: Subject<'_>) -> Option<Duration> {
        if !self.may_hold() {
            return None;
        }
        self.hold_for_at(subject, Instant::now())
    }

    fn hold_for_at(&self, subject: Subject<'_>, now: Instant) -> Option<Duration> {
        if self.mode != ThrottleMode::Hold {
            return None;
        }
        let open = self.open_at(subject, now)?;
        (open.left <= self.hold_max).then(|| {
            self.held.inc();
            open.left
        })
    }

    /// A request was answered here from an open window.
    pub fn answered_locally(&self) {
        self.answered.inc();
    }

    /// Windows remembered now (expired ones included until they are looked at).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Makes room for one window: every expired one goes; if none had, the one ending soonest.
fn evict(maps: &mut Maps, now: Instant, max: usize) {
    maps.tools.retain(|_, w| w.until > now);
    maps.methods.retain(|_, w| w.until > now);
    if maps.len() < max {
        return;
    }
    let soonest_tool = maps
        .tools
        .iter()
        .min_by_key(|(_, w)| w.until)
        .map(|(k, w)| (k.clone(), w.until));
    let soonest_method = maps
        .methods
        .iter()
        .min_by_key(|(_, w)| w.until)
        .map(|(k, w)| (k.clone(), w.until));
    match (soonest_tool, soonest_method) {
        (Some((t, tu)), Some((_, mu))) if tu <= mu => {
            maps.tools.remove(&t);
        }
        (_, Some((m, _))) => {
            maps.methods.remove(&m);
        }
        (Some((t, _)), None) => {
            maps.tools.remove(&t);
        }
        (None, None) => {}
    }
}

/// `Retry-After` as delta-seconds (the form AWS services send); an HTTP-date is not read.
pub fn retry_after_header(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?.trim();
    let secs: u64 = text.parse().ok()?;
    Some(Duration::from_secs(secs))
}

/// `data.retryAfter` in seconds (a number, or a string holding one).
pub fn retry_after_seconds(seconds: f64) -> Option<Duration> {
    (seconds.is_finite() && seconds >= 0.0)
        .then(|| Duration::from_secs_f64(seconds.min(MAX_WINDOW.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn throttles(max: usize) -> Throttles {
        Throttles::new(
            "throttle-unit",
            ThrottleMode::Answer,
            Duration::from_secs(2),
            max,
        )
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_window_answers_its_subject_until_it_ends() {
        let t = throttles(8);
        let t0 = Instant::now();
        assert!(t.open_at(Subject::Tool("search"), t0).is_none());
        t.record_at(
            Throttled::Tool("search".into()),
            Duration::from_secs(2),
            Some("toolName=search".into()),
            200,
            t0,
        );
        let open = t.open_at(Subject::Tool("search"), t0).unwrap();
        assert_eq!(open.left, Duration::from_secs(2));
        assert_eq!(open.limit_key.as_deref(), Some("toolName=search"));
        assert!(
            t.open_at(Subject::Tool("echo"), t0).is_none(),
            "other tools flow"
        );
        assert!(
            t.open_at(Subject::Method("search"), t0).is_none(),
            "a method is not a tool"
        );
        assert_eq!(
            t.open_at(Subject::Tool("search"), t0 + ms(1500))
                .unwrap()
                .left,
            ms(500)
        );
        assert!(t.open_at(Subject::Tool("search"), t0 + ms(2000)).is_none());
        assert!(t.is_empty(), "an ended window is dropped when looked at");
    }

    #[test]
    fn the_map_is_bounded_and_only_lengthens() {
        let t = throttles(3);
        let t0 = Instant::now();
        for (i, name) in ["a", "b", "c", "d"].iter().enumerate() {
            t.record_at(
                Throttled::Tool((*name).into()),
                Duration::from_secs(10 + i as u64),
                None,
                200,
                t0,
            );
        }
        assert_eq!(t.len(), 3);
        assert!(
            t.open_at(Subject::Tool("a"), t0).is_none(),
            "the soonest to end went"
        );
        assert!(t.open_at(Subject::Tool("d"), t0).is_some());
        t.record_at(
            Throttled::Tool("d".into()),
            Duration::from_secs(1),
            None,
            200,
            t0,
        );
        assert_eq!(
            t.open_at(Subject::Tool("d"), t0).unwrap().left,
            Duration::from_secs(13)
        );
        t.record_at(
            Throttled::Method("tools/list".into()),
            Duration::from_secs(99_999),
            None,
            429,
            t0,
        );
        assert_eq!(t.len(), 3);
        let open = t.open_at(Subject::Method("tools/list"), t0).unwrap();
        assert_eq!(open.left, MAX_WINDOW);
        assert_eq!(open.status, 429);
        // Expired windows make room before any open one goes.
        let later = t0 + Duration::from_secs(12);
        t.record_at(
            Throttled::Tool("e".into()),
            Duration::from_secs(5),
            None,
            200,
            later,
        );
        assert!(t.open_at(Subject::Tool("d"), later).is_some());
        assert!(t.open_at(Subject::Tool("e"), later).is_some());
    }

    #[test]
    fn hold_waits_only_for_short_windows() {
        let t0 = Instant::now();
        let t = Throttles::new(
            "throttle-unit-hold",
            ThrottleMode::Hold,
            Duration::from_secs(2),
            8,
        );
        t.record_at(
            Throttled::Tool("a".into()),
            Duration::from_secs(1),
            None,
            200,
            t0,
        );
        t.record_at(
            Throttled::Tool("b".into()),
            Duration::from_secs(5),
            None,
            200,
            t0,
        );
        assert_eq!(
            t.hold_for_at(Subject::Tool("a"), t0),
            Some(Duration::from_secs(1))
        );
        assert_eq!(t.hold_for_at(Subject::Tool("b"), t0), None);
        assert_eq!(t.hold_for_at(Subject::Tool("c"), t0), None);
        let off = Throttles::new("throttle-unit-off", ThrottleMode::Off, Duration::ZERO, 8);
        off.record_at(
            Throttled::Tool("a".into()),
            Duration::from_secs(1),
            None,
            200,
            t0,
        );
        assert!(off.open_at(Subject::Tool("a"), t0).is_none());
    }

    #[test]
    fn retry_after_is_read_as_seconds() {
        let h = |v: &str| retry_after_header(&http::HeaderValue::from_str(v).unwrap());
        assert_eq!(h("3"), Some(Duration::from_secs(3)));
        assert_eq!(h(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(h("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        assert_eq!(retry_after_seconds(1.5), Some(ms(1500)));
        assert_eq!(retry_after_seconds(-1.0), None);
        assert_eq!(retry_after_seconds(f64::NAN), None);
    }
}
