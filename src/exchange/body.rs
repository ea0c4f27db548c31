//! Body types and the two body helpers of the request path: a bounded read of a request
//! body (within its connection's and the process's budget of buffered bytes), and the
//! response wrapper that enforces the idle timeout and finishes the request's context
//! when the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

use crate::exchange::context::{End, RequestContext};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub type ProxyBody = UnsyncBoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> ProxyBody {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

pub fn empty() -> ProxyBody {
    Empty::new().map_err(|never| match never {}).boxed_unsync()
}

/// Why a request body could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReadError {
    TooLarge {
        limit: u64,
    },
    TimedOut {
        after: Duration,
    },
    Broken(String),
    /// Buffering the body would take its connection or the process over its budget.
    OverBudget {
        scope: BudgetScope,
        limit: u64,
    },
}

/// Which budget of buffered request bodies a request ran into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetScope {
    /// `limits.max_buffered_bytes_per_connection`
    Connection,
    /// `limits.max_buffered_bytes`
    Process,
}

/// A number of bytes that may be held at once, drawn on by every body being read.
#[derive(Debug)]
pub struct BudgetPool {
    used: AtomicU64,
    limit: u64,
}

impl BudgetPool {
    pub fn new(limit: u64) -> BudgetPool {
        BudgetPool {
            used: AtomicU64::new(0),
            limit,
        }
    }

    /// Bytes reserved now.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    fn take(&self, bytes: u64) -> bool {
        self.used
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= self.limit)
            })
            .is_ok()
    }

    fn give_back(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

/// The budgets the request bodies of one agent connection draw on: the connection's
/// own, and the process's, shared by every connection. Cheap to clone.
#[derive(Debug, Clone)]
pub struct BufferBudget(Arc<Budgets>);

#[derive(Debug)]
struct Budgets {
    connection: BudgetPool,
    process: Arc<BudgetPool>,
}

impl BufferBudget {
    /// A new connection's budget of `per_connection` bytes, within `process`.
    pub fn new(per_connection: u64, process: Arc<BudgetPool>) -> BufferBudget {
        BufferBudget(Arc::new(Budgets {
            connection: BudgetPool::new(per_connection),
            process,
        }))
    }

    /// Bytes the connection holds now.
    pub fn used(&self) -> u64 {
        self.0.connection.used()
    }
}

/// Bytes of one request body held in memory, given back to the budgets when dropped.
struct Reservation {
    budget: BufferBudget,
    bytes: u64,
}

impl Reservation {
    /// Reserves `more` bytes on both budgets, or on neither.
    fn grow(&mut self, more: u64) -> Result<(), ReadError> {
        let budgets = &self.budget.0;
        if !budgets.connection.take(more) {
            return Err(ReadError::OverBudget {
                scope: BudgetScope::Connection,
                limit: budgets.connection.limit,
            });
        }
        if !budgets.process.take(more) {
            budgets.connection.give_back(more);
            return Err(ReadError::OverBudget {
                scope: BudgetScope::Process,
                limit: budgets.process.limit,
            });
        }
        self.bytes += more;
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if self.bytes > 0 {
            self.budget.0.connection.give_back(self.bytes);
            self.budget.0.process.give_back(self.bytes);
        }
    }
}

/// A body read whole, owning its reservation: the bytes go back to the budgets when the
/// last reference to the body is dropped, by whoever holds it then (the forwarding
/// keeps it until the gateway's answer arrives, for a replay after a 401).
struct Reserved {
    bytes: Bytes,
    _reservation: Reservation,
}

impl AsRef<[u8]> for Reserved {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

/// Reads a whole request body of at most `limit` bytes within `deadline` of `since` (when
/// its request's head arrived: the request context's start, so that no clock is read
/// here; a body already in hand when this is first polled never arms a timer). With a
/// `budget`, every frame is reserved on it as it arrives (not by the declared
/// `Content-Length`), and the whole reservation is given back when the returned bytes
/// are dropped, or at once when the read fails.
pub async fn read_limited<B>(
    mut body: B,
    limit: u64,
    since: std::time::Instant,
    deadline: Duration,
    budget: Option<&BufferBudget>,
) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if body.size_hint().lower() > limit {
        return Err(ReadError::TooLarge { limit });
    }
    let mut reservation = budget.map(|budget| Reservation {
        budget: budget.clone(),
        bytes: 0,
    });
    let read = async {
        let mut collected = bytes::BytesMut::new();
        let mut first: Option<Bytes> = None;
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| ReadError::Broken(e.to_string()))?;
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let total = first.as_ref().map_or(0, |f| f.len()) + collected.len() + data.len();
            if total as u64 > limit {
                return Err(ReadError::TooLarge { limit });
            }
            if let Some(reservation) = reservation.as_mut() {
                reservation.grow(data.len() as u64)?;
            }
            // The common case is a single frame: keep it without copying.
            match first.take() {
                None if collected.is_empty() => first = Some(data),
                None => collected.extend_from_slice(&data),
                Some(f) => {
                    collected.extend_from_slice(&f);
                    collected.extend_from_slice(&data);
                }
            }
        }
        Ok(first.unwrap_or_else(|| collected.freeze()))
    };
    let at = Instant::from_std(since + deadline);
    let bytes = match tokio::time::timeout_at(at, read).await {
        Ok(result) => result?,
        Err(_) => return Err(ReadError::TimedOut { after: deadline }),
    };
    Ok(match reservation {
        Some(reservation) if reservation.bytes > 0 => Bytes::from_owner(Reserved {
            bytes,
            _reservation: reservation,
        }),
        _ => bytes,
    })
}

