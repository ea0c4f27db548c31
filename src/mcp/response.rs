//! The response body of a watched request: frames pass through as they arrive while the
//! probe notes tool-call outcomes; answers the tool policy must filter are held (one SSE
//! event, or a JSON body), bounded by `max_filter_bytes`.
//!
//! What is filtered never depends on ids the agent chose or the gateway wrote back: when
//! the request asked for anything that lists tools (or the answer is a GET stream), every
//! response in the answer is read and filtered by what it carries.
//!
//! - JSON answers that need no change stream through untouched. A filtered JSON answer,
//!   or one that refused batch elements must be merged into, is held whole (bounded),
//!   rewritten and sent in one frame.
//! - SSE answers being filtered: each event is held until it is complete (as `Bytes`
//!   pieces of the frames, not copied), then parsed and, when it lists tools, rewritten;
//!   events without data go on as they are. Errors for refused batch elements go out as
//!   events of their own, first.
//! - An answer over the bound, one that cannot be read, or one in a content encoding the
//!   proxy did not ask for is replaced whole by JSON-RPC errors for the requests it
//!   answers (fail closed): refused tools are never shown, and nothing is appended to a
//!   body that could not be filtered.

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use serde_json::Value;

use super::probe::Probe;
use super::sse::{self, Collect, Field, Scanner, Sink};
use super::watch::{Ending, Watch};
use crate::exchange::body::{BoxError, ProxyBody};
use crate::exchange::error::ProxyError;
use crate::ops::audit::Outcome;

/// How the answer is read.
pub enum Kind {
    Json,
    Sse,
    /// An HTTP error from the gateway: passed through; pending calls failed upstream.
    Error,
    /// An answer in a content encoding (gzip, …) the proxy did not ask for: withheld when
    /// it must be filtered, passed through otherwise (its outcomes cannot be read).
    Encoded,
}

pub struct McpBody {
    inner: ProxyBody,
    out: VecDeque<Bytes>,
    /// The inspection's own box, kept: the watch (~400 bytes) is not copied again.
    watch: Box<Watch>,
    status: u16,
    received: u64,
    mode: Mode,
    /// The inner body is done (or abandoned after a fail-closed answer).
    ended: bool,
}

enum Mode {
    /// Boxed like the SSE state: inline, every SSE stream's body would carry its ~360
    /// unused bytes (measured: +0.45 KB per idle stream).
    Json(Box<JsonState>),
    Sse(Box<SseState>),
    /// Passed through unread; pending calls end with this reason.
    Opaque(&'static str),
}

struct JsonState {
    probe: Probe,
    /// Held frames, when the body must be rewritten.
    held: Option<Vec<Bytes>>,
    held_len: usize,
}

#[derive(Default)]
struct SseState {
    scanner: Scanner,
    probe: Probe,
    data_lines: usize,
    /// The current event is being held.
    holding: bool,
    held: Vec<Bytes>,
    held_len: usize,
    /// The rest of the current event is dropped (it was answered by an error instead).
    dropping: bool,
    /// The previous event ended with a CR as the last byte of a frame: the LF that may
    /// open this event's bytes still belongs to that line end.
    starts_after_cr: bool,
}

/// Feeds the data of SSE events to the probe, a newline between data lines.
struct ProbeSink<'a> {
    probe: &'a mut Probe,
    data_lines: &'a mut usize,
}

impl Sink for ProbeSink<'_> {
    fn field_start(&mut self, field: Field) {
        if field == Field::Data {
            if *self.data_lines > 0 {
                self.probe.feed(b"\n");
            }
            *self.data_lines += 1;
        }
    }

    fn value(&mut self, field: Field, bytes: &[u8]) {
        if field == Field::Data {
            self.probe.feed(bytes);
        }
    }
}

