//! Thread-per-core serving. Each worker thread runs its own single-threaded tokio
//! runtime and serves whole agent connections, with its own upstream pools: a request
//! is read, forwarded over an upstream connection and answered on one thread, with no
//! cross-thread wake-up (the work-stealing runtime spent more CPU per request waking
//! and stealing than forwarding: 108.8 against 60.6 µs/request at one connection).
//!
//! The listener stays on the main runtime, which hands each accepted connection to the
//! next worker in turn (a channel send per connection, not per request). Background
//! work (admin, DNS refresh, signals, reload) stays on the main runtime too.

use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

use crate::upstream::per_worker::{set_count, set_current};

/// The running workers.
pub struct Workers {
    handles: Vec<Handle>,
    stops: Vec<oneshot::Sender<()>>,
    threads: Vec<JoinHandle<()>>,
    next: AtomicUsize,
}

impl Workers {
    /// Starts `n` worker threads, each driving its own current-thread runtime until
    /// [`Workers::stop`]. Must run before any route is built, so that every route gets
    /// one pool per worker.
    pub fn start(n: usize) -> Result<Workers, String> {
        let n = n.max(1);
        set_count(n);
        let mut workers = Workers {
            handles: Vec::with_capacity(n),
            stops: Vec::with_capacity(n),
            threads: Vec::with_capacity(n),
            next: AtomicUsize::new(0),
        };
        for index in 0..n {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .on_thread_start(move || set_current(index))
                .build()
                .map_err(|e| format!("cannot start worker {index}: {e}"))?;
            let (stop, stopped) = oneshot::channel::<()>();
            workers.handles.push(runtime.handle().clone());
            workers.stops.push(stop);
            let thread = std::thread::Builder::new()
                .name(format!("worker-{index}"))
                .spawn(move || {
                    set_current(index);
                    runtime.block_on(async {
                        tokio::select! {
                            _ = stopped => {}
                            _ = hold_timer_anchor() => {}
                        }
                    });
                    // Dropping the runtime here cancels what is left: the server has
                    // drained (or given up on) every connection by now.
                })
                .map_err(|e| format!("cannot start worker {index}: {e}"))?;
            workers.threads.push(thread);
        }
        Ok(workers)
    }

    /// Runs `task` on the next worker in turn.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.handles.len();
        drop(self.handles[i].spawn(task));
    }

    /// Stops every worker (cancelling what still runs there) and waits for its thread.
    pub fn stop(mut self) {
        for stop in self.stops.drain(..) {
            let _ = stop.send(());
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

/// How far ahead the anchor timer is kept: below every per-request timeout by default
/// (response 300 s, body 60 s, header 30 s); a shorter configured timeout only costs the
/// wake-up this avoids.
const TIMER_ANCHOR: Duration = Duration::from_secs(5);

/// Keeps one timer armed on the runtime it runs on, a few seconds ahead, for ever.
///
/// tokio's timer wakes its own thread (an eventfd write and one more `epoll_wait`)
/// whenever a timer is armed earlier than every other one. An idle worker has none, so
/// every forwarded request (its response timeout) paid that wake-up: 2 syscalls of the
/// ~9 per request. With the anchor always earlier, arming a request's timer is a wheel
/// insert only, at the cost of one wake-up per worker every 5 s.
pub async fn hold_timer_anchor() {
    loop {
        tokio::time::sleep(TIMER_ANCHOR).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::upstream::per_worker::current;

    #[test]
    fn tasks_go_round_robin_and_know_their_worker() {
        let workers = Workers::start(2).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..4 {
            let tx = tx.clone();
            workers.spawn(async move {
                tx.send((current(), std::thread::current().name().map(String::from)))
                    .unwrap();
            });
        }
        let mut seen: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
        seen.sort();
        assert_eq!(
            seen,
            vec![
                (0, Some("worker-0".into())),
                (0, Some("worker-0".into())),
                (1, Some("worker-1".into())),
                (1, Some("worker-1".into())),
            ]
        );
        workers.stop();
        set_count(1);
    }
}