pin_project_lite::pin_project! {
    /// A response body on its way to the agent: frames pass through as they arrive; a
    /// silence longer than `idle` ends the stream with an error; the request's context
    /// rides along and is finished when the stream ends, fails, or the agent goes away.
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        idle: Option<Duration>,
        // Armed when the body first has to wait: a JSON answer usually arrives whole
        // with its head, and then no timer is ever made.
        timer: Option<Pin<Box<Sleep>>>,
        bytes: u64,
        // The length the head announced, if any: hyper stops polling a body once that
        // many bytes are out, without asking for its end.
        expected: Option<u64>,
        context: Option<RequestContext>,
    }

    impl<B> PinnedDrop for ResponseBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(mut context) = this.context.take() {
                let complete =
                    this.inner.is_end_stream() || *this.expected == Some(*this.bytes);
                let end = if complete { End::Complete } else { End::Gone };
                context.finish(*this.bytes, end);
            }
        }
    }
}

impl<B: Body> ResponseBody<B> {
    /// `idle`: how long the body may stay silent (`None`: an answer made whole here);
    /// `length`: the Content-Length of the head, if it has one.
    pub fn new(
        inner: B,
        idle: Option<Duration>,
        length: Option<u64>,
        context: RequestContext,
    ) -> Self {
        let expected = length.or(inner.size_hint().exact());
        ResponseBody {
            inner,
            idle,
            timer: None,
            bytes: 0,
            expected,
            context: Some(context),
        }
    }
}

/// The error that ends a response stream that stayed silent too long.
#[derive(Debug)]
pub struct IdleTimeout(pub Duration);

impl std::fmt::Display for IdleTimeout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "upstream sent nothing for {}",
            humantime::format_duration(self.0)
        )
    }
}

impl std::error::Error for IdleTimeout {}

