//! Panics cost one query or one connection, never a listener.
//!
//! A panic in a listener's own loop would end that listener for good while the process
//! stays up (and systemd restarts only processes that exit). So every piece of work that runs
//! a query — the inline poll of a UDP datagram, a spawned query task, a TCP connection — is
//! run under [`catch_unwind`](std::panic::catch_unwind) and a caught panic is counted.

use std::{
    future::Future,
    panic::AssertUnwindSafe,
    pin::Pin,
    task::{Context, Poll},
};

use prometheus::IntCounter;

use crate::log_limit::LogLimit;

static PANIC_WARNINGS: LogLimit = LogLimit::new("panic while answering", 10);

/// Counts a caught panic and says so (rate-limited: a client that finds a panicking name
/// can repeat it).
pub(crate) fn caught(counter: &IntCounter, listener: &'static str) {
    counter.inc();
    crate::warn_limited!(
        PANIC_WARNINGS,
        listener,
        "a panic while answering was caught; that query got no answer"
    );
}

/// Runs `f`, catching a panic (counted on `counter`); `None` when it panicked.
pub(crate) fn guard<T>(
    counter: &IntCounter,
    listener: &'static str,
    f: impl FnOnce() -> T,
) -> Option<T> {
    match std::panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(value) => Some(value),
        Err(_) => {
            caught(counter, listener);
            None
        }
    }
}

/// A future that turns a panic while it is polled into `None` (counted on `counter`).
pub(crate) struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
    counter: IntCounter,
    listener: &'static str,
}

impl<F: Future> CatchUnwind<F> {
    /// Guards `inner`.
    pub(crate) fn new(inner: F, counter: IntCounter, listener: &'static str) -> Self {
        CatchUnwind {
            inner: Box::pin(inner),
            counter,
            listener,
        }
    }

    /// Guards an already pinned future.
    pub(crate) fn pinned(inner: Pin<Box<F>>, counter: IntCounter, listener: &'static str) -> Self {
        CatchUnwind {
            inner,
            counter,
            listener,
        }
    }
}

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let inner = &mut this.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => Poll::Ready(Some(value)),
            Ok(Poll::Pending) => Poll::Pending,
            Err(_) => {
                caught(&this.counter, this.listener);
                Poll::Ready(None)
            }
        }
    }
}
