//! Counts the TLS records a client sends, as the server's TCP stream carries them: each
//! record starts with a 5-byte header (content type, version, length), so the count does
//! not depend on how the bytes were split into reads. What a proxy packs into one write
//! arrives as one record; what it writes twice, as two.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream that counts the records read from it into `count`.
pub struct RecordCounting<S> {
    inner: S,
    count: Arc<AtomicUsize>,
    /// Bytes of the current record header seen so far.
    header: [u8; 5],
    header_len: usize,
    /// Bytes of the current record's payload still to come.
    payload_left: usize,
}

impl<S> RecordCounting<S> {
    pub fn new(inner: S, count: Arc<AtomicUsize>) -> RecordCounting<S> {
        RecordCounting {
            inner,
            count,
            header: [0; 5],
            header_len: 0,
            payload_left: 0,
        }
    }

    fn scan(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.payload_left > 0 {
                let n = self.payload_left.min(bytes.len());
                self.payload_left -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (5 - self.header_len).min(bytes.len());
            self.header[self.header_len..self.header_len + n].copy_from_slice(&bytes[..n]);
            self.header_len += n;
            bytes = &bytes[n..];
            if self.header_len == 5 {
                self.header_len = 0;
                self.payload_left =
                    usize::from(u16::from_be_bytes([self.header[3], self.header[4]]));
                self.count.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for RecordCounting<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = polled {
            this.scan(&buf.filled()[before..]);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for RecordCounting<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
