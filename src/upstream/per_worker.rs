//! One value per worker thread (one upstream connection pool per worker, as nginx keeps
//! one per worker process), and which worker the current thread is. The worker threads
//! themselves are the listener's (`listener::workers`), which sets these.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

/// How many workers this process serves with; 1 when not sharded (tests, `check`).
static COUNT: AtomicUsize = AtomicUsize::new(1);

thread_local! {
    /// The index of the worker running on this thread; 0 on every other thread.
    static INDEX: Cell<usize> = const { Cell::new(0) };
}

/// The number of workers: the number of copies a [`PerWorker`] value holds.
pub fn count() -> usize {
    COUNT.load(Ordering::Relaxed)
}

/// The worker running on this thread (0 outside the workers).
pub fn current() -> usize {
    INDEX.with(Cell::get)
}

/// One value per worker, each used only from its own worker's thread (one upstream
/// connection pool per worker, as nginx keeps one per worker process).
pub struct PerWorker<T>(Box<[T]>);

impl<T> PerWorker<T> {
    pub fn new(make: impl FnMut() -> T) -> PerWorker<T> {
        PerWorker(std::iter::repeat_with(make).take(count().max(1)).collect())
    }

    /// The copy of the worker running on this thread.
    pub fn get(&self) -> &T {
        &self.0[current() % self.0.len()]
    }
}

/// Sets the number of workers (before any [`PerWorker`] is made).
pub fn set_count(n: usize) {
    COUNT.store(n, Ordering::Relaxed);
}

/// Marks this thread as worker `index`.
pub fn set_current(index: usize) {
    INDEX.with(|i| i.set(index));
}
