//! Write coalescing between h2 and the gateway's TLS stream: what h2 writes between two
//! flushes goes out as one TLS record in one `write`, and while several requests are open
//! on the connection, the frames of requests that start in the same scheduler turn share
//! it too.
//!
//! Every flush of the TLS stream seals a record and writes it to the socket. h2 writes
//! its frames (each a head and a payload) as separate writes; here they are kept in a
//! buffer until the flush, so a request's HEADERS and DATA are one record. When more than
//! one request is open on the connection, the first flush of a batch is put off by one
//! turn of the scheduler (the task is woken and yields once): the requests woken
//! meanwhile add their frames, and under load one `writev` carries several requests (at
//! 32 agent connections: 0.14 writes per request). A lone request has nothing to wait
//! for: its flush writes at once (the turn cost it 15% more CPU per request at one
//! connection, bench c1). The next flush always writes, so nothing waits longer than one
//! turn; writes that would take the buffer over [`MAX_BUFFERED`] go through at once
//! (large bodies are not copied).

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The most held back before writing through: the plaintext of one full TLS record.
pub const MAX_BUFFERED: usize = 16 * 1024;

/// A stream whose small writes are gathered until a flush, the first flush of each batch
/// put off by one scheduler turn.
pub struct Coalescing<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` the inner stream has taken already.
    written: usize,
    /// The flush of what is in `buf` was put off once already: the next one writes.
    deferred: bool,
    /// Requests open on the connection: a flush is put off only when others may join.
    open: Arc<AtomicUsize>,
}

impl<S> Coalescing<S> {
    /// `open`: the count of requests open on the connection, kept by its owner.
    pub fn new(inner: S, open: Arc<AtomicUsize>) -> Coalescing<S> {
        Coalescing {
            inner,
            buf: Vec::new(),
            written: 0,
            deferred: false,
            open,
        }
    }

    pub fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Coalescing<S> {
    /// Hands everything buffered to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf.clear();
        self.written = 0;
        self.deferred = false;
        Poll::Ready(Ok(()))
    }

    /// Makes room for `len` more bytes; false when they should go straight through.
    fn poll_room(&mut self, cx: &mut Context<'_>, len: usize) -> Poll<io::Result<bool>> {
        if self.buf.len() + len > MAX_BUFFERED {
            ready!(self.poll_drain(cx))?;
        }
        Poll::Ready(Ok(len < MAX_BUFFERED))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Coalescing<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Coalescing<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if !ready!(this.poll_room(cx, data.len()))? {
            return Pin::new(&mut this.inner).poll_write(cx, data);
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        let len = bufs.iter().map(|b| b.len()).sum();
        if !ready!(this.poll_room(cx, len))? {
            return Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        }
        for b in bufs {
            this.buf.extend_from_slice(b);
        }
        Poll::Ready(Ok(len))
    }

    fn is_write_vectored(&self) -> bool {
        // Slices are copied into the buffer: h2 then hands a frame's head and payload
        // over in one call.
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.buf.len() > this.written {
            if !this.deferred && this.open.load(Ordering::Relaxed) > 1 {
                // One turn for the requests woken meanwhile to add their frames.
                this.deferred = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            ready!(this.poll_drain(cx))?;
        }
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use tokio::io::AsyncWriteExt;

    /// The writes that reach the other end: one entry per `poll_write` call.
    #[derive(Default)]
    struct Wire {
        writes: Vec<Vec<u8>>,
        flushes: usize,
    }

    impl AsyncWrite for Wire {
        fn poll_write(
            mut self: Pin<&mut Self>,
            _cx: &mut Context<'_>,
            data: &[u8],
        ) -> Poll<io::Result<usize>> {
            self.writes.push(data.to_vec());
            Poll::Ready(Ok(data.len()))
        }

        fn poll_flush(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            self.flushes += 1;
            Poll::Ready(Ok(()))
        }

        fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    /// A stream over `Wire` on a connection with `open` requests open.
    fn coalescing(open: usize) -> Coalescing<Wire> {
        Coalescing::new(Wire::default(), Arc::new(AtomicUsize::new(open)))
    }

    fn flush_once(s: &mut Coalescing<Wire>) -> Poll<io::Result<()>> {
        let waker = std::task::Waker::noop();
        Pin::new(s).poll_flush(&mut Context::from_waker(waker))
    }

    #[tokio::test]
    async fn frames_written_around_a_put_off_flush_go_out_in_one_write() {
        let mut s = coalescing(2);
        s.write_all(b"HEADERS1").await.unwrap();
        assert!(
            flush_once(&mut s).is_pending(),
            "with another request open, the first flush waits one turn"
        );
        assert!(s.get_ref().writes.is_empty());
        s.write_all(b"HEADERS2").await.unwrap();
        assert!(flush_once(&mut s).is_ready());
        assert_eq!(s.get_ref().writes, vec![b"HEADERS1HEADERS2".to_vec()]);
        assert_eq!(s.get_ref().flushes, 1);
    }

    #[tokio::test]
    async fn a_lone_requests_frames_go_out_in_one_write_at_its_first_flush() {
        let mut s = coalescing(1);
        s.write_all(b"HEADERS").await.unwrap();
        s.write_all(b"DATA").await.unwrap();
        assert!(flush_once(&mut s).is_ready(), "nothing to wait for");
        assert_eq!(s.get_ref().writes, vec![b"HEADERSDATA".to_vec()]);
        assert_eq!(s.get_ref().flushes, 1);
    }

    #[tokio::test]
    async fn a_flush_is_put_off_once_then_always_writes() {
        let mut s = coalescing(2);
        s.write_all(b"PING").await.unwrap();
        // `flush` polls again after the Pending (its waker was woken): it completes.
        s.flush().await.unwrap();
        assert_eq!(s.get_ref().writes, vec![b"PING".to_vec()]);
        // Nothing buffered: a flush goes straight to the inner stream.
        assert!(flush_once(&mut s).is_ready());
        assert_eq!(s.get_ref().flushes, 2);
    }

    #[tokio::test]
    async fn large_writes_go_straight_through_after_what_was_buffered() {
        let mut s = coalescing(2);
        s.write_all(b"HEADERS").await.unwrap();
        let body = vec![7u8; MAX_BUFFERED];
        let n = poll_fn(|cx| {
            Pin::new(&mut s)
                .poll_write_vectored(cx, &[IoSlice::new(&body[..9]), IoSlice::new(&body[9..])])
        })
        .await
        .unwrap();
        // What the inner stream took of the slices (its own vectored write: the first).
        assert_eq!(n, 9);
        let writes = &s.get_ref().writes;
        assert_eq!(writes[0], b"HEADERS");
        assert_eq!(writes[1].len(), 9);
    }

    #[tokio::test]
    async fn shutdown_writes_what_is_buffered() {
        let mut s = coalescing(2);
        s.write_all(b"GOAWAY").await.unwrap();
        s.shutdown().await.unwrap();
        assert_eq!(s.get_ref().writes, vec![b"GOAWAY".to_vec()]);
    }
}
