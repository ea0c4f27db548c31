//! One route's sharing of list answers: which requests may share an upstream answer
//! (coalescing, `coalesce.rs`) or be answered from a kept one (the cache of MCP
//! 2026-07-28 answers, `answer_cache.rs`), and the bounded read of the answer they share.
//!
//! Shared: a single `tools/list`, `resources/list`, `resources/templates/list`,
//! `prompts/list` or `server/discover` request with an id, whose parameters are small
//! and whose agent accepts JSON. Requests are identical when their method, parameters
//! (cursor included), `MCP-Protocol-Version`, `Mcp-Session-Id`, query and, on passthrough
//! routes, caller `Authorization` are (see [`ShareKey`]). The first request's answer
//! streams to its agent as it comes; a copy (bounded) lands for the others when whole.
//!
//! Session-based protocols (2025-xx) take part in coalescing only within one session: a
//! session's answers may depend on that session (and come on its stream), so requests of
//! different sessions never share. Only MCP 2026-07-28 (and later) requests outside any
//! session are cached, and only answers whose `cacheScope` allows it: on a route where
//! the sidecar holds the credential every agent shares its one authorization context, so
//! both `public` and `private` answers are shared between them; on a passthrough route
//! every caller identity has its own entries.

use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_LENGTH};
use http::{request, HeaderMap, StatusCode};
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use super::answer_cache::{AnswerCache, Hit};
use super::coalesce::{Flight, Flights, Joined, Leader, ShareKey};
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
    cache: Option<Arc<AnswerCache>>,
    max_bytes: usize,
    /// Bytes the leaders of the route's flights hold copies of now, all together: at most
    /// [`HELD_ANSWERS`] answers of `share_max_bytes`.
    held: Arc<AtomicUsize>,
    passthrough: bool,
}

/// How many of the largest shared answers the route's flights may hold copies of at once;
/// past that a flight's answer is not shared (its followers send their own).
pub const HELD_ANSWERS: usize = 4;

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
            cache: traffic.cache.then(|| {
                Arc::new(AnswerCache::new(
                    traffic.cache_max_entries,
                    traffic.cache_max_bytes,
                ))
            }),
            max_bytes: usize::try_from(traffic.share_max_bytes).unwrap_or(usize::MAX),
            held: Arc::new(AtomicUsize::new(0)),
            passthrough,
        }
    }

    /// The leader's body: streams `body` on and keeps a copy for the flight (bounded by
    /// `share_max_bytes`, and by what the route's flights hold together).
    pub fn tee(&self, body: ProxyBody, landing: Landing) -> Tee {
        Tee::new(
            body,
            self.max_bytes,
            Held {
                pool: self.held.clone(),
                limit: self.max_bytes.saturating_mul(HELD_ANSWERS),
                taken: 0,
            },
            landing,
        )
    }

    /// Bytes the flights' leaders hold copies of now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
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

    /// Where the leader's answer to `request` is kept, when it may be: the cache, the
    /// key, and `generation`, the route's lists' when the request was sent.
    pub fn keep(
        &self,
        request: &Shareable,
        generation: Option<u64>,
    ) -> Option<(Arc<AnswerCache>, ShareKey, u64)> {
        let cache = self.cache.as_ref().filter(|_| request.cacheable)?;
        Some((cache.clone(), request.key.clone(), generation?))
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

/// What the leader of a flight does with the gateway's answer once it has passed whole:
/// give it to the requests waiting, and keep it when its hints allow.
pub struct Landing {
    pub leader: Leader,
    pub status: StatusCode,
    pub headers: HeaderMap,
    /// The cache, the request's key and the lists' generation when it was sent.
    pub keep: Option<(Arc<AnswerCache>, ShareKey, u64)>,
}

impl Landing {
    fn land(self, whole: Option<Bytes>) {
        let answer = whole.and_then(|b| SharedAnswer::read(self.status, &self.headers, &b));
        let Some(answer) = answer else {
            self.leader.land(Flight::Alone);
            return;
        };
        let answer = Arc::new(answer);
        if let (Some((cache, key, generation)), Some(hints), true) =
            (self.keep, answer.hints, self.status == StatusCode::OK)
        {
            cache.put(
                key,
                answer.clone(),
                Duration::from_millis(hints.ttl_ms),
                generation,
            );
        }
        self.leader.land(Flight::Shared(answer));
    }
}

/// The leader's body: what the gateway sends goes on to the leader's agent as it comes,
/// and a copy (the same `Bytes`, not copied) is kept up to `max` bytes; when the answer
/// has passed whole, it lands. A larger, broken or abandoned answer lands as `Alone`.
pub struct Tee {
    inner: ProxyBody,
    copy: Option<Vec<Bytes>>,
    len: usize,
    max: usize,
    held: Held,
    /// The answer's `Content-Length`: hyper stops polling a body once that much is out.
    expected: Option<usize>,
    landing: Option<Landing>,
}

impl Tee {
    fn new(inner: ProxyBody, max: usize, held: Held, landing: Landing) -> Tee {
        let expected = landing
            .headers
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse().ok());
        Tee {
            inner,
            copy: Some(Vec::new()),
            len: 0,
            max,
            held,
            expected,
            landing: Some(landing),
        }
    }

    fn finish(&mut self, whole: bool) {
        let Some(landing) = self.landing.take() else {
            return;
        };
        let copy = self.copy.take().filter(|_| whole);
        landing.land(copy.map(|pieces| match pieces.len() {
            1 => pieces.into_iter().next().unwrap_or_default(),
            _ => Bytes::from(pieces.concat()),
        }));
        self.held.release();
    }
}

