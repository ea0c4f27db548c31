//! Incremental server-sent-events framing (the WHATWG `text/event-stream` rules): finds
//! where each event ends and reports the field values it carries, across frames split
//! anywhere, with CRLF, LF or CR line ends, comments and multi-line data. It reads the
//! bytes in place: the caller keeps forwarding (or holding) its own frames, so nothing
//! is copied here.

/// The fields we tell apart; every other field (and `retry`) is `Other`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Data,
    Id,
    Event,
    Other,
}

/// Receives what the scanner reads.
pub trait Sink {
    /// A line of `field` starts (called before its value bytes, also for empty values).
    fn field_start(&mut self, _field: Field) {}
    /// Bytes of the value of the current field (a line's value may come in pieces).
    fn value(&mut self, field: Field, bytes: &[u8]);
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// At the start of a line.
    LineStart,
    /// Reading a field name.
    Name,
    /// After the colon: one space may follow and is not part of the value.
    AfterColon,
    Value,
    Comment,
}

#[derive(Debug)]
pub struct Scanner {
    state: State,
    name: [u8; 5],
    name_len: usize,
    name_over: bool,
    field: Field,
    /// The previous byte was a CR: an LF right after it is part of the same line end.
    after_cr: bool,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            state: State::LineStart,
            name: [0; 5],
            name_len: 0,
            name_over: false,
            field: Field::Other,
            after_cr: false,
        }
    }
}

impl Scanner {
    /// Reads `bytes` up to the end of the first event that ends in them; returns how many
    /// bytes that event took (the blank line included), or None when no event ended and
    /// every byte was read.
    pub fn feed(&mut self, bytes: &[u8], sink: &mut impl Sink) -> Option<usize> {
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            if self.after_cr {
                self.after_cr = false;
                if b == b'\n' {
                    i += 1;
                    continue;
                }
            }
            match self.state {
                State::LineStart => {
                    i += 1;
                    match b {
                        b'\r' | b'\n' => {
                            // A blank line: the event ends. Take the LF of a CRLF with it
                            // when it is at hand.
                            if b == b'\r' {
                                if bytes.get(i) == Some(&b'\n') {
                                    i += 1;
                                } else {
                                    self.after_cr = i == bytes.len();
                                }
                            }
                            return Some(i);
                        }
                        b':' => self.state = State::Comment,
                        _ => {
                            self.state = State::Name;
                            self.name_len = 0;
                            self.name_over = false;
                            self.name_byte(b);
                        }
                    }
                }
                State::Name => {
                    i += 1;
                    match b {
                        b':' => {
                            self.start_field(sink);
                            self.state = State::AfterColon;
                        }
                        b'\r' | b'\n' => {
                            // A field name alone: its value is empty.
                            self.start_field(sink);
                            self.line_end(b);
                        }
                        _ => self.name_byte(b),
                    }
                }
                State::AfterColon => {
                    self.state = State::Value;
                    if b == b' ' {
                        i += 1;
                    }
                }
                State::Value | State::Comment => {
                    let rest = &bytes[i..];
                    let end = memchr::memchr2(b'\r', b'\n', rest);
                    let value = &rest[..end.unwrap_or(rest.len())];
                    if self.state == State::Value && !value.is_empty() {
                        sink.value(self.field, value);
                    }
                    match end {
                        None => i = bytes.len(),
                        Some(j) => {
                            i += j + 1;
                            self.line_end(rest[j]);
                        }
                    }
                }
            }
        }
        None
    }

    /// The last byte read was a CR ending a line: an LF coming next belongs to it.
    pub fn after_cr(&self) -> bool {
        self.after_cr
    }

    fn name_byte(&mut self, b: u8) {
        if self.name_len < self.name.len() {
            self.name[self.name_len] = b;
            self.name_len += 1;
        } else {
            self.name_over = true;
        }
    }

    fn start_field(&mut self, sink: &mut impl Sink) {
        self.field = match (self.name_over, &self.name[..self.name_len]) {
            (false, b"data") => Field::Data,
            (false, b"id") => Field::Id,
            (false, b"event") => Field::Event,
            _ => Field::Other,
        };
        sink.field_start(self.field);
    }

    fn line_end(&mut self, b: u8) {
        self.state = State::LineStart;
        self.after_cr = b == b'\r';
    }
}

/// A sink that keeps the data, id and event of one event (for the events we rewrite).
#[derive(Debug, Default)]
pub struct Collect {
    pub data: Vec<u8>,
    data_lines: usize,
    pub id: Option<Vec<u8>>,
    pub event: Option<Vec<u8>>,
}

impl Sink for Collect {
    fn field_start(&mut self, field: Field) {
        match field {
            Field::Data => {
                if self.data_lines > 0 {
                    self.data.push(b'\n');
                }
                self.data_lines += 1;
            }
            Field::Id => self.id = Some(Vec::new()),
            Field::Event => self.event = Some(Vec::new()),
            Field::Other => {}
        }
    }

    fn value(&mut self, field: Field, bytes: &[u8]) {
        let target = match field {
            Field::Data => &mut self.data,
            Field::Id => self.id.get_or_insert_with(Vec::new),
            Field::Event => self.event.get_or_insert_with(Vec::new),
            Field::Other => return,
        };
        target.extend_from_slice(bytes);
    }
}

