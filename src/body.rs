//! Body types and the two body helpers of the request path: a bounded read of a request
//! body, and the response wrapper that enforces the idle timeout and closes the access
//! log line when the stream ends.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full};
use tokio::time::{Instant, Sleep};

use crate::access_log::AccessLog;

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
    TooLarge { limit: u64 },
    TimedOut { after: Duration },
    Broken(String),
}

/// Reads a whole request body of at most `limit` bytes within `deadline`.
pub async fn read_limited<B>(
    mut body: B,
    limit: u64,
    deadline: Duration,
) -> Result<Bytes, ReadError>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: std::fmt::Display,
{
    if body.size_hint().lower() > limit {
        return Err(ReadError::TooLarge { limit });
    }
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
    match tokio::time::timeout(deadline, read).await {
        Ok(result) => result,
        Err(_) => Err(ReadError::TimedOut { after: deadline }),
    }
}

pin_project_lite::pin_project! {
    /// A response body on its way to the agent: frames pass through as they arrive; a
    /// silence longer than `idle` ends the stream with an error; the access log line is
    /// written when the stream ends, fails, or the agent goes away.
    pub struct ResponseBody<B>
    where
        B: Body,
    {
        #[pin]
        inner: B,
        idle: Duration,
        // Armed when the body first has to wait: a JSON answer usually arrives whole
        // with its head, and then no timer is ever made.
        timer: Option<Pin<Box<Sleep>>>,
        bytes: u64,
        log: Option<AccessLog>,
    }

    impl<B> PinnedDrop for ResponseBody<B>
    where
        B: Body,
    {
        fn drop(this: Pin<&mut Self>) {
            let this = this.project();
            if let Some(log) = this.log.take() {
                let outcome = if this.inner.is_end_stream() { "ok" } else { "client went away" };
                log.finish(*this.bytes, outcome);
            }
        }
    }
}

impl<B: Body> ResponseBody<B> {
    pub fn new(inner: B, idle: Duration, log: AccessLog) -> Self {
        log.start();
        ResponseBody {
            inner,
            idle,
            timer: None,
            bytes: 0,
            log: Some(log),
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
                if let Some(timer) = this.timer.as_mut() {
                    timer.as_mut().reset(Instant::now() + *this.idle);
                }
                // hyper stops polling once the body says it has ended (a sized body
                // whose last byte arrived), so close the log line here.
                if inner.is_end_stream() {
                    if let Some(log) = this.log.take() {
                        log.finish(*this.bytes, "ok");
                    }
                }
                Poll::Ready(Some(Ok(frame)))
            }
            Poll::Ready(Some(Err(e))) => {
                let e: BoxError = e.into();
                if let Some(log) = this.log.take() {
                    log.finish(*this.bytes, &format!("upstream stream failed: {e}"));
                }
                Poll::Ready(Some(Err(e)))
            }
            Poll::Ready(None) => {
                if let Some(log) = this.log.take() {
                    log.finish(*this.bytes, "ok");
                }
                Poll::Ready(None)
            }
            Poll::Pending => {
                let idle = *this.idle;
                let timer = this
                    .timer
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                if timer.as_mut().poll(cx).is_ready() {
                    let e = IdleTimeout(*this.idle);
                    if let Some(log) = this.log.take() {
                        log.finish(*this.bytes, &e.to_string());
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
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(ok.unwrap(), Bytes::from_static(b"12345"));
        let too_big = read_limited(
            Full::new(Bytes::from_static(b"123456")),
            5,
            Duration::from_secs(1),
        )
        .await;
        assert_eq!(too_big, Err(ReadError::TooLarge { limit: 5 }));
    }
}