impl McpBody {
    pub fn new(inner: ProxyBody, watch: impl Into<Box<Watch>>, status: u16, kind: Kind) -> McpBody {
        let mut out = VecDeque::new();
        let mut watch = watch.into();
        let mode = match kind {
            Kind::Json => {
                let hold = watch.filtering() || !watch.extras.is_empty();
                Mode::Json(Box::new(JsonState {
                    probe: Probe::default(),
                    held: hold.then(Vec::new),
                    held_len: 0,
                }))
            }
            Kind::Sse => {
                for extra in std::mem::take(&mut watch.extras) {
                    out.push_back(Bytes::from(sse::event(&extra.to_string())));
                }
                let holding = watch.filtering();
                Mode::Sse(Box::new(SseState {
                    holding,
                    ..SseState::default()
                }))
            }
            Kind::Error | Kind::Encoded => {
                if !watch.extras.is_empty() {
                    tracing::warn!(
                        route = %watch.recorder.route,
                        status,
                        "the gateway's answer to the rest of the batch cannot be merged into; the errors for the elements the policy refused are not delivered"
                    );
                }
                Mode::Opaque(if matches!(kind, Kind::Error) {
                    "http_error"
                } else {
                    "encoded_answer"
                })
            }
        };
        let withhold = matches!(kind, Kind::Encoded) && watch.filtering();
        let mut body = McpBody {
            inner,
            out,
            watch,
            status,
            received: 0,
            mode,
            ended: false,
        };
        if withhold {
            body.mode = Mode::Json(Box::new(JsonState {
                probe: Probe::default(),
                held: None,
                held_len: 0,
            }));
            let err = unreadable(
                "the gateway's answer is compressed (Content-Encoding), which the tool policy cannot read",
            );
            let errors = body.watch.fail_closed(&err, None);
            body.answer_json(errors);
            body.cut();
        }
        body
    }

    fn process(&mut self, data: Bytes) {
        self.received += data.len() as u64;
        match &mut self.mode {
            Mode::Opaque(_) => self.out.push_back(data),
            Mode::Json(_) => self.json_frame(data),
            Mode::Sse(_) => self.sse_frame(data),
        }
    }

    fn json_frame(&mut self, data: Bytes) {
        let Mode::Json(st) = &mut self.mode else {
            return;
        };
        st.probe.feed(&data);
        for facts in st.probe.take_done() {
            self.watch.settle(&facts, self.status, self.received);
        }
        let Some(held) = &mut st.held else {
            self.out.push_back(data);
            return;
        };
        st.held_len += data.len();
        held.push(data);
        if st.held_len <= self.watch.max_filter_bytes {
            return;
        }
        let held = st.held.take().unwrap_or_default();
        if self.watch.filtering() {
            let err = too_large(self.watch.max_filter_bytes);
            let errors = self.watch.fail_closed(&err, None);
            self.answer_json(errors);
            self.cut();
        } else {
            tracing::warn!(
                route = %self.watch.recorder.route,
                "the gateway's answer to a batch is larger than policy.max_filter_bytes; passing it on without the errors for the elements the policy refused"
            );
            self.watch.extras.clear();
            self.out.extend(held);
        }
    }

    fn json_end(&mut self) {
        let Mode::Json(st) = &mut self.mode else {
            return;
        };
        let Some(held) = st.held.take() else { return };
        let body = concat(&held);
        let parsed = if body.iter().all(u8::is_ascii_whitespace) {
            // 202 Accepted: nothing came back for the forwarded part of a batch.
            Ok(Value::Array(Vec::new()))
        } else {
            serde_json::from_slice::<Value>(&body)
        };
        match parsed {
            Ok(mut value) => {
                let removed = if self.watch.filtering() {
                    self.watch.filter(&mut value)
                } else {
                    0
                };
                let mut changed = removed > 0;
                if changed {
                    tracing::debug!(route = %self.watch.recorder.route, removed, "tools hidden by the tool policy");
                }
                let extras = std::mem::take(&mut self.watch.extras);
                if !extras.is_empty() {
                    merge(&mut value, extras);
                    changed = true;
                }
                // Nothing hidden, nothing added: the gateway's own bytes go on.
                self.out.push_back(if changed {
                    Bytes::from(value.to_string())
                } else {
                    body
                });
            }
            Err(e) if self.watch.filtering() => {
                let err = unreadable(&format!("the gateway's answer is not JSON ({e})"));
                let errors = self.watch.fail_closed(&err, None);
                self.answer_json(errors);
            }
            Err(_) => {
                tracing::warn!(
                    route = %self.watch.recorder.route,
                    "the gateway's answer to a batch is not JSON; passing it on without the errors for the elements the policy refused"
                );
                self.watch.extras.clear();
                self.out.push_back(body);
            }
        }
    }

