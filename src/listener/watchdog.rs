//! One agent connection's watchdog: the deadline of its request heads and of its
//! idleness, kept with one timer per connection instead of one per request.
//!
//! hyper's own HTTP/1 `header_read_timeout` boxes a new timer for every request head,
//! registers it with the runtime's timer wheel and removes it again: ~1.5k instructions
//! per request (-1.9% at one connection, -2.4% at 32, `bench/instructions.sh`). Its rule
//! is kept here from what the connection already tracks (which requests are in progress,
//! and since when none is): a request head is in progress exactly while the connection has
//! no request in progress, so "no request in progress for `header_read_timeout`" is
//! hyper's deadline, counted from the previous answer or from the first byte.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::exchange::body::BoxError;
use crate::upstream::quiet::Quiet;

/// How long an agent connection told to close (GOAWAY) for being idle may take to
/// close by itself before it is dropped: an HTTP/2 graceful close waits for the peer
/// to answer a PING, which a hostile peer never does.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

/// The limits a connection is held to.
#[derive(Clone, Copy, Debug)]
pub struct Deadlines {
    /// `limits.header_read_timeout`: a request head must be complete this long after
    /// the connection's first byte or its previous answer.
    pub head: Duration,
    /// `limits.idle_connection_timeout`: no request in progress for this long closes
    /// the connection, whatever its protocol.
    pub idle: Duration,
}

impl Deadlines {
    /// How long the connection may have no request in progress. HTTP/2 reads heads
    /// only as part of a stream (a request in progress), so only the idle limit is
    /// its; HTTP/1.1 and a connection whose first request has not come yet are between
    /// heads whenever no request is in progress.
    fn limit(&self, protocol: u8) -> Duration {
        if protocol == H2 {
            self.idle
        } else {
            self.idle.min(self.head)
        }
    }
}

/// Drives `connection` to its end, and closes it when the server drains, when a request
/// head is not complete in time, or when nothing has been in progress on it for the idle
/// limit.
///
/// - Before its first request, a connection that has not completed a head within
///   `head` is dropped without a word (as hyper's header timeout did): nothing has been
///   answered on it, and HTTP/1.1 would wait for the head it has started.
/// - After that, an HTTP/1.1 connection with no request in progress for `head` (or
///   `idle`, the shorter) is closed gracefully: hyper closes an HTTP/1.1 connection
///   between requests at once, and lets an answer still being written finish first.
/// - An HTTP/2 connection with no stream in progress for `idle` is told to go (GOAWAY);
///   hyper has no idle timeout of its own for HTTP/2, and an agent that sent its
///   preface and a SETTINGS frame would otherwise hold its `max_connections` slot for
///   good.
///
/// A request in progress, an SSE stream silent for hours included, keeps the connection
/// open: its silence is the route's `idle_timeout` to judge. The timer is re-armed only
/// when it fires: while a request is in progress it looks again one limit later, so a
/// connection that goes quiet just after a look is closed up to one limit late.
pub async fn watch_connection<C>(
    connection: C,
    activity: &Activity,
    mut drained: watch::Receiver<()>,
    deadlines: Deadlines,
    peer: Option<SocketAddr>,
) -> Result<(), BoxError>
where
    C: Future<Output = Result<(), BoxError>> + GracefulClose,
{
    tokio::pin!(connection);
    // Both polled only when they fire, not on each of the connection's wake-ups.
    let timer = Quiet::new(tokio::time::sleep_until(
        activity.epoch + deadlines.limit(NONE_YET),
    ));
    tokio::pin!(timer);
    let drain = Quiet::new(drained.changed());
    tokio::pin!(drain);
    let mut draining = false;
    let mut closing = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => return result,
            // Also when the sender is gone: then nobody waits for the drain any more.
            _ = &mut drain, if !draining => {
                draining = true;
                connection.as_mut().graceful_close();
            }
            () = &mut timer => {
                let now = Instant::now();
                let protocol = activity.protocol();
                let limit = deadlines.limit(protocol);
                match activity.idle_since() {
                    // A request in progress: look again one limit later.
                    None => timer.as_mut().inner().reset(now + limit),
                    Some(since) if !closing && now < since + limit => {
                        timer.as_mut().inner().reset(since + limit);
                    }
                    Some(_) if protocol == NONE_YET && deadlines.head <= deadlines.idle => {
                        tracing::debug!(?peer, "agent connection sent no complete request head in time; closed");
                        return Ok(());
                    }
                    Some(_) if !closing => {
                        tracing::debug!(?peer, idle = %humantime::format_duration(limit), "agent connection idle; closing it");
                        closing = true;
                        connection.as_mut().graceful_close();
                        timer.as_mut().inner().reset(now + limit.min(IDLE_CLOSE_GRACE));
                    }
                    Some(_) => {
                        tracing::debug!(?peer, "idle agent connection did not close when asked; dropped");
                        return Ok(());
                    }
                }
            }
        }
    }
}

