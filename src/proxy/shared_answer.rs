//! An answer of the gateway that several requests get: the one upstream answer to
//! identical list requests in flight (coalescing), or one kept for its `ttlMs` (the
//! cache). It is read once, whole and bounded, into the parts that every copy shares
//! (`Bytes` slices, never copied), and rendered for each request with that request's own
//! id, as `application/json` (which every MCP client accepts for a POST).
//!
//! Only a JSON-RPC response is shared: a JSON answer, or the response event of an SSE
//! answer (the progress and log notifications before it belong to the request that asked
//! and are not repeated). Anything else is passed on to the request that asked only.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ops::Range;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE, RETRY_AFTER};
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

use crate::exchange::body::{BoxError, ProxyBody};
use crate::mcp::sse::{Collect, Scanner};

/// What a shared answer may be cached as (MCP 2026-07-28 caching hints).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hints {
    pub ttl_ms: u64,
    /// `cacheScope: "public"`: the same for every caller.
    pub public: bool,
}

#[derive(Debug)]
pub struct SharedAnswer {
    status: StatusCode,
    retry_after: Option<HeaderValue>,
    /// The JSON text of the gateway's response object.
    text: Bytes,
    /// `"result"` or `"error"`.
    member: &'static str,
    /// Where the member's value is in `text`.
    value: Range<usize>,
    /// Where `ttlMs`'s value is in `text` (inside `value`), for a cached copy to say how
    /// much of it is left.
    ttl: Option<Range<usize>>,
    /// The caching hints of a complete result.
    pub hints: Option<Hints>,
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(borrow, default)]
    result: Option<&'a RawValue>,
    #[serde(borrow, default)]
    error: Option<&'a RawValue>,
    #[serde(borrow, default)]
    method: Option<&'a RawValue>,
}

impl SharedAnswer {
    /// Reads the gateway's whole answer: a JSON-RPC response (JSON, or the response
    /// event of an SSE stream), or None when it is not one.
    pub fn read(status: StatusCode, headers: &HeaderMap, body: &Bytes) -> Option<SharedAnswer> {
        let sse = headers
            .get(CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"text/event-stream"));
        let text = if sse {
            response_event(body)?
        } else {
            body.clone()
        };
        // One response object (serde would read a struct from an array too).
        if text.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return None;
        }
        let reply: Reply<'_> = serde_json::from_slice(&text).ok()?;
        if reply.method.is_some() {
            return None;
        }
        let (member, raw) = match (reply.result, reply.error) {
            (Some(r), None) => ("result", r),
            (None, Some(e)) => ("error", e),
            _ => return None,
        };
        let value = span(&text, raw.get())?;
        let (ttl, hints) = if member == "result" {
            hints(&text, raw.get())
        } else {
            (None, None)
        };
        Some(SharedAnswer {
            status,
            retry_after: headers.get(RETRY_AFTER).cloned(),
            member,
            value,
            ttl,
            hints,
            text,
        })
    }

    /// Bytes held (what the cache counts).
    pub fn size(&self) -> usize {
        self.text.len()
    }

    /// The answer for the request `id`: the gateway's status, JSON, the shared bytes
    /// between a head and a tail of its own. `ttl_left` replaces `ttlMs` (a cached copy).
    pub fn respond(&self, id: &Value, ttl_left: Option<u64>) -> Response<ProxyBody> {
        let head = Bytes::from(format!(
            r#"{{"jsonrpc":"2.0","id":{},"{}":"#,
            id, self.member
        ));
        let mut frames = vec![head];
        match (&self.ttl, ttl_left) {
            (Some(ttl), Some(left)) => {
                frames.push(self.text.slice(self.value.start..ttl.start));
                frames.push(Bytes::from(left.to_string()));
                frames.push(self.text.slice(ttl.end..self.value.end));
            }
            _ => frames.push(self.text.slice(self.value.clone())),
        }
        frames.push(Bytes::from_static(b"}"));
        let length: usize = frames.iter().map(Bytes::len).sum();
        let stream = futures_util::stream::iter(
            frames
                .into_iter()
                .filter(|b| !b.is_empty())
                .map(|b| Ok::<_, BoxError>(Frame::data(b))),
        );
        let mut response = Response::new(StreamBody::new(stream).boxed_unsync());
        *response.status_mut() = self.status;
        let headers = response.headers_mut();
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        if let Some(wait) = &self.retry_after {
            headers.insert(RETRY_AFTER, wait.clone());
        }
        response
    }
}

/// Where `inner` (a slice of `outer`, as serde_json's borrowed `RawValue` is) lies.
fn span(outer: &[u8], inner: &str) -> Option<Range<usize>> {
    let start = (inner.as_ptr() as usize).checked_sub(outer.as_ptr() as usize)?;
    let end = start + inner.len();
    (end <= outer.len()).then_some(start..end)
}