    /// A JSON answer made of `errors` (and the extras), in place of the gateway's.
    fn answer_json(&mut self, mut errors: Vec<Value>) {
        errors.append(&mut self.watch.extras);
        let value = if errors.len() == 1 && !self.watch.batch {
            errors.pop().unwrap_or(Value::Null)
        } else {
            Value::Array(errors)
        };
        self.out.push_back(Bytes::from(value.to_string()));
    }

    /// Stops reading the gateway's answer (it was replaced).
    fn cut(&mut self) {
        self.ended = true;
        let received = self.received;
        let status = self.status;
        self.watch.end_all(|| Ending {
            outcome: Outcome::UpstreamFailure,
            error_code: Some(ProxyError::FilterFailed(String::new()).rpc_code()),
            reason: Some("filter_failed".into()),
            status,
            response_bytes: received,
        });
    }

    fn sse_frame(&mut self, data: Bytes) {
        let mut start = 0;
        let mut pass: Option<(usize, usize)> = None;
        while start < data.len() {
            let Mode::Sse(st) = &mut self.mode else {
                return;
            };
            let fed = {
                let mut sink = ProbeSink {
                    probe: &mut st.probe,
                    data_lines: &mut st.data_lines,
                };
                st.scanner.feed(&data[start..], &mut sink)
            };
            let end = fed.map_or(data.len(), |n| start + n);
            if st.dropping {
                flush(&mut self.out, &data, &mut pass);
            } else if st.holding {
                flush(&mut self.out, &data, &mut pass);
                st.held.push(data.slice(start..end));
                st.held_len += end - start;
                if st.held_len > self.watch.max_filter_bytes {
                    st.holding = false;
                    st.dropping = true;
                    st.held.clear();
                    st.held_len = 0;
                    // The error answers this event's request when the event is one
                    // readable response; otherwise every request still waiting.
                    let single = st.probe.done().is_empty() && !st.probe.in_batch();
                    let id = single
                        .then(|| st.probe.current().and_then(|f| f.id.clone()))
                        .flatten();
                    let err = too_large(self.watch.max_filter_bytes);
                    for e in self.watch.fail_closed(&err, id.as_ref()) {
                        self.out.push_back(Bytes::from(sse::event(&e.to_string())));
                    }
                }
            } else {
                pass = Some((pass.map_or(start, |p| p.0), end));
            }
            if fed.is_some() {
                flush(&mut self.out, &data, &mut pass);
                self.sse_event_end();
            }
            start = end;
        }
        flush(&mut self.out, &data, &mut pass);
    }

    fn sse_event_end(&mut self) {
        let Mode::Sse(st) = &mut self.mode else {
            return;
        };
        let done = st.probe.take_done();
        st.probe.reset();
        st.data_lines = 0;
        st.dropping = false;
        let after_cr = st.scanner.after_cr();
        if st.holding {
            let held = std::mem::take(&mut st.held);
            st.held_len = 0;
            let starts_after_cr = st.starts_after_cr;
            let rewritten = self.rewrite_event(&held, starts_after_cr);
            self.out.push_back(rewritten);
        }
        for facts in &done {
            self.watch.settle(facts, self.status, self.received);
        }
        if let Mode::Sse(st) = &mut self.mode {
            st.holding = self.watch.filtering();
            st.starts_after_cr = after_cr;
        }
    }

