//! [`PendingWrite`]: the acknowledgement of a write handed to
//! [`Engine::submit`](super::Engine::submit), awaitable from async code and
//! waitable from a plain thread, with no async runtime of its own.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use super::Shared;
use super::batch::OpResult;
use super::error::{Error, Result};
use super::writer::Reply;

/// A submitted write awaiting its acknowledgement. `.await` it from async code
/// (it never blocks the runtime), or call [`PendingWrite::wait`] from a thread.
#[derive(Debug)]
pub struct PendingWrite(PendingState, Option<Arc<Shared>>);

#[derive(Debug)]
enum PendingState {
    Ready(Option<Reply>),
    Waiting(oneshot::Receiver<Reply>),
    Polling(oneshot::AsyncReceiver<Reply>),
    Done,
}

impl PendingWrite {
    /// A write that failed before it was queued (validation, a closed engine).
    pub(crate) fn failed(e: Error) -> PendingWrite {
        PendingWrite(PendingState::Ready(Some(Err(e))), None)
    }

    /// A queued write whose reply comes through `rx`.
    pub(crate) fn waiting(rx: oneshot::Receiver<Reply>, shared: Arc<Shared>) -> PendingWrite {
        PendingWrite(PendingState::Waiting(rx), Some(shared))
    }

    /// Blocks until the write is acknowledged (durable per the sync mode) or failed.
    pub fn wait(self) -> Result<Vec<OpResult>> {
        let shared = self.1;
        let reply = match self.0 {
            PendingState::Ready(r) => r,
            PendingState::Waiting(rx) => {
                let reply = rx.recv().ok();
                // Woken: pass acknowledgements on (see `Shared::relay`).
                if let Some(shared) = &shared {
                    shared.relay(super::writer::RELAY_FANOUT);
                }
                reply
            }
            PendingState::Polling(rx) => futures_block_on(rx),
            PendingState::Done => None,
        };
        reply.unwrap_or_else(|| Err(gone(shared.as_deref())))
    }
}

/// The error for a request whose reply was dropped unsent: the engine closed,
/// or a panic on the path that held it latched the engine.
fn gone(shared: Option<&Shared>) -> Error {
    match shared.and_then(Shared::failure) {
        Some(cause) => Error::ReadOnly { cause },
        None => Error::Closed,
    }
}

impl Future for PendingWrite {
    type Output = Result<Vec<OpResult>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let state = &mut this.0;
        loop {
            match state {
                PendingState::Ready(r) => {
                    return Poll::Ready(r.take().unwrap_or(Err(Error::Closed)));
                }
                PendingState::Waiting(_) => {
                    // Polled for the first time: turn the receiver into its future.
                    if let PendingState::Waiting(rx) = std::mem::replace(state, PendingState::Done)
                    {
                        *state = PendingState::Polling(std::future::IntoFuture::into_future(rx));
                    }
                }
                PendingState::Polling(rx) => {
                    let shared = this.1.as_deref();
                    let reply = Pin::new(rx).poll(cx);
                    if reply.is_ready()
                        && let Some(shared) = shared
                    {
                        shared.relay(super::writer::RELAY_FANOUT);
                    }
                    return reply.map(|r| r.unwrap_or_else(|_| Err(gone(shared))));
                }
                PendingState::Done => return Poll::Ready(Err(Error::Closed)),
            }
        }
    }
}

/// Waits for an already-polled receiver from a plain thread.
fn futures_block_on(mut rx: oneshot::AsyncReceiver<Reply>) -> Option<Reply> {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match Pin::new(&mut rx).poll(&mut cx) {
            Poll::Ready(r) => return r.ok(),
            Poll::Pending => std::thread::park(),
        }
    }
}