/// The caching hints of a result, and where its `ttlMs` value is. A result that is not
/// complete (`resultType: "input_required"`), has no positive `ttlMs` or an unknown
/// `cacheScope` has none.
fn hints(text: &[u8], result: &str) -> (Option<Range<usize>>, Option<Hints>) {
    let Ok(fields) = serde_json::from_str::<BTreeMap<Cow<'_, str>, &RawValue>>(result) else {
        return (None, None);
    };
    let ttl_raw = fields.get("ttlMs");
    let ttl = ttl_raw.and_then(|raw| span(text, raw.get()));
    let ttl_ms = ttl_raw.and_then(|raw| raw.get().parse::<u64>().ok());
    let scope = fields
        .get("cacheScope")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok());
    let complete = fields
        .get("resultType")
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
        .is_none_or(|t| t == "complete");
    let hints = match (ttl_ms, scope.as_deref()) {
        (Some(ttl_ms), Some(scope @ ("public" | "private"))) if ttl_ms > 0 && complete => {
            Some(Hints {
                ttl_ms,
                public: scope == "public",
            })
        }
        _ => None,
    };
    (ttl, hints)
}

/// The data of the first event of an SSE answer that is a JSON-RPC response.
fn response_event(body: &Bytes) -> Option<Bytes> {
    let mut scanner = Scanner::default();
    let mut at = 0;
    while at < body.len() {
        let mut event = Collect::default();
        // An event the stream did not finish is not dispatched.
        at += scanner.feed(&body[at..], &mut event)?;
        if !event.has_data() {
            continue;
        }
        let object = event.data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        let is_response = object
            && serde_json::from_slice::<Reply<'_>>(&event.data)
                .is_ok_and(|r| r.method.is_none() && (r.result.is_some() || r.error.is_some()));
        if is_response {
            return Some(Bytes::from(event.data));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn headers(content_type: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, HeaderValue::from_str(content_type).unwrap());
        h
    }

    async fn text(r: Response<ProxyBody>) -> (StatusCode, HeaderMap, String) {
        let (parts, body) = r.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes();
        (
            parts.status,
            parts.headers,
            String::from_utf8(bytes.to_vec()).unwrap(),
        )
    }

    #[tokio::test]
    async fn each_request_gets_the_answer_with_its_own_id() {
        let body = Bytes::from(
            r#"{"jsonrpc":"2.0","id":"leader","result":{"tools":[{"name":"a"}],"ttlMs":60000,"cacheScope":"private","resultType":"complete"}}"#,
        );
        let a = SharedAnswer::read(StatusCode::OK, &headers("application/json"), &body).unwrap();
        assert_eq!(
            a.hints,
            Some(Hints {
                ttl_ms: 60000,
                public: false
            })
        );
        let (status, h, out) = text(a.respond(&json!(7), None)).await;
        assert_eq!(status, 200);
        assert_eq!(h[CONTENT_LENGTH], out.len().to_string());
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], 7);
        assert_eq!(v["result"]["tools"][0]["name"], "a");
        assert_eq!(v["result"]["ttlMs"], 60000);
        let (_, _, out) = text(a.respond(&json!("x"), Some(1234))).await;
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["result"]["ttlMs"], 1234, "{out}");
        assert_eq!(v["result"]["cacheScope"], "private");
    }

    #[tokio::test]
    async fn the_response_event_of_an_sse_answer_is_shared() {
        let body = Bytes::from(
            "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n: keep-alive\n\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\ndata: \"error\":{\"code\":-32003,\"message\":\"Rate limit exceeded\"}}\n\n",
        );
        // Two data lines: joined by a newline, which JSON reads as a space.
        let a = SharedAnswer::read(StatusCode::OK, &headers("text/event-stream"), &body).unwrap();
        assert!(a.hints.is_none());
        let (_, h, out) = text(a.respond(&json!(2), None)).await;
        assert_eq!(h[CONTENT_TYPE], "application/json");
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["id"], 2);
        assert_eq!(v["error"]["code"], -32003);
    }

    #[test]
    fn only_responses_with_usable_hints_are_shared_or_cached() {
        let read = |s: &str| {
            SharedAnswer::read(
                StatusCode::OK,
                &headers("application/json"),
                &Bytes::from(s.to_string()),
            )
        };
        assert!(read("not json").is_none());
        assert!(read(r#"{"jsonrpc":"2.0","method":"x"}"#).is_none());
        assert!(read(r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#).is_none());
        for (result, cacheable) in [
            (r#"{"ttlMs":5,"cacheScope":"public"}"#, true),
            (r#"{"ttlMs":0,"cacheScope":"public"}"#, false),
            (r#"{"ttlMs":5}"#, false),
            (r#"{"ttlMs":5,"cacheScope":"shared"}"#, false),
            (
                r#"{"ttlMs":5,"cacheScope":"public","resultType":"input_required"}"#,
                false,
            ),
        ] {
            let a = read(&format!(r#"{{"jsonrpc":"2.0","id":1,"result":{result}}}"#)).unwrap();
            assert_eq!(a.hints.is_some(), cacheable, "{result}");
        }
        let sse = SharedAnswer::read(
            StatusCode::OK,
            &headers("text/event-stream"),
            &Bytes::from_static(b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}"),
        );
        assert!(sse.is_none(), "an unfinished event is not an answer");
    }
}
