//! One route's sharing of list answers: which requests may share an upstream answer
//! (coalescing, `coalesce.rs`) or be answered from a kept one (the cache of MCP
//! 2026-07-28 answers, `answer_cache.rs`), and the bounded read of the answer they share.
//!
//! Shared: a single `tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list` or `server/discover` request with an id, whose parameters are small
//! and whose agent accepts JSON. Requests are identical when their method, parameters
//! (cursor included), `MCP-Protocol-Version`, `Mcp-Session-Id`, query and, on passthrough
//! routes, caller `Authorization` are (see [`ShareKey`]).
//!
//! Session-based protocols (2025-xx) take part in coalescing only within one session: a
//! session's answers may depend on that session (and come on its stream), so requests of
//! different sessions never share. Only MCP 2026-07-28 (and later) requests outside any
//! session are cached, and only answers whose `cacheScope` allows it: on a route where
//! the sidecar holds the credential every agent shares its one authorization context, so
//! both `public` and `private` answers are shared between them; on a passthrough route
//! every caller identity has its own entries.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION};
use http::request;
use http_body::{Body, Frame, SizeHint};
use http_body_util::BodyExt;
use serde_json::Value;

use super::answer_cache::{AnswerCache, Hit};
use super::coalesce::{Flights, Joined, ShareKey};
use super::shared_answer::SharedAnswer;
use crate::exchange::body::{BoxError, ProxyBody};
use crate::exchange::message;
use crate::mcp::traffic::TrafficConfig;

/// The methods whose answers are shared.
pub const LIST_METHODS: [&str; 5] = [
    "tools/list",
    "resources/list",
    "resources/templates/list",
    "prompts/list",
    "server/discover",
];

/// The first protocol version whose answers carry caching hints.
pub const CACHING_VERSION: &str = "2026-07-28";

/// The largest parameters a shared request may have: list requests carry a cursor and
/// `_meta`; the bound keeps the flights and cache keys small.
pub const MAX_PARAMS_BYTES: usize = 4096;

pub struct Sharing {
    flights: Option<Arc<Flights>>,
    cache: Option<AnswerCache>,
    max_bytes: usize,
    passthrough: bool,
}

/// A request that may share its answer.
pub struct Shareable {
    pub key: ShareKey,
    pub id: Value,
    cacheable: bool,
}

impl Sharing {
    pub fn new(traffic: &TrafficConfig, passthrough: bool) -> Sharing {
        Sharing {
            flights: traffic.coalesce.then(|| Arc::new(Flights::default())),
            cache: traffic
                .cache
                .then(|| AnswerCache::new(traffic.cache_max_entries, traffic.cache_max_bytes)),
            max_bytes: usize::try_from(traffic.share_max_bytes).unwrap_or(usize::MAX),
            passthrough,
        }
    }

    /// The largest answer shared.
    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Whether the request may share its answer, and with which others.
    pub fn shareable(&self, body: &message::Body<'_>, head: &request::Parts) -> Option<Shareable> {
        if self.flights.is_none() && self.cache.is_none() {
            return None;
        }
        let [m] = body.messages.as_slice() else {
            return None;
        };
        if body.batch {
            return None;
        }
        let method = m.method.as_deref()?;
        let id = m.id.clone()?;
        if !LIST_METHODS.contains(&method) || !accepts_json(head) {
            return None;
        }
        let params = match m.params {
            None => String::new(),
            Some(raw) if raw.get().len() <= MAX_PARAMS_BYTES => {
                // One spelling for the same parameters (serde_json's maps are sorted).
                serde_json::from_str::<Value>(raw.get()).ok()?.to_string()
            }
            Some(_) => return None,
        };
        let header = |name: &str| {
            head.headers
                .get(name)
                .map(|v| Box::<[u8]>::from(v.as_bytes()))
        };
        let protocol = header("mcp-protocol-version");
        let session = header("mcp-session-id");
        let identity = self
            .passthrough
            .then(|| {
                head.headers
                    .get(AUTHORIZATION)
                    .map(|v| fingerprint(v.as_bytes()))
            })
            .flatten();
        // Answers to a retried multi round-trip request depend on inputs outside the key.
        let round_trip =
            params.contains("\"inputResponses\"") || params.contains("\"requestState\"");
        let cacheable = self.cache.is_some()
            && session.is_none()
            && !round_trip
            && protocol
                .as_deref()
                .and_then(|p| std::str::from_utf8(p).ok())
                .is_some_and(|v| is_date(v) && v >= CACHING_VERSION);
        Some(Shareable {
            key: ShareKey {
                method: method.into(),
                params: params.into(),
                protocol,
                session,
                identity,
                query: head.uri.query().map(Into::into),
            },
            id,
            cacheable,
        })
    }