/// A served connection that can be asked to finish what it is doing and close.
pub trait GracefulClose {
    fn graceful_close(self: std::pin::Pin<&mut Self>);
}

/// `Activity::protocol` before the first request, then for HTTP/1.x and for HTTP/2.
const NONE_YET: u8 = 0;
const H1: u8 = 1;
const H2: u8 = 2;

/// What one agent connection has in progress, for its watchdog.
pub struct Activity {
    /// Requests whose answer has not ended (or been dropped) yet.
    open: AtomicUsize,
    /// When the last of them ended, in milliseconds since `epoch`.
    last_end: AtomicU64,
    /// The protocol of its requests, known from the first (`NONE_YET` until then).
    protocol: AtomicU8,
    /// When the connection's first byte had arrived.
    epoch: Instant,
}

impl Activity {
    /// Made once the connection's first byte has arrived.
    pub fn from_first_byte() -> Activity {
        Activity {
            open: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            protocol: AtomicU8::new(NONE_YET),
            epoch: Instant::now(),
        }
    }

    /// A request whose head is complete, in progress until the returned guard drops.
    pub fn start(self: &Arc<Self>, version: http::Version) -> OpenRequest {
        if self.protocol.load(Ordering::Relaxed) == NONE_YET {
            let protocol = if version == http::Version::HTTP_2 {
                H2
            } else {
                H1
            };
            self.protocol.store(protocol, Ordering::Relaxed);
        }
        self.open.fetch_add(1, Ordering::SeqCst);
        OpenRequest(self.clone())
    }

    fn protocol(&self) -> u8 {
        self.protocol.load(Ordering::Relaxed)
    }

    /// Since when nothing has been in progress; None while a request is.
    fn idle_since(&self) -> Option<Instant> {
        if self.open.load(Ordering::SeqCst) > 0 {
            return None;
        }
        Some(self.epoch + Duration::from_millis(self.last_end.load(Ordering::SeqCst)))
    }
}

/// One request in progress on its connection, from the call of the service until its
/// response body has been sent or dropped.
pub struct OpenRequest(Arc<Activity>);

impl Drop for OpenRequest {
    fn drop(&mut self) {
        let activity = &self.0;
        let now = activity.epoch.elapsed().as_millis() as u64;
        activity.last_end.fetch_max(now, Ordering::SeqCst);
        activity.open.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads_bound_http1_and_a_connection_with_no_request_yet_but_not_http2() {
        let d = Deadlines {
            head: Duration::from_secs(30),
            idle: Duration::from_secs(60),
        };
        assert_eq!(d.limit(NONE_YET), Duration::from_secs(30));
        assert_eq!(d.limit(H1), Duration::from_secs(30));
        assert_eq!(d.limit(H2), Duration::from_secs(60));
        let shorter_idle = Deadlines {
            head: Duration::from_secs(30),
            idle: Duration::from_secs(5),
        };
        assert_eq!(shorter_idle.limit(H1), Duration::from_secs(5));
    }

    #[test]
    fn the_first_request_names_the_protocol_for_good() {
        let activity = Arc::new(Activity::from_first_byte());
        assert_eq!(activity.protocol(), NONE_YET);
        assert!(activity.idle_since().is_some());
        let open = activity.start(http::Version::HTTP_2);
        assert_eq!(activity.protocol(), H2);
        assert!(activity.idle_since().is_none());
        drop(activity.start(http::Version::HTTP_11));
        assert_eq!(activity.protocol(), H2);
        drop(open);
        assert!(activity.idle_since().is_some());
    }
}