    /// A held event: its data is parsed and filtered, and the event written again when a
    /// tool was hidden. An event without data is not dispatched by clients: it goes on.
    fn rewrite_event(&mut self, held: &[Bytes], starts_after_cr: bool) -> Bytes {
        let mut scanner = Scanner::default();
        let mut fields = Collect::default();
        let mut lf = false;
        for (i, piece) in held.iter().enumerate() {
            let mut piece = &piece[..];
            if i == 0 && starts_after_cr && piece.first() == Some(&b'\n') {
                // The LF of the previous event's CRLF: keep it where it was.
                lf = true;
                piece = &piece[1..];
            }
            scanner.feed(piece, &mut fields);
        }
        if !fields.has_data() || fields.data.iter().all(u8::is_ascii_whitespace) {
            return concat(held);
        }
        match serde_json::from_slice::<Value>(&fields.data) {
            Ok(mut value) => {
                let removed = self.watch.filter(&mut value);
                if removed == 0 {
                    // Nothing to hide: the gateway's own bytes go on.
                    return concat(held);
                }
                tracing::debug!(route = %self.watch.recorder.route, removed, "tools hidden by the tool policy");
                let mut out = Vec::new();
                if lf {
                    out.push(b'\n');
                }
                out.extend(fields.rewrite(&value.to_string()));
                Bytes::from(out)
            }
            Err(e) => {
                let err = unreadable(&format!(
                    "an event of the gateway's answer is not JSON ({e})"
                ));
                let errors = self.watch.fail_closed(&err, None);
                let mut out = Vec::new();
                for e in errors {
                    out.extend(sse::event(&e.to_string()));
                }
                Bytes::from(out)
            }
        }
    }

    fn end(&mut self) {
        // The answer is complete: the in-flight slot is free again.
        self.watch.permit = None;
        match &self.mode {
            Mode::Json(_) => self.json_end(),
            Mode::Sse(_) => {
                // An unfinished event at the end is not dispatched by clients; one that
                // might carry a filtered answer is not passed on either.
                if let Mode::Sse(st) = &mut self.mode {
                    if st.holding && !st.held.is_empty() {
                        st.held.clear();
                    }
                }
            }
            Mode::Opaque(_) => {}
        }
        let (status, received) = (self.status, self.received);
        let reason = match self.mode {
            Mode::Opaque(reason) => reason,
            _ => "no_answer",
        };
        self.watch.end_all(|| Ending {
            outcome: Outcome::UpstreamFailure,
            error_code: None,
            reason: Some(reason.into()),
            status,
            response_bytes: received,
        });
    }
}

fn flush(out: &mut VecDeque<Bytes>, data: &Bytes, pass: &mut Option<(usize, usize)>) {
    if let Some((a, b)) = pass.take() {
        if b > a {
            out.push_back(data.slice(a..b));
        }
    }
}

fn concat(pieces: &[Bytes]) -> Bytes {
    match pieces {
        [] => Bytes::new(),
        [one] => one.clone(),
        many => {
            let mut all = Vec::with_capacity(many.iter().map(Bytes::len).sum());
            for p in many {
                all.extend_from_slice(p);
            }
            Bytes::from(all)
        }
    }
}

/// Adds `more` responses to a JSON answer (making a single response a batch).
fn merge(value: &mut Value, more: Vec<Value>) {
    if more.is_empty() {
        return;
    }
    match value {
        Value::Array(items) => items.extend(more),
        single => {
            let first = std::mem::take(single);
            let mut items = vec![first];
            items.extend(more);
            *single = Value::Array(items);
        }
    }
}

fn too_large(limit: usize) -> ProxyError {
    ProxyError::FilterFailed(format!(
        "the gateway's answer listing tools is larger than policy.max_filter_bytes ({limit} bytes), the most the tool policy filters; it is withheld rather than shown unfiltered"
    ))
}

fn unreadable(why: &str) -> ProxyError {
    ProxyError::FilterFailed(format!(
        "{why}; the tool policy cannot filter it, so it is withheld"
    ))
}