    /// A fresh kept answer for the request; `generation` is the route's lists'.
    pub fn cached(&self, request: &Shareable, generation: Option<u64>) -> Option<Hit> {
        let cache = self.cache.as_ref().filter(|_| request.cacheable)?;
        cache.get(&request.key, generation?)
    }

    /// The request's part in the flights of identical requests (None: coalescing off).
    pub fn join(&self, request: &Shareable) -> Option<Joined> {
        Some(self.flights.as_ref()?.join(request.key.clone()))
    }

    /// Keeps the answer to `request` when its hints allow.
    pub fn store(&self, request: &Shareable, answer: &Arc<SharedAnswer>, generation: Option<u64>) {
        let (Some(cache), Some(generation)) = (self.cache.as_ref(), generation) else {
            return;
        };
        let Some(hints) = answer.hints.filter(|_| request.cacheable) else {
            return;
        };
        cache.put(
            request.key.clone(),
            answer.clone(),
            Duration::from_millis(hints.ttl_ms),
            generation,
        );
    }
}

/// Whether the agent accepts a JSON answer (every MCP client does).
fn accepts_json(head: &request::Parts) -> bool {
    let mut accepts = head.headers.get_all(ACCEPT).iter().peekable();
    if accepts.peek().is_none() {
        return true;
    }
    accepts.any(|v| {
        v.to_str().unwrap_or("").split(',').any(|t| {
            let t = t.split(';').next().unwrap_or("").trim();
            t.eq_ignore_ascii_case("application/json")
                || t == "*/*"
                || t.eq_ignore_ascii_case("application/*")
        })
    })
}

/// `YYYY-MM-DD`: a protocol version that compares as a date.
fn is_date(v: &str) -> bool {
    v.len() == 10
        && v.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        })
}

