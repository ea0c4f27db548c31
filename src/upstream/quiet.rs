//! A future beside a busy one, polled only when its own waker has fired.
//!
//! A connection's driver and an agent connection's watchdog wait on the connection and
//! on a timer (and the watchdog on the drain signal) in one `select!`, which polls every
//! branch on every wake of the task: several times per request. Polling a
//! `tokio::time::Sleep` that has not fired re-registers the task's waker and does tokio's
//! budget accounting (~180 instructions); polling a `watch::Receiver::changed` future
//! takes the channel's notifier apart again (~470). `Quiet` polls its future once with a
//! waker of its own, and after that only when that waker has been woken: other wakes of
//! the task cost an atomic swap and keeping the task's waker current.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

pin_project_lite::pin_project! {
    /// `F` polled only on its own wake-ups (and on the first poll, and after
    /// [`Quiet::inner`]).
    pub struct Quiet<F> {
        #[pin]
        inner: F,
        signal: Arc<Signal>,
        waker: Waker,
        // Whether `inner` has to be polled on the next poll whatever the signal says.
        due: bool,
    }
}

/// Set by `inner`'s wake-ups; wakes the task that polls the `Quiet`.
struct Signal {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Signal {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F> Quiet<F> {
    pub fn new(inner: F) -> Quiet<F> {
        let signal = Arc::new(Signal {
            woken: AtomicBool::new(false),
            task: AtomicWaker::new(),
        });
        Quiet {
            inner,
            waker: Waker::from(signal.clone()),
            signal,
            due: true,
        }
    }

    /// The future, to change it (a timer's deadline): it is polled on the next poll.
    pub fn inner(self: Pin<&mut Self>) -> Pin<&mut F> {
        let this = self.project();
        *this.due = true;
        this.inner
    }
}

impl<F: Future> Future for Quiet<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.project();
        // Before looking at the signal, so that a wake-up between the two is not lost.
        this.signal.task.register(cx.waker());
        let woken = this.signal.woken.swap(false, Ordering::AcqRel);
        if !(woken || *this.due) {
            return Poll::Pending;
        }
        *this.due = false;
        this.inner.poll(&mut Context::from_waker(this.waker))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Counts its polls; ready once `ready` is set, after waking whoever polled it last.
    struct Probe {
        polls: Arc<AtomicUsize>,
        ready: Arc<AtomicBool>,
        waker: Arc<std::sync::Mutex<Option<Waker>>>,
    }

    impl Future for Probe {
        type Output = ();
        fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            self.polls.fetch_add(1, Ordering::SeqCst);
            if self.ready.load(Ordering::SeqCst) {
                return Poll::Ready(());
            }
            *self.waker.lock().unwrap() = Some(cx.waker().clone());
            Poll::Pending
        }
    }

    #[test]
    fn the_inner_future_is_polled_only_when_it_woke_its_task() {
        let polls = Arc::new(AtomicUsize::new(0));
        let ready = Arc::new(AtomicBool::new(false));
        let inner_waker = Arc::new(std::sync::Mutex::new(None));
        let mut quiet = std::pin::pin!(Quiet::new(Probe {
            polls: polls.clone(),
            ready: ready.clone(),
            waker: inner_waker.clone(),
        }));
        let task_wakes = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let task_waker = Waker::from(task_wakes.clone());
        let mut cx = Context::from_waker(&task_waker);

        assert!(quiet.as_mut().poll(&mut cx).is_pending());
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        // Wakes of the task for other reasons do not reach the inner future.
        for _ in 0..5 {
            assert!(quiet.as_mut().poll(&mut cx).is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);

        // The inner future's own wake-up wakes the task and lets the next poll through.
        ready.store(true, Ordering::SeqCst);
        inner_waker.lock().unwrap().take().unwrap().wake();
        assert_eq!(task_wakes.0.load(Ordering::SeqCst), 1);
        assert!(quiet.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn changing_the_future_has_it_polled_again() {
        let polls = Arc::new(AtomicUsize::new(0));
        let mut quiet = std::pin::pin!(Quiet::new(Probe {
            polls: polls.clone(),
            ready: Arc::new(AtomicBool::new(false)),
            waker: Arc::new(std::sync::Mutex::new(None)),
        }));
        let mut cx = Context::from_waker(Waker::noop());
        let _ = quiet.as_mut().poll(&mut cx);
        let _ = quiet.as_mut().poll(&mut cx);
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        quiet.as_mut().inner().ready.store(true, Ordering::SeqCst);
        assert!(quiet.as_mut().poll(&mut cx).is_ready());
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }

    struct CountingWaker(AtomicUsize);
    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}