impl Body for McpBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        loop {
            if let Some(bytes) = this.out.pop_front() {
                return Poll::Ready(Some(Ok(Frame::data(bytes))));
            }
            if this.ended {
                return Poll::Ready(None);
            }
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => this.process(data),
                    Err(trailers) => return Poll::Ready(Some(Ok(trailers))),
                },
                Poll::Ready(Some(Err(e))) => {
                    let (status, received) = (this.status, this.received);
                    this.watch.end_all(|| Ending {
                        outcome: Outcome::UpstreamFailure,
                        error_code: None,
                        reason: Some("stream_failed".into()),
                        status,
                        response_bytes: received,
                    });
                    this.ended = true;
                    return Poll::Ready(Some(Err(e)));
                }
                Poll::Ready(None) => {
                    this.ended = true;
                    this.end();
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.out.is_empty()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for McpBody {
    fn drop(&mut self) {
        // The agent went away (or the stream was cut) before every answer came.
        let (status, received) = (self.status, self.received);
        self.watch.end_all(|| Ending {
            outcome: Outcome::UpstreamFailure,
            error_code: None,
            reason: Some("client_went_away".into()),
            status,
            response_bytes: received,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exchange::context::Recorder;
    use crate::mcp::config::PolicyConfig;
    use crate::mcp::policy::ToolPolicy;
    use crate::mcp::watch::Expect;
    use crate::ops::audit::AuditSink;
    use http_body_util::BodyExt;
    use serde_json::json;
    use std::sync::{Arc, Mutex};

    /// A body whose frames the test hands over one at a time; Pending in between.
    #[derive(Clone, Default)]
    struct Gate(Arc<Mutex<(VecDeque<Bytes>, bool)>>);

    impl Gate {
        fn push(&self, b: &[u8]) -> Bytes {
            let bytes = Bytes::copy_from_slice(b);
            self.0.lock().unwrap().0.push_back(bytes.clone());
            bytes
        }
        fn close(&self) {
            self.0.lock().unwrap().1 = true;
        }
    }

    impl Body for Gate {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            let mut s = self.0.lock().unwrap();
            match s.0.pop_front() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None if s.1 => Poll::Ready(None),
                None => Poll::Pending,
            }
        }
    }

    fn watch(expected: Vec<(Value, Expect)>, limit: usize) -> Watch {
        let policy = ToolPolicy::new(&PolicyConfig {
            deny_tools: vec!["Other___*".into()],
            ..PolicyConfig::default()
        })
        .unwrap();
        Watch {
            recorder: Recorder::new("mcp", &AuditSink::default()),
            calls: Default::default(),
            policy: Arc::new(policy),
            filtering: !expected.is_empty(),
            search: false,
            expected,
            extras: Vec::new(),
            batch: false,
            max_filter_bytes: limit,
            permit: None,
            throttles: None,
            subjects: Default::default(),
            lists: None,
        }
    }

    /// Polls until Pending or the end; returns the frames that came out.
    fn drain(body: &mut McpBody) -> (Vec<Bytes>, bool) {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut out = Vec::new();
        loop {
            match Pin::new(&mut *body).poll_frame(&mut cx) {
                Poll::Ready(Some(Ok(f))) => out.push(f.into_data().unwrap()),
                Poll::Ready(Some(Err(e))) => panic!("{e}"),
                Poll::Ready(None) => return (out, true),
                Poll::Pending => return (out, false),
            }
        }
    }

    const NOTE: &str = "event: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\r\n\r\n";

    fn list_event() -> String {
        let answer = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"Demo___echo"},{"name":"Other___delete"},{"name":"Demo___weather"}
        ],"nextCursor":"c2"}});
        format!("id: 5\ndata: {answer}\n\n")
    }

    fn filtered_event() -> String {
        let answer = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"Demo___echo"},{"name":"Demo___weather"}
        ],"nextCursor":"c2"}});
        format!("id: 5\ndata: {answer}\n\n")
    }

    #[tokio::test]
    async fn sse_only_the_answer_is_rewritten_wherever_the_frames_split() {
        let stream = format!("{NOTE}{}: ping\n\n", list_event());
        let expected = format!("{NOTE}{}: ping\n\n", filtered_event());
        for cut in 0..=stream.len() {
            let gate = Gate::default();
            gate.push(&stream.as_bytes()[..cut]);
            gate.push(&stream.as_bytes()[cut..]);
            gate.close();
            let body = McpBody::new(
                gate.boxed_unsync(),
                watch(vec![(json!(1), Expect::List)], 1 << 20),
                200,
                Kind::Sse,
            );
            let out = body.collect().await.unwrap().to_bytes();
            assert_eq!(String::from_utf8_lossy(&out), expected, "cut at {cut}");
        }
    }

    #[test]
    fn sse_other_events_go_out_at_once_and_uncopied() {
        let gate = Gate::default();
        let list = list_event();
        let (head, tail) = list.split_at(20);
        let first = format!("{NOTE}{head}");
        let frame = gate.push(first.as_bytes());
        let mut body = McpBody::new(
            gate.clone().boxed_unsync(),
            watch(vec![(json!(1), Expect::List)], 1 << 20),
            200,
            Kind::Sse,
        );
        let (out, ended) = drain(&mut body);
        assert!(!ended);
        assert_eq!(
            out.len(),
            1,
            "the notification, while the answer is still held"
        );
        assert_eq!(out[0], NOTE.as_bytes());
        assert_eq!(
            out[0].as_ptr(),
            frame.as_ptr(),
            "a slice of the frame, not a copy"
        );
        gate.push(tail.as_bytes());
        let last = gate.push(NOTE.as_bytes());
        gate.close();
        let (out, ended) = drain(&mut body);
        assert!(ended);
        assert_eq!(out[0], filtered_event().as_bytes());
        // A whole event in one frame goes on as that frame, uncopied.
        assert_eq!(out[1], NOTE.as_bytes());
        assert_eq!(out[1].as_ptr(), last.as_ptr());
    }

    #[tokio::test]
    async fn sse_answer_over_the_bound_is_replaced_by_an_error() {
        let gate = Gate::default();
        gate.push(NOTE.as_bytes());
        gate.push(list_event().as_bytes());
        gate.close();
        let body = McpBody::new(
            gate.boxed_unsync(),
            // Above the notification (103 bytes), below the listing (145).
            watch(vec![(json!(1), Expect::List)], 120),
            200,
            Kind::Sse,
        );
        let out = body.collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&out);
        assert!(text.starts_with(NOTE), "{text}");
        let event = text[NOTE.len()..].strip_prefix("data: ").unwrap();
        let error: Value = serde_json::from_str(event.trim_end()).unwrap();
        assert_eq!(error["id"], 1);
        assert_eq!(error["error"]["code"], -31014);
        assert!(!text.contains("Other___delete"));
    }

    #[tokio::test]
    async fn resumed_streams_filter_any_answer_listing_tools() {
        let gate = Gate::default();
        gate.push(format!("{NOTE}{}", list_event()).as_bytes());
        let other = "data: {\"jsonrpc\":\"2.0\",\"id\":9,\"result\":{\"content\":[]}}\n\n";
        gate.push(other.as_bytes());
        gate.close();
        let mut w = watch(Vec::new(), 1 << 20);
        w.filtering = true;
        let body = McpBody::new(gate.boxed_unsync(), w, 200, Kind::Sse);
        let out = body.collect().await.unwrap().to_bytes();
        assert_eq!(
            String::from_utf8_lossy(&out),
            format!("{NOTE}{}{other}", filtered_event())
        );
    }

    #[tokio::test]
    async fn json_answers_are_filtered_or_withheld() {
        let answer = json!({"jsonrpc":"2.0","id":1,"result":{"tools":[
            {"name":"Demo___echo"},{"name":"Other___delete"}]}})
        .to_string();
        for (limit, expect_error) in [(1 << 20, false), (40, true)] {
            let gate = Gate::default();
            let (a, b) = answer.split_at(30);
            gate.push(a.as_bytes());
            gate.push(b.as_bytes());
            gate.close();
            let body = McpBody::new(
                gate.boxed_unsync(),
                watch(vec![(json!(1), Expect::List)], limit),
                200,
                Kind::Json,
            );
            let out: Value =
                serde_json::from_slice(&body.collect().await.unwrap().to_bytes()).unwrap();
            if expect_error {
                assert_eq!(out["error"]["code"], -31014);
                assert_eq!(out["id"], 1);
            } else {
                assert_eq!(out["result"]["tools"], json!([{"name":"Demo___echo"}]));
            }
        }
    }

    async fn through(w: Watch, kind: Kind, body: &str) -> String {
        let gate = Gate::default();
        gate.push(body.as_bytes());
        gate.close();
        let out = McpBody::new(gate.boxed_unsync(), w, 200, kind)
            .collect()
            .await
            .unwrap()
            .to_bytes();
        String::from_utf8(out.to_vec()).unwrap()
    }

    const LIST: &str =
        r#"{"tools":[{"name":"Demo___echo"},{"name":"Other___delete"}],"nextCursor":"c"}"#;

    #[tokio::test]
    async fn answers_are_filtered_whatever_id_the_gateway_writes_back() {
        let long = format!("\"{}\"", "A".repeat(300));
        for id in [
            "1.0",
            "1e0",
            "-0",
            "9007199254740993",
            "\"other\"",
            "null",
            &long,
        ] {
            let answer = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{LIST}}}"#);
            let json = through(
                watch(vec![(json!(1), Expect::List)], 1 << 20),
                Kind::Json,
                &answer,
            )
            .await;
            assert!(!json.contains("Other___delete"), "json, id {id}: {json}");
            assert!(json.contains("Demo___echo"), "json, id {id}: {json}");
            let sse = through(
                watch(vec![(json!(1), Expect::List)], 1 << 20),
                Kind::Sse,
                &format!("{NOTE}data: {answer}\n\n"),
            )
            .await;
            assert!(!sse.contains("Other___delete"), "sse, id {id}: {sse}");
            assert!(sse.contains("Demo___echo"), "sse, id {id}: {sse}");
        }
    }

    #[tokio::test]
    async fn every_response_of_a_batch_answer_is_filtered() {
        // Two answers with the same id (a ping's and the list's): neither gets through.
        let answer = format!(
            r#"[{{"jsonrpc":"2.0","id":1,"result":{{}}}},{{"jsonrpc":"2.0","id":1,"result":{LIST}}}]"#
        );
        let w = watch(
            vec![(json!(1), Expect::Other), (json!(2), Expect::List)],
            1 << 20,
        );
        let json = through(w, Kind::Json, &answer).await;
        assert!(!json.contains("Other___delete"), "{json}");
        let w = watch(
            vec![(json!(1), Expect::Other), (json!(2), Expect::List)],
            1 << 20,
        );
        let sse = through(w, Kind::Sse, &format!("data: {answer}\n\n")).await;
        assert!(!sse.contains("Other___delete"), "{sse}");
    }

    #[tokio::test]
    async fn a_failed_filter_replaces_the_whole_body() {
        let answer = format!(r#"{{"jsonrpc":"2.0","id":1.0,"result":{LIST}}}"#);
        let out = through(
            watch(vec![(json!(1), Expect::List)], 40),
            Kind::Json,
            &answer,
        )
        .await;
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["error"]["code"], -31014, "{out}");
        assert_eq!(value["id"], 1);
        assert!(!out.contains("Other___delete"));
        // Compressed bytes cannot be read: withheld, whatever they hold.
        let out = through(
            watch(vec![(json!(1), Expect::List)], 1 << 20),
            Kind::Encoded,
            "\x1f\u{8b}binary",
        )
        .await;
        let value: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(value["error"]["code"], -31014, "{out}");
        assert!(value["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Content-Encoding"));
    }

    #[tokio::test]
    async fn sse_events_that_cannot_be_read_are_withheld() {
        let out = through(
            watch(vec![(json!(1), Expect::List)], 1 << 20),
            Kind::Sse,
            "data: {\"id\":1,\"result\":{\"tools\":[{\"name\":\"Other___delete\"}]\n\n",
        )
        .await;
        assert!(!out.contains("Other___delete"), "{out}");
        assert!(out.contains("-31014"), "{out}");
    }

    #[tokio::test]
    async fn json_answers_without_targets_stream_through_untouched() {
        let gate = Gate::default();
        gate.push(b"{\"jsonrpc\":\"2.0\",");
        gate.push(b"\"id\":3,\"result\":{}}");
        gate.close();
        let mut w = watch(Vec::new(), 10);
        w.calls.push(crate::mcp::watch::PendingCall {
            id: json!(3),
            tool: "Demo___echo".into(),
            arguments: None,
        });
        let mut body = McpBody::new(gate.boxed_unsync(), w, 200, Kind::Json);
        let (out, ended) = drain(&mut body);
        assert!(ended);
        assert_eq!(out.len(), 2, "frame by frame, even past max_filter_bytes");
        assert!(
            body.watch.calls.is_empty(),
            "the call was settled from the stream"
        );
    }
}
