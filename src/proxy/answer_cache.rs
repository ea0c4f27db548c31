//! The cache of MCP 2026-07-28 list answers of one route: an answer is kept for the
//! `ttlMs` the gateway gave it (at most a day) and served with the time it has left.
//! Bounded in entries and bytes (the oldest goes first); every entry remembers the
//! generation of the route's lists it was stored in, so a `list_changed` notification
//! that passed since makes it stale. A reload builds a new route, and a new, empty cache.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use super::coalesce::ShareKey;
use super::shared_answer::SharedAnswer;

/// The longest an answer is kept, whatever its `ttlMs`.
pub const MAX_TTL: Duration = Duration::from_secs(24 * 3600);

pub struct AnswerCache {
    max_entries: usize,
    max_bytes: usize,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<ShareKey, Entry>,
    /// Keys in the order they were stored (with the entry's sequence number: a key
    /// stored again later is skipped where it was before).
    order: VecDeque<(ShareKey, u64)>,
    bytes: usize,
    next: u64,
}

struct Entry {
    answer: Arc<SharedAnswer>,
    until: Instant,
    generation: u64,
    seq: u64,
    size: usize,
}

/// A fresh answer from the cache and the milliseconds of freshness it has left.
pub struct Hit {
    pub answer: Arc<SharedAnswer>,
    pub ttl_left_ms: u64,
}