impl<B> Body for ResponseBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        let mut inner = this.inner;
        match inner.as_mut().poll_frame(cx) {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    *this.bytes += data.len() as u64;
                }
                if let (Some(timer), Some(idle)) = (this.timer.as_mut(), *this.idle) {
                    timer.as_mut().reset(Instant::now() + idle);
                }
                // hyper stops polling once the body says it has ended (a sized body
                // whose last byte arrived), so finish the request here.
                if inner.is_end_stream() {
                    if let Some(mut context) = this.context.take() {
                        context.finish(*this.bytes, End::Complete);
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                tracing::debug!("upstream stream failed: {e}");
                if let Some(mut context) = this.context.take() {
                    context.finish(*this.bytes, End::Broken);
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(mut context) = this.context.take() {
                    context.finish(*this.bytes, End::Complete);
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let Some(idle) = *this.idle else {
                    return Poll::Pending;
                };
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    let e = IdleTimeout(idle);
                    if let Some(mut context) = this.context.take() {
                        context.finish(*this.bytes, End::IdleTimeout);
                    }
                    return Poll::Ready(Some(Err(Box::new(e))));
                }
                Poll::Pending
            }
        }
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

    #[tokio::test]
    async fn bounded_read_refuses_bodies_over_the_limit() {
        let ok = read_limited(
            Full::new(Bytes::from_static(b"12345")),
            5,
            std::time::Instant::now(),
            Duration::from_secs(1),
            None,
        )
        .await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"12345"));
        let too_big = read_limited(
            Full::new(Bytes::from_static(b"123456")),
            5,
            std::time::Instant::now(),
            Duration::from_secs(1),
            None,
        )
        .await;
        assert_eq!(too_big, Err(ReadError::TooLarge { limit: 5 }));
    }

    /// A body of `frames` frames of `size` bytes each.
    fn framed(frames: usize, size: usize) -> impl Body<Data = Bytes, Error = BoxError> + Unpin {
        let chunks: Vec<Result<Frame<Bytes>, BoxError>> = (0..frames)
            .map(|_| Ok(Frame::data(Bytes::from(vec![b'x'; size]))))
            .collect();
        http_body_util::StreamBody::new(futures_util::stream::iter(chunks))
    }

    #[tokio::test]
    async fn bodies_are_reserved_as_they_arrive_and_given_back_when_dropped() {
        let process = Arc::new(BudgetPool::new(100));
        let a = BufferBudget::new(60, process.clone());
        let b = BufferBudget::new(60, process.clone());
        let second = Duration::from_secs(1);
        let now = std::time::Instant::now();

        let held = read_limited(framed(5, 10), 1000, now, second, Some(&a))
            .await
            .unwrap();
        assert_eq!((held.len(), a.used(), process.used()), (50, 50, 50));
        // A clone holds the same memory; the bytes go back with the last one.
        let clone = held.clone();
        drop(held);
        assert_eq!(a.used(), 50);

        // Over the connection's budget: refused, and what it had reserved given back.
        assert_eq!(
            read_limited(framed(2, 10), 1000, now, second, Some(&a)).await,
            Err(ReadError::OverBudget {
                scope: BudgetScope::Connection,
                limit: 60
            })
        );
        assert_eq!((a.used(), process.used()), (50, 50));

        // Over the process's budget, on another connection.
        let other = read_limited(framed(4, 10), 1000, now, second, Some(&b))
            .await
            .unwrap();
        assert_eq!(process.used(), 90);
        assert_eq!(
            read_limited(framed(2, 10), 1000, now, second, Some(&b)).await,
            Err(ReadError::OverBudget {
                scope: BudgetScope::Process,
                limit: 100
            })
        );
        assert_eq!((a.used(), b.used(), process.used()), (50, 40, 90));

        drop(clone);
        drop(other);
        assert_eq!((a.used(), b.used(), process.used()), (0, 0, 0));
        // A body cut off midway gives its bytes back too.
        assert_eq!(
            read_limited(framed(3, 10), 25, now, second, Some(&a)).await,
            Err(ReadError::TooLarge { limit: 25 })
        );
        assert_eq!((a.used(), process.used()), (0, 0));
    }
}
