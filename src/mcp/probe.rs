//! A streaming look at JSON-RPC messages in a response, fed the bytes as they pass: for
//! each message (a top-level object, or each object of a top-level array) it notes the
//! `id`, whether it is a request/notification (`method`), a result (and `result.isError`)
//! or an error (and `error.code`, and for a throttle `error.data.retryAfter` and
//! `error.data.limitKey`), and whether a notification says a list changed. It copies nothing but the id and those few scalars,
//! holds O(1) state, and skips string contents with memchr, so it can watch tool results
//! of any size without buffering them.

use serde_json::Value;
use smallvec::SmallVec;

/// Ids, codes and flags longer than this are not captured (ids are short in practice).
const MAX_SCALAR: usize = 256;
/// Keys we look for are short; longer keys are skipped.
const MAX_KEY: usize = 16;
/// Container kinds are remembered this deep; the keys that matter are at most 3 deep.
const MAX_TRACKED_DEPTH: usize = 8;

/// What one message turned out to be.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Facts {
    pub id: Option<Value>,
    pub method: bool,
    pub result: bool,
    /// `result.isError` was `true`.
    pub tool_error: bool,
    pub error: bool,
    pub error_code: Option<i64>,
    /// `error.data.retryAfter` (seconds), as a number or a string holding one.
    pub retry_after: Option<f64>,
    /// `error.data.limitKey`.
    pub limit_key: Option<String>,
    /// A notification whose method ends in `/list_changed` (tools, prompts, resources).
    pub list_changed: bool,
}