impl AnswerCache {
    pub fn new(max_entries: usize, max_bytes: u64) -> AnswerCache {
        AnswerCache {
            max_entries: max_entries.max(1),
            max_bytes: usize::try_from(max_bytes).unwrap_or(usize::MAX),
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The answer kept for `key`, while fresh and of the lists' current `generation`.
    pub fn get(&self, key: &ShareKey, generation: u64) -> Option<Hit> {
        self.get_at(key, generation, Instant::now())
    }

    fn get_at(&self, key: &ShareKey, generation: u64, now: Instant) -> Option<Hit> {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = inner.entries.get(key)?;
        if entry.generation != generation || entry.until <= now {
            inner.remove(key);
            return None;
        }
        let left = entry.until - now;
        Some(Hit {
            answer: entry.answer.clone(),
            ttl_left_ms: u64::try_from(left.as_millis()).unwrap_or(u64::MAX).max(1),
        })
    }

    /// Keeps `answer` for `ttl`; nothing when it alone is over the byte bound.
    pub fn put(&self, key: ShareKey, answer: Arc<SharedAnswer>, ttl: Duration, generation: u64) {
        self.put_at(key, answer, ttl, generation, Instant::now());
    }

    fn put_at(
        &self,
        key: ShareKey,
        answer: Arc<SharedAnswer>,
        ttl: Duration,
        generation: u64,
        now: Instant,
    ) {
        let size = answer.size() + key.size();
        if size > self.max_bytes || ttl.is_zero() {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        inner.remove(&key);
        inner.drop_stale(now, generation);
        while inner.entries.len() >= self.max_entries || inner.bytes + size > self.max_bytes {
            if !inner.evict_oldest() {
                break;
            }
        }
        let seq = inner.next;
        inner.next += 1;
        inner.order.push_back((key.clone(), seq));
        inner.bytes += size;
        inner.entries.insert(
            key,
            Entry {
                answer,
                until: now + ttl.min(MAX_TTL),
                generation,
                seq,
                size,
            },
        );
        inner.compact();
    }

    /// Entries and bytes kept now.
    pub fn usage(&self) -> (usize, usize) {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        (inner.entries.len(), inner.bytes)
    }
}

impl Inner {
    fn remove(&mut self, key: &ShareKey) {
        if let Some(entry) = self.entries.remove(key) {
            self.bytes -= entry.size;
        }
    }

    fn drop_stale(&mut self, now: Instant, generation: u64) {
        let mut freed = 0;
        self.entries.retain(|_, e| {
            let keep = e.until > now && e.generation == generation;
            if !keep {
                freed += e.size;
            }
            keep
        });
        self.bytes -= freed;
    }

    /// Removes the entry stored longest ago; false when there is none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((key, seq)) = self.order.pop_front() {
            if self.entries.get(&key).is_some_and(|e| e.seq == seq) {
                self.remove(&key);
                return true;
            }
        }
        false
    }

    /// Drops the order's records of entries no longer there, once they outnumber the
    /// entries.
    fn compact(&mut self) {
        if self.order.len() <= 2 * self.entries.len() + 16 {
            return;
        }
        let entries = &self.entries;
        self.order
            .retain(|(key, seq)| entries.get(key).is_some_and(|e| e.seq == *seq));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use http::{HeaderMap, StatusCode};

    fn key(n: usize) -> ShareKey {
        ShareKey {
            method: "tools/list".into(),
            params: n.to_string().into(),
            protocol: None,
            session: None,
            identity: None,
            query: None,
        }
    }

    fn answer(pad: usize) -> Arc<SharedAnswer> {
        let body = format!(
            r#"{{"jsonrpc":"2.0","id":1,"result":{{"tools":[],"pad":"{}","ttlMs":1000,"cacheScope":"public"}}}}"#,
            "x".repeat(pad)
        );
        Arc::new(SharedAnswer::read(StatusCode::OK, &HeaderMap::new(), &Bytes::from(body)).unwrap())
    }

    #[test]
    fn answers_are_kept_for_their_ttl_and_generation() {
        let cache = AnswerCache::new(8, 1 << 20);
        let t0 = Instant::now();
        let secs = Duration::from_secs;
        cache.put_at(key(1), answer(0), secs(10), 0, t0);
        let hit = cache.get_at(&key(1), 0, t0).unwrap();
        assert_eq!(hit.ttl_left_ms, 10_000);
        assert_eq!(
            cache.get_at(&key(1), 0, t0 + secs(4)).unwrap().ttl_left_ms,
            6_000
        );
        assert!(
            cache.get_at(&key(1), 1, t0).is_none(),
            "a list changed since"
        );
        assert!(cache.get_at(&key(1), 0, t0).is_none(), "and it is gone");
        cache.put_at(key(2), answer(0), secs(1), 0, t0);
        assert!(cache.get_at(&key(2), 0, t0 + secs(1)).is_none(), "expired");
        assert_eq!(cache.usage(), (0, 0));
        cache.put_at(key(3), answer(0), secs(2 * 24 * 3600), 0, t0);
        assert_eq!(
            cache.get_at(&key(3), 0, t0).unwrap().ttl_left_ms,
            MAX_TTL.as_millis() as u64
        );
    }

    #[test]
    fn the_cache_is_bounded_in_entries_and_bytes() {
        let cache = AnswerCache::new(3, 1 << 20);
        for i in 0..5 {
            cache.put(key(i), answer(0), Duration::from_secs(60), 0);
        }
        assert_eq!(cache.usage().0, 3);
        assert!(cache.get(&key(0), 0).is_none(), "the oldest went first");
        assert!(cache.get(&key(4), 0).is_some());
        let size = answer(1000).size() + key(0).size();
        let cache = AnswerCache::new(100, (2 * size + size / 2) as u64);
        for i in 0..4 {
            cache.put(key(i), answer(1000), Duration::from_secs(60), 0);
        }
        let (entries, bytes) = cache.usage();
        assert_eq!(entries, 2);
        assert!(bytes <= 2 * size + size / 2);
        cache.put(key(9), answer(10_000), Duration::from_secs(60), 0);
        assert!(
            cache.get(&key(9), 0).is_none(),
            "larger than the whole cache"
        );
        for _ in 0..100 {
            cache.put(key(1), answer(0), Duration::from_secs(60), 0);
        }
        assert!(cache.inner.lock().unwrap().order.len() <= 2 * 100 + 16);
    }
}