/// A SHA-256 of the caller's credential: the key tells identities apart without holding
/// the secret.
fn fingerprint(value: &[u8]) -> [u8; 32] {
    let digest = ring::digest::digest(&ring::digest::SHA256, value);
    let mut out = [0; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// The upstream answer, read for sharing.
pub enum Collected {
    /// All of it, within the bound.
    Whole(Bytes),
    /// Too large, too slow or broken: what was read, then the rest as it comes.
    Partial(ProxyBody),
}

/// Reads `body` whole if it ends within `max` bytes and no frame takes longer than
/// `idle`; otherwise gives back a body that replays what was read and goes on.
pub async fn collect(mut body: ProxyBody, max: usize, idle: Duration) -> Collected {
    let mut read: VecDeque<Bytes> = VecDeque::new();
    let mut len = 0;
    loop {
        let frame = match tokio::time::timeout(idle, body.frame()).await {
            Err(_) => return partial(read, Some(body), None),
            Ok(None) => break,
            Ok(Some(Err(e))) => return partial(read, None, Some(e)),
            Ok(Some(Ok(frame))) => frame,
        };
        let Ok(data) = frame.into_data() else {
            // Trailers: nothing MCP sends; not shared.
            return partial(read, Some(body), None);
        };
        len += data.len();
        read.push_back(data);
        if len > max {
            return partial(read, Some(body), None);
        }
    }
    let whole = match read.len() {
        0 => Bytes::new(),
        1 => read.pop_front().unwrap_or_default(),
        _ => {
            let mut all = Vec::with_capacity(len);
            for piece in &read {
                all.extend_from_slice(piece);
            }
            Bytes::from(all)
        }
    };
    Collected::Whole(whole)
}

fn partial(read: VecDeque<Bytes>, rest: Option<ProxyBody>, error: Option<BoxError>) -> Collected {
    Collected::Partial(Replay { read, rest, error }.boxed_unsync())
}

/// What was read, then the rest of the body (or the error that ended it).
struct Replay {
    read: VecDeque<Bytes>,
    rest: Option<ProxyBody>,
    error: Option<BoxError>,
}

impl Body for Replay {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(bytes) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(Frame::data(bytes))));
        }
        if let Some(e) = this.error.take() {
            return Poll::Ready(Some(Err(e)));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty()
            && self.error.is_none()
            && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Request;

    fn head(headers: &[(&str, &str)]) -> request::Parts {
        let mut r = Request::post("/mcp?x=1");
        for (k, v) in headers {
            r = r.header(*k, *v);
        }
        r.body(()).unwrap().into_parts().0
    }

    fn sharing(passthrough: bool) -> Sharing {
        Sharing::new(&TrafficConfig::default(), passthrough)
    }

    fn shareable(s: &Sharing, body: &str, headers: &[(&str, &str)]) -> Option<Shareable> {
        let parsed = message::parse(body.as_bytes()).unwrap();
        s.shareable(&parsed, &head(headers))
    }

    const MODERN: (&str, &str) = ("mcp-protocol-version", "2026-07-28");

    #[test]
    fn only_single_list_requests_that_accept_json_are_shared() {
        let s = sharing(false);
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"cursor":"c","_meta":{"b":1,"a":2}}}"#;
        let a = shareable(&s, list, &[MODERN]).unwrap();
        assert!(a.cacheable);
        let reordered = r#"{"jsonrpc":"2.0","id":"z","method":"tools/list","params":{"_meta":{"a":2,"b":1},"cursor":"c"}}"#;
        let b = shareable(&s, reordered, &[MODERN]).unwrap();
        assert!(a.key == b.key, "the same parameters in another order");
        assert_eq!(b.id, "z");
        let other_cursor = list.replace("\"c\"", "\"d\"");
        assert!(shareable(&s, &other_cursor, &[MODERN]).unwrap().key != a.key);
        for refused in [
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}"#,
            r#"{"jsonrpc":"2.0","method":"tools/list"}"#,
            r#"[{"jsonrpc":"2.0","id":1,"method":"tools/list"}]"#,
        ] {
            assert!(shareable(&s, refused, &[]).is_none(), "{refused}");
        }
        let big = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{{"cursor":"{}"}}}}"#,
            "c".repeat(MAX_PARAMS_BYTES)
        );
        assert!(shareable(&s, &big, &[]).is_none());
        assert!(shareable(&s, list, &[("accept", "text/event-stream")]).is_none());
        assert!(shareable(
            &s,
            list,
            &[("accept", "application/json, text/event-stream")]
        )
        .is_some());
    }

    #[test]
    fn sessions_identities_and_versions_key_the_answers() {
        let s = sharing(false);
        let list = r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#;
        let legacy = shareable(&s, list, &[("mcp-protocol-version", "2025-11-25")]).unwrap();
        assert!(!legacy.cacheable, "only 2026-07-28 answers are cached");
        let one = shareable(&s, list, &[("mcp-session-id", "s1")]).unwrap();
        let two = shareable(&s, list, &[("mcp-session-id", "s2")]).unwrap();
        assert!(one.key != two.key, "sessions never share");
        let in_session = shareable(&s, list, &[MODERN, ("mcp-session-id", "s1")]).unwrap();
        assert!(!in_session.cacheable);
        let round_trip =
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{"requestState":"x"}}"#;
        assert!(!shareable(&s, round_trip, &[MODERN]).unwrap().cacheable);
        // The sidecar's credential: callers' Authorization is not part of the key.
        let a = shareable(&s, list, &[MODERN, ("authorization", "Bearer a")]).unwrap();
        let b = shareable(&s, list, &[MODERN, ("authorization", "Bearer b")]).unwrap();
        assert!(a.key == b.key);
        let p = sharing(true);
        let a = shareable(&p, list, &[MODERN, ("authorization", "Bearer a")]).unwrap();
        let b = shareable(&p, list, &[MODERN, ("authorization", "Bearer b")]).unwrap();
        assert!(a.key != b.key, "passthrough identities never share");
        assert_ne!(a.key.identity.unwrap().as_slice(), b"Bearer a");
    }

    #[tokio::test]
    async fn large_answers_are_replayed_not_shared() {
        let body = || {
            let stream = futures_util::stream::iter(
                ["ab", "cd", "ef"]
                    .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes())))),
            );
            http_body_util::StreamBody::new(stream).boxed_unsync()
        };
        match collect(body(), 6, Duration::from_secs(5)).await {
            Collected::Whole(b) => assert_eq!(b, "abcdef"),
            Collected::Partial(_) => panic!("within the bound"),
        }
        match collect(body(), 3, Duration::from_secs(5)).await {
            Collected::Partial(rest) => {
                let all = rest.collect().await.unwrap().to_bytes();
                assert_eq!(all, "abcdef", "nothing lost");
            }
            Collected::Whole(_) => panic!("over the bound"),
        }
    }
}
