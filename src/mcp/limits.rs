//! Per-route request limits: a token bucket for the request rate and a semaphore for the
//! POSTs in flight, so that one runaway agent loop cannot use up the gateway's quota for
//! every other agent behind the same proxy.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// `rate` requests per second on average, up to `burst` at once.
#[derive(Debug)]
pub struct RateLimit {
    rate: f64,
    burst: f64,
    bucket: Mutex<Bucket>,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimit {
    pub fn new(rate: f64, burst: u32) -> RateLimit {
        let burst = f64::from(burst.max(1));
        RateLimit {
            rate,
            burst,
            bucket: Mutex::new(Bucket {
                tokens: burst,
                at: Instant::now(),
            }),
        }
    }

    /// Takes one token, or says how long until one is there (whole seconds, at least 1).
    pub fn try_acquire(&self) -> Result<(), Duration> {
        self.try_acquire_n(1)
    }

    /// Takes `n` tokens at once (one per call of a batch), or says how long until they
    /// are there. `n` above the burst is never there: see [`RateLimit::burst`].
    pub fn try_acquire_n(&self, n: u32) -> Result<(), Duration> {
        self.try_acquire_at(Instant::now(), n)
    }

    /// The most calls one request may make.
    pub fn burst(&self) -> u32 {
        self.burst as u32
    }

    fn try_acquire_at(&self, now: Instant, n: u32) -> Result<(), Duration> {
        let n = f64::from(n.max(1));
        let mut b = self.bucket.lock().unwrap_or_else(|p| p.into_inner());
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.rate).min(self.burst);
        b.at = now;
        if b.tokens >= n {
            b.tokens -= n;
            Ok(())
        } else {
            // Whole seconds, rounded up: what Retry-After can say.
            let wait = ((n - b.tokens) / self.rate).ceil().max(1.0);
            Err(Duration::from_secs(wait as u64))
        }
    }
}

/// At most `limit` requests in flight; a permit is held until the response has been sent.
#[derive(Debug, Clone)]
pub struct InFlight {
    limit: usize,
    semaphore: Arc<Semaphore>,
}

impl InFlight {
    pub fn new(limit: usize) -> InFlight {
        InFlight {
            limit,
            semaphore: Arc::new(Semaphore::new(limit)),
        }
    }

    pub fn limit(&self) -> usize {
        self.limit
    }

    pub fn try_acquire(&self) -> Option<OwnedSemaphorePermit> {
        self.semaphore.clone().try_acquire_owned().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_a_burst_then_the_rate() {
        let limit = RateLimit::new(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            limit.try_acquire_at(t0, 1).unwrap();
        }
        let wait = limit.try_acquire_at(t0, 1).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1), "half a second, rounded up");
        let later = t0 + Duration::from_millis(500);
        limit.try_acquire_at(later, 1).unwrap();
        assert!(limit.try_acquire_at(later, 1).is_err());
        // Idle time refills the bucket up to the burst, not beyond.
        let much_later = later + Duration::from_secs(3600);
        for _ in 0..3 {
            limit.try_acquire_at(much_later, 1).unwrap();
        }
        assert!(limit.try_acquire_at(much_later, 1).is_err());
    }

    #[test]
    fn a_batch_takes_one_token_per_call() {
        let limit = RateLimit::new(1.0, 5);
        let t0 = Instant::now();
        limit.try_acquire_at(t0, 4).unwrap();
        assert_eq!(
            limit.try_acquire_at(t0, 2).unwrap_err(),
            Duration::from_secs(1)
        );
        limit.try_acquire_at(t0, 1).unwrap();
        assert_eq!(limit.burst(), 5);
    }

    #[test]
    fn permits_come_back_when_dropped() {
        let f = InFlight::new(1);
        let p = f.try_acquire().unwrap();
        assert!(f.try_acquire().is_none());
        drop(p);
        assert!(f.try_acquire().is_some());
    }
}