/// Bytes one leader holds a copy of, reserved from the route's pool and given back when
/// the answer lands (or the leader goes away).
struct Held {
    pool: Arc<AtomicUsize>,
    limit: usize,
    taken: usize,
}

impl Held {
    fn take(&mut self, n: usize) -> bool {
        let before = self.pool.fetch_add(n, Ordering::AcqRel);
        self.taken += n;
        before + n <= self.limit
    }

    fn release(&mut self) {
        self.pool
            .fetch_sub(std::mem::take(&mut self.taken), Ordering::AcqRel);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.release();
    }
}

impl Body for Tee {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Pending => {}
            Poll::Ready(Some(Ok(frame))) => match frame.data_ref() {
                Some(data) => {
                    this.len += data.len();
                    if this.copy.is_some() {
                        if this.len > this.max || !this.held.take(data.len()) {
                            this.finish(false);
                        } else if let Some(copy) = &mut this.copy {
                            copy.push(data.clone());
                        }
                    }
                    let ended =
                        this.inner.is_end_stream() || this.expected.is_some_and(|n| this.len >= n);
                    if ended {
                        this.finish(true);
                    }
                }
                // Trailers: nothing MCP sends; not shared.
                None => this.finish(false),
            },
            Poll::Ready(Some(Err(_))) => this.finish(false),
            Poll::Ready(None) => this.finish(true),
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
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

    fn frames(pieces: &[&'static str]) -> ProxyBody {
        use http_body_util::BodyExt;
        let stream = futures_util::stream::iter(
            pieces
                .iter()
                .map(|s| Ok::<_, BoxError>(Frame::data(Bytes::from_static(s.as_bytes()))))
                .collect::<Vec<_>>(),
        );
        http_body_util::StreamBody::new(stream).boxed_unsync()
    }

    async fn lead(sharing: &Sharing, pieces: &[&'static str]) -> (Bytes, Flight) {
        use http_body_util::BodyExt;
        let flights = Arc::new(Flights::default());
        let key = ShareKey {
            method: "tools/list".into(),
            params: "{}".into(),
            protocol: None,
            session: None,
            identity: None,
            query: None,
        };
        let Joined::Lead(leader) = flights.join(key.clone()) else {
            panic!()
        };
        let Joined::Follow(follower) = flights.join(key) else {
            panic!()
        };
        let landing = Landing {
            leader,
            status: StatusCode::OK,
            headers: HeaderMap::new(),
            keep: None,
        };
        let tee = sharing.tee(frames(pieces), landing);
        let out = tee.collect().await.unwrap().to_bytes();
        (out, follower.outcome().await)
    }

    #[tokio::test]
    async fn the_leader_streams_and_the_others_get_the_whole_answer() {
        let sharing = sharing(false);
        let (out, flight) = lead(
            &sharing,
            &[r#"{"jsonrpc":"2.0","id":1,"#, r#""result":{}}"#],
        )
        .await;
        assert_eq!(out, r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
        assert!(matches!(flight, Flight::Shared(_)));
        assert_eq!(sharing.held(), 0, "the copy is given back");
        // Over share_max_bytes: the leader still gets all of it, the others their own.
        let small = Sharing::new(
            &TrafficConfig {
                share_max_bytes: 10,
                ..TrafficConfig::default()
            },
            false,
        );
        let (out, flight) = lead(&small, &[r#"{"jsonrpc":"2.0","id":1,"#, r#""result":{}}"#]).await;
        assert_eq!(out.len(), 36);
        assert!(matches!(flight, Flight::Alone));
        assert_eq!(small.held(), 0);
    }
}