impl Collect {
    pub fn has_data(&self) -> bool {
        self.data_lines > 0
    }

    /// The event again with `data` in place of its data (one line: JSON has no newline
    /// when serialized compactly), keeping its `event` and `id`.
    pub fn rewrite(&self, data: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(data.len() + 32);
        if let Some(event) = &self.event {
            out.extend_from_slice(b"event: ");
            out.extend_from_slice(event);
            out.push(b'\n');
        }
        if let Some(id) = &self.id {
            out.extend_from_slice(b"id: ");
            out.extend_from_slice(id);
            out.push(b'\n');
        }
        out.extend_from_slice(b"data: ");
        out.extend_from_slice(data.as_bytes());
        out.extend_from_slice(b"\n\n");
        out
    }
}

/// One event with `data` and no other field.
pub fn event(data: &str) -> Vec<u8> {
    Collect::default().rewrite(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Splits `stream` into events with the scanner fed in the given pieces; returns each
    /// event's collected fields and the byte length it covered.
    fn scan(pieces: &[&[u8]]) -> Vec<(String, Option<String>, Option<String>, usize)> {
        let mut scanner = Scanner::default();
        let mut sink = Collect::default();
        let mut out = Vec::new();
        let mut covered = 0;
        for piece in pieces {
            let mut rest = *piece;
            loop {
                match scanner.feed(rest, &mut sink) {
                    None => {
                        covered += rest.len();
                        break;
                    }
                    Some(n) => {
                        covered += n;
                        let s = |v: &Option<Vec<u8>>| {
                            v.as_ref().map(|v| String::from_utf8(v.clone()).unwrap())
                        };
                        out.push((
                            String::from_utf8(sink.data.clone()).unwrap(),
                            s(&sink.id),
                            s(&sink.event),
                            covered,
                        ));
                        covered = 0;
                        sink = Collect::default();
                        rest = &rest[n..];
                    }
                }
            }
        }
        out
    }

    fn events(stream: &str) -> Vec<(String, Option<String>, Option<String>)> {
        let bytes = stream.as_bytes();
        let whole: Vec<_> = scan(&[bytes])
            .into_iter()
            .map(|(d, i, e, _)| (d, i, e))
            .collect();
        for cut in 0..=bytes.len() {
            let split: Vec<_> = scan(&[&bytes[..cut], &bytes[cut..]])
                .into_iter()
                .map(|(d, i, e, _)| (d, i, e))
                .collect();
            assert_eq!(split, whole, "split at {cut} of {stream:?}");
        }
        let pieces: Vec<&[u8]> = bytes.chunks(1).collect();
        let bytewise: Vec<_> = scan(&pieces)
            .into_iter()
            .map(|(d, i, e, _)| (d, i, e))
            .collect();
        assert_eq!(bytewise, whole, "byte by byte");
        whole
    }

    fn ev(
        data: &str,
        id: Option<&str>,
        event: Option<&str>,
    ) -> (String, Option<String>, Option<String>) {
        (data.into(), id.map(Into::into), event.map(Into::into))
    }

    #[test]
    fn lf_crlf_and_cr_line_ends() {
        for nl in ["\n", "\r\n", "\r"] {
            let stream =
                format!("id: 1{nl}data: {{\"a\":1}}{nl}{nl}event: message{nl}data:x{nl}{nl}");
            assert_eq!(
                events(&stream),
                [
                    ev("{\"a\":1}", Some("1"), None),
                    ev("x", None, Some("message"))
                ],
                "{nl:?}"
            );
        }
        assert_eq!(
            events("data: a\r\n\ndata: b\n\r\n"),
            [ev("a", None, None), ev("b", None, None)]
        );
    }

    #[test]
    fn comments_multi_line_data_and_odd_fields() {
        assert_eq!(
            events(": keep-alive\n\n: c\ndata: line one\ndata\ndata:  two spaces\nretry: 10\nfoo\ndatax: no\n\n"),
            [ev("", None, None), ev("line one\n\n two spaces", None, None)]
        );
        assert_eq!(events("id\nevent:\ndata\n\n"), [ev("", Some(""), Some(""))]);
        assert!(events("data: unfinished").is_empty());
    }

    #[test]
    fn event_lengths_cover_the_stream_exactly() {
        let stream = b"data: a\r\n\r\ndata: b\n\n";
        let got = scan(&[stream]);
        assert_eq!(got.iter().map(|e| e.3).collect::<Vec<_>>(), [11, 9]);
        // A CR that ends an event as the last byte of a frame: the LF that follows in the
        // next frame is skipped, not read as another blank line.
        let got = scan(&[b"data: a\r\n\r", b"\ndata: b\r\n\r\n"]);
        assert_eq!(got.len(), 2);
        assert_eq!(got[1].0, "b");
    }

    #[test]
    fn rewrite_keeps_event_and_id() {
        let mut c = Collect::default();
        let mut s = Scanner::default();
        assert!(s
            .feed(b"event: message\nid: 42\nretry: 5\ndata: {}\n\n", &mut c)
            .is_some());
        assert_eq!(
            c.rewrite("{\"x\":1}"),
            b"event: message\nid: 42\ndata: {\"x\":1}\n\n"
        );
        assert_eq!(event("{}"), b"data: {}\n\n");
    }
}
