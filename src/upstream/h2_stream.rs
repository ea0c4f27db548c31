//! One request on an HTTP/2 connection to the gateway, with the `h2` crate: the stream
//! opened by the request's own task, HEADERS and DATA queued together (they leave in
//! one write when the connection task next runs), and the answer's body read straight
//! from the stream.

use std::task::{ready, Context, Poll};

use bytes::Bytes;
use http::header::{HeaderName, CONNECTION, CONTENT_LENGTH, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request};
use http_body::{Frame, SizeHint};

use crate::upstream::header_names;

/// The connection settings hyper's own HTTP/2 client uses (hyper 1.x defaults), so that
/// the gateway sees the same client as before: 2 MiB stream and 5 MiB connection receive
/// windows, 16 KiB frames and header lists, a 1 MiB send buffer per stream, no server
/// push, 100 streams before the gateway's SETTINGS arrive.
pub fn builder() -> h2::client::Builder {
    let mut builder = h2::client::Builder::new();
    builder
        .initial_max_send_streams(100)
        .initial_window_size(2 * 1024 * 1024)
        .initial_connection_window_size(5 * 1024 * 1024)
        .max_frame_size(16 * 1024)
        .max_header_list_size(16 * 1024)
        .max_send_buffer_size(1024 * 1024)
        .max_local_error_reset_streams(Some(1024))
        .enable_push(false);
    builder
}

/// Opens a stream for the request and queues its body: nothing is awaited, so the
/// HEADERS and the DATA are both queued before the connection task writes. Fails only
/// when the connection can take no new stream (it is closed, or the gateway sent
/// GOAWAY): then the request was not sent.
///
/// The body is queued without reserving send capacity first: h2 holds it until the
/// stream has capacity, and the proxy holds it already (bounded by `max_body_bytes`).
pub fn open(
    send: &h2::client::SendRequest<Bytes>,
    mut parts: http::request::Parts,
    payload: Bytes,
) -> Result<h2::client::ResponseFuture, h2::Error> {
    strip_connection_headers(&mut parts.headers);
    let end = payload.is_empty();
    // A clone has no stream of its own pending, so it may open one at once (h2 queues
    // it when the gateway's concurrent-stream limit is reached).
    let mut send = send.clone();
    let (answer, mut stream) = send.send_request(Request::from_parts(parts, ()), end)?;
    if !end {
        stream.send_data(payload, true)?;
    }
    Ok(answer)
}

/// Connection-specific headers are malformed in HTTP/2 (RFC 9113 8.2.2); the forwarding
/// drops the hop-by-hop ones already, this is what h2 would refuse outright (as hyper's
/// client removes them). One pass over the names when there are none (the usual case).
fn strip_connection_headers(headers: &mut HeaderMap) {
    const REFUSED: [HeaderName; 6] = [
        CONNECTION,
        HeaderName::from_static("keep-alive"),
        HeaderName::from_static("proxy-connection"),
        TRANSFER_ENCODING,
        UPGRADE,
        TE,
    ];
    const TE_BIT: u64 = 1 << 5;
    let mut found = header_names::present(headers, &REFUSED);
    if found == 0 {
        return;
    }
    if found & 1 != 0 {
        header_names::remove_connection_named(headers);
    }
    if found & TE_BIT != 0 && headers.get(TE).is_some_and(|te| te == "trailers") {
        found &= !TE_BIT;
    }
    header_names::remove_found(headers, &REFUSED, found);
}

/// The answer's body read from its stream: each DATA frame is passed on as it comes and
/// its flow-control capacity given back at once (the agent's connection applies the
/// back-pressure: a frame is read only when the previous one was written), then the
/// trailers, if any.
pub struct H2Body {
    recv: h2::RecvStream,
    /// Bytes the `Content-Length` still announces (h2 checks that the data matches it).
    remaining: Option<u64>,
    data_done: bool,
}

impl H2Body {
    pub fn new(recv: h2::RecvStream, headers: &HeaderMap) -> H2Body {
        H2Body {
            remaining: content_length(headers),
            data_done: recv.is_end_stream(),
            recv,
        }
    }

    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    if let Some(remaining) = &mut self.remaining {
                        *remaining = remaining.saturating_sub(data.len() as u64);
                    }
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    pub fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    pub fn size_hint(&self) -> SizeHint {
        match self.remaining {
            Some(remaining) => SizeHint::with_exact(remaining),
            None => SizeHint::default(),
        }
    }
}

/// The `Content-Length` of a head, when it has exactly one valid one.
fn content_length(headers: &HeaderMap) -> Option<u64> {
    let mut values = headers.get_all(CONTENT_LENGTH).iter();
    let length = values.next()?.to_str().ok()?.trim().parse().ok()?;
    values.next().is_none().then_some(length)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn connection_specific_headers_never_reach_an_h2_gateway() {
        let mut headers = HeaderMap::new();
        headers.insert(CONNECTION, HeaderValue::from_static("x-hop, keep-alive"));
        headers.insert("x-hop", HeaderValue::from_static("1"));
        headers.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        headers.insert(UPGRADE, HeaderValue::from_static("h2c"));
        headers.insert(TRANSFER_ENCODING, HeaderValue::from_static("chunked"));
        headers.insert(TE, HeaderValue::from_static("gzip"));
        headers.insert("mcp-session-id", HeaderValue::from_static("s1"));
        strip_connection_headers(&mut headers);
        assert_eq!(headers.len(), 1, "{headers:?}");
        assert_eq!(headers["mcp-session-id"], "s1");

        let mut trailers_only = HeaderMap::new();
        trailers_only.insert(TE, HeaderValue::from_static("trailers"));
        strip_connection_headers(&mut trailers_only);
        assert_eq!(trailers_only[TE], "trailers");
    }
}