impl Facts {
    /// A response (to a request of the agent), as opposed to a request or notification.
    pub fn is_response(&self) -> bool {
        !self.method && (self.result || self.error)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Id,
    Result,
    Error,
    IsError,
    Code,
    Method,
    ErrorData,
    RetryAfter,
    LimitKey,
}

impl Slot {
    /// The slots whose scalar value is captured.
    fn captures(self) -> bool {
        matches!(
            self,
            Slot::Id
                | Slot::Code
                | Slot::IsError
                | Slot::Method
                | Slot::RetryAfter
                | Slot::LimitKey
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    None,
    Result,
    Error,
}

#[derive(Debug)]
pub struct Probe {
    depth: usize,
    kinds: [u8; MAX_TRACKED_DEPTH + 1],
    in_string: bool,
    escaped: bool,
    expect_key: bool,
    /// Depth of message objects: 1 for a single message, 2 inside a batch array.
    msg_depth: Option<usize>,
    section: Section,
    /// Inside `error.data` (one level below the error section).
    in_error_data: bool,
    capturing_key: bool,
    key: [u8; MAX_KEY],
    key_len: usize,
    key_over: bool,
    /// A key that matters was read; its value comes next.
    pending: Option<Slot>,
    /// Capturing a scalar value for this slot.
    scalar: Option<Slot>,
    /// Inline up to the length of usual ids and codes: no allocation per answer.
    scalar_buf: SmallVec<[u8; 32]>,
    current: Facts,
    /// One message inline: the answer to a single request allocates no list.
    done: SmallVec<[Facts; 1]>,
}

impl Default for Probe {
    fn default() -> Self {
        Probe {
            depth: 0,
            kinds: [0; MAX_TRACKED_DEPTH + 1],
            in_string: false,
            escaped: false,
            expect_key: false,
            msg_depth: None,
            section: Section::None,
            in_error_data: false,
            capturing_key: false,
            key: [0; MAX_KEY],
            key_len: 0,
            key_over: false,
            pending: None,
            scalar: None,
            scalar_buf: SmallVec::new(),
            current: Facts::default(),
            done: SmallVec::new(),
        }
    }
}

impl Probe {
    /// Starts over (the next SSE event is a new JSON text).
    pub fn reset(&mut self) {
        let done = std::mem::take(&mut self.done);
        *self = Probe {
            done,
            ..Probe::default()
        };
    }

    /// Messages completed so far, in order; taking them empties the list.
    pub fn take_done(&mut self) -> SmallVec<[Facts; 1]> {
        std::mem::take(&mut self.done)
    }

    /// Messages completed since the last `take_done`.
    pub fn done(&self) -> &[Facts] {
        &self.done
    }

    /// Inside a top-level array (a batch) that has not ended yet.
    pub fn in_batch(&self) -> bool {
        self.msg_depth == Some(2) && self.depth >= 1
    }

    /// What is known of the message being read now (None between messages).
    pub fn current(&self) -> Option<&Facts> {
        match self.msg_depth {
            Some(d) if self.depth >= d => Some(&self.current),
            _ => None,
        }
    }

    pub fn feed(&mut self, bytes: &[u8]) {
        let mut i = 0;
        while i < bytes.len() {
            if self.in_string {
                i = self.string_bytes(bytes, i);
                continue;
            }
            let b = bytes[i];
            i += 1;
            match b {
                b' ' | b'\t' | b'\r' | b'\n' => self.end_scalar(),
                b'"' => self.open_string(),
                b':' => {
                    self.end_scalar();
                    self.expect_key = false;
                }
                b',' => {
                    self.end_scalar();
                    self.pending = None;
                    self.expect_key = self.kind() == b'{';
                }
                b'{' | b'[' => self.open(b),
                b'}' | b']' => self.close(b),
                _ => self.scalar_byte(b),
            }
        }
    }

    fn kind(&self) -> u8 {
        if self.depth <= MAX_TRACKED_DEPTH {
            self.kinds[self.depth]
        } else {
            0
        }
    }

    /// Inside a string: returns the index after what was consumed.
    fn string_bytes(&mut self, bytes: &[u8], start: usize) -> usize {
        let capturing = self.capturing_key || self.scalar.is_some();
        if self.escaped {
            self.escaped = false;
            self.capture(bytes[start]);
            return start + 1;
        }
        let rest = &bytes[start..];
        match memchr::memchr2(b'"', b'\\', rest) {
            None => {
                if capturing {
                    self.capture_all(rest);
                }
                bytes.len()
            }
            Some(j) => {
                if capturing {
                    self.capture_all(&rest[..j]);
                }
                let at = start + j;
                if bytes[at] == b'\\' {
                    self.escaped = true;
                    self.capture(b'\\');
                } else {
                    self.in_string = false;
                    if self.capturing_key {
                        self.capturing_key = false;
                        self.key_read();
                    } else if self.scalar.is_some() {
                        self.capture(b'"');
                        self.end_scalar();
                    }
                }
                at + 1
            }
        }
    }

    /// [`Probe::capture`] of each byte, copied at once (keys and ids are read whole).
    fn capture_all(&mut self, bytes: &[u8]) {
        if self.capturing_key {
            let room = MAX_KEY - self.key_len;
            let n = bytes.len().min(room);
            self.key[self.key_len..self.key_len + n].copy_from_slice(&bytes[..n]);
            self.key_len += n;
            self.key_over |= bytes.len() > room;
        } else if self.scalar.is_some() {
            let room = MAX_SCALAR.saturating_sub(self.scalar_buf.len());
            self.scalar_buf
                .extend_from_slice(&bytes[..bytes.len().min(room)]);
        }
    }

    fn capture(&mut self, b: u8) {
        if self.capturing_key {
            if self.key_len < MAX_KEY {
                self.key[self.key_len] = b;
                self.key_len += 1;
            } else {
                self.key_over = true;
            }
        } else if self.scalar.is_some() && self.scalar_buf.len() < MAX_SCALAR {
            self.scalar_buf.push(b);
        }
    }

    fn open_string(&mut self) {
        self.in_string = true;
        if self.expect_key {
            self.capturing_key = self.key_matters();
            self.key_len = 0;
            self.key_over = false;
        } else if let Some(slot) = self.pending.take() {
            if slot.captures() {
                self.scalar = Some(slot);
                self.scalar_buf.clear();
                self.scalar_buf.push(b'"');
            }
        }
    }

    fn key_matters(&self) -> bool {
        match self.msg_depth {
            Some(d) => {
                self.depth == d
                    || (self.depth == d + 1 && self.section != Section::None)
                    || (self.depth == d + 2 && self.in_error_data)
            }
            None => false,
        }
    }

    fn key_read(&mut self) {
        if self.key_over {
            return;
        }
        let Some(d) = self.msg_depth else { return };
        let key = &self.key[..self.key_len];
        if self.depth == d {
            match key {
                b"id" => self.pending = Some(Slot::Id),
                b"method" => {
                    self.current.method = true;
                    self.pending = Some(Slot::Method);
                }
                b"result" => {
                    self.current.result = true;
                    self.pending = Some(Slot::Result);
                }
                b"error" => {
                    self.current.error = true;
                    self.pending = Some(Slot::Error);
                }
                _ => {}
            }
        } else if self.depth == d + 1 {
            match (self.section, key) {
                (Section::Result, b"isError") => self.pending = Some(Slot::IsError),
                (Section::Error, b"code") => self.pending = Some(Slot::Code),
                (Section::Error, b"data") => self.pending = Some(Slot::ErrorData),
                _ => {}
            }
        } else {
            match key {
                b"retryAfter" => self.pending = Some(Slot::RetryAfter),
                b"limitKey" => self.pending = Some(Slot::LimitKey),
                _ => {}
            }
        }
    }

    fn scalar_byte(&mut self, b: u8) {
        if self.scalar.is_none() {
            match self.pending.take() {
                Some(slot) if slot.captures() => {
                    self.scalar = Some(slot);
                    self.scalar_buf.clear();
                }
                _ => return,
            }
        }
        if self.scalar_buf.len() < MAX_SCALAR {
            self.scalar_buf.push(b);
        }
    }

    fn end_scalar(&mut self) {
        let Some(slot) = self.scalar.take() else {
            return;
        };
        let text = &self.scalar_buf;
        match slot {
            Slot::Id => self.current.id = serde_json::from_slice(text).ok(),
            Slot::Code => {
                self.current.error_code =
                    std::str::from_utf8(text).ok().and_then(|t| t.parse().ok())
            }
            Slot::IsError => self.current.tool_error = text.as_slice() == b"true",
            Slot::Method => {
                self.current.list_changed =
                    text.starts_with(b"\"notifications/") && text.ends_with(b"/list_changed\"")
            }
            Slot::RetryAfter => {
                let unquoted = text
                    .strip_prefix(b"\"")
                    .and_then(|t| t.strip_suffix(b"\""))
                    .unwrap_or(text);
                self.current.retry_after = std::str::from_utf8(unquoted)
                    .ok()
                    .and_then(|t| t.trim().parse().ok())
            }
            Slot::LimitKey => self.current.limit_key = serde_json::from_slice(text).ok(),
            Slot::Result | Slot::Error | Slot::ErrorData => {}
        }
    }

    fn open(&mut self, b: u8) {
        self.end_scalar();
        let pending = self.pending.take();
        if self.msg_depth.is_none() && self.depth == 0 {
            self.msg_depth = Some(if b == b'{' { 1 } else { 2 });
        }
        self.depth += 1;
        if self.depth <= MAX_TRACKED_DEPTH {
            self.kinds[self.depth] = b;
        }
        self.expect_key = b == b'{';
        let Some(d) = self.msg_depth else { return };
        if self.depth == d && b == b'{' {
            self.current = Facts::default();
            self.section = Section::None;
        } else if self.depth == d + 1 && b == b'{' {
            self.section = match pending {
                Some(Slot::Result) => Section::Result,
                Some(Slot::Error) => Section::Error,
                _ => Section::None,
            };
        } else if self.depth == d + 2 && b == b'{' {
            self.in_error_data = self.section == Section::Error && pending == Some(Slot::ErrorData);
        }
    }

    fn close(&mut self, b: u8) {
        self.end_scalar();
        self.pending = None;
        if let Some(d) = self.msg_depth {
            if self.depth == d && b == b'}' {
                self.done.push(std::mem::take(&mut self.current));
            } else if self.depth == d + 1 {
                self.section = Section::None;
            } else if self.depth == d + 2 {
                self.in_error_data = false;
            }
        }
        self.depth = self.depth.saturating_sub(1);
        self.expect_key = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn facts_split_everywhere(text: &str) -> Vec<Facts> {
        let bytes = text.as_bytes();
        let mut whole = Probe::default();
        whole.feed(bytes);
        let expected = whole.take_done();
        for cut in 0..=bytes.len() {
            let mut p = Probe::default();
            p.feed(&bytes[..cut]);
            p.feed(&bytes[cut..]);
            assert_eq!(p.take_done(), expected, "split at {cut}");
        }
        let mut bytewise = Probe::default();
        for b in bytes {
            bytewise.feed(std::slice::from_ref(b));
        }
        assert_eq!(bytewise.take_done(), expected);
        expected.into_vec()
    }

    #[test]
    fn a_tool_result() {
        let f = facts_split_everywhere(
            r#"{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"a \"quoted\" } ] { text, \\ \"isError\":true"}],"isError":false}}"#,
        );
        assert_eq!(
            f,
            [Facts {
                id: Some(json!(7)),
                result: true,
                ..Facts::default()
            }]
        );
        assert!(f[0].is_response());
    }

    #[test]
    fn a_tool_error_and_an_rpc_error() {
        let f = facts_split_everywhere(
            r#"{"result": {"isError": true, "content": []}, "id": "call-1", "jsonrpc": "2.0"}"#,
        );
        assert_eq!(f[0].id, Some(json!("call-1")));
        assert!(f[0].tool_error);
        let f = facts_split_everywhere(
            r#"{"jsonrpc":"2.0","id":3,"error":{"code":-32602,"message":"bad","data":{"code":1}}}"#,
        );
        assert_eq!(f[0].error_code, Some(-32602));
        assert!(f[0].error && f[0].is_response());
    }

    #[test]
    fn a_throttle_and_a_list_change() {
        let f = facts_split_everywhere(
            r#"{"jsonrpc":"2.0","id":4,"error":{"code":-32003,"message":"Rate limit exceeded","data":{"retryAfter":2,"limitKey":"toolName=search","x":{"retryAfter":9}}}}"#,
        );
        assert_eq!(f[0].error_code, Some(-32003));
        assert_eq!(f[0].retry_after, Some(2.0));
        assert_eq!(f[0].limit_key.as_deref(), Some("toolName=search"));
        let f = facts_split_everywhere(
            r#"{"id":4,"result":{"data":{"retryAfter":2}},"error":{"data":"retryAfter"}}"#,
        );
        assert_eq!(f[0].retry_after, None, "only error.data counts");
        let f = facts_split_everywhere(r#"{"error":{"code":-32003,"data":{"retryAfter":"1.5"}}}"#);
        assert_eq!(f[0].retry_after, Some(1.5));
        let f = facts_split_everywhere(
            r#"[{"jsonrpc":"2.0","method":"notifications/tools/list_changed"},{"jsonrpc":"2.0","method":"notifications/progress","params":{"method":"notifications/tools/list_changed"}}]"#,
        );
        assert!(f[0].list_changed);
        assert!(!f[1].list_changed);
    }

    #[test]
    fn batches_and_notifications() {
        let f = facts_split_everywhere(
            r#"[{"jsonrpc":"2.0","method":"notifications/progress","params":{"result":1,"id":9}},
               {"jsonrpc":"2.0","id":"a\u0062","result":{"tools":[{"name":"x","isError":true}]}},
               {"jsonrpc":"2.0","id":2,"error":{"code":-32000,"message":"m"}}]"#,
        );
        assert_eq!(f.len(), 3);
        assert!(f[0].method && !f[0].is_response());
        assert_eq!(f[0].id, None);
        assert_eq!(f[1].id, Some(json!("ab")));
        assert!(
            !f[1].tool_error,
            "isError nested deeper is not the result's"
        );
        assert_eq!(f[2].error_code, Some(-32000));
    }

    #[test]
    fn current_message_is_visible_while_it_streams() {
        let mut p = Probe::default();
        p.feed(br#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"x":"#);
        assert!(p.current().unwrap().method);
        p.feed(br#"1}}"#);
        assert!(p.current().is_none());
        assert_eq!(p.take_done().len(), 1);
        p.reset();
        p.feed(br#"{"id":5,"result":{"#);
        assert_eq!(p.current().unwrap().id, Some(json!(5)));
    }

    #[test]
    fn garbage_does_not_panic() {
        for text in [
            "",
            "}}}]]]",
            "\"\\",
            "[[[[[[[[[[[[{\"id\":1}]]]]]]]]]]]]",
            "{\"id\":tru",
        ] {
            let mut p = Probe::default();
            p.feed(text.as_bytes());
            p.take_done();
        }
        let long_id = format!("{{\"id\":\"{}\",\"result\":{{}}}}", "x".repeat(1000));
        let mut p = Probe::default();
        p.feed(long_id.as_bytes());
        assert_eq!(p.take_done()[0].id, None, "over-long ids are not captured");
    }

    /// Keys and ids at the capture limits, whole and cut anywhere.
    #[test]
    fn keys_and_ids_at_the_limits() {
        let at_limit = "x".repeat(MAX_SCALAR - 2); // with its quotes: MAX_SCALAR bytes
        let f = facts_split_everywhere(&format!(r#"{{"id":"{at_limit}","result":{{}}}}"#));
        assert_eq!(f[0].id, Some(json!(at_limit)));
        let over = "x".repeat(MAX_SCALAR - 1);
        let f = facts_split_everywhere(&format!(r#"{{"id":"{over}","result":{{}}}}"#));
        assert_eq!(f[0].id, None);
        // A key longer than MAX_KEY that starts like one that matters is not that key.
        let long_key = format!("id{}", "d".repeat(MAX_KEY));
        let f = facts_split_everywhere(&format!(r#"{{"{long_key}":5,"id":6,"result":{{}}}}"#));
        assert_eq!(f[0].id, Some(json!(6)));
        let sixteen = "e".repeat(MAX_KEY);
        let f = facts_split_everywhere(&format!(
            r#"{{"{sixteen}":5,"id":7,"error":{{"code":-1}}}}"#
        ));
        assert_eq!(
            (f[0].id.clone(), f[0].error_code),
            (Some(json!(7)), Some(-1))
        );
    }
}
