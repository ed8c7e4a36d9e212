//! Decisions that go to Redis together.
//!
//! Redis spends most of a script call on the call itself (argument tables,
//! the clock, the reply), not on one key's arithmetic. So while a few calls
//! are on their way, decisions that arrive wait in a queue and leave
//! together, in one call: under load a decision costs Redis about half as
//! much, and when traffic is light each leaves at once, alone, from its own
//! request.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, oneshot};

use super::guard::Failed;
use crate::sync::lock;

/// Calls on their way to Redis at once, per store.
const CALLS_IN_FLIGHT: usize = 4;
/// The most decisions in one call.
const MAX_BATCH: usize = 128;

/// Redis's answer for one decision: the script's values for its key and
/// the call's round trip.
pub(crate) type Answer = Result<(Vec<i64>, Duration), Failed>;

/// One decision waiting to be sent.
pub(crate) struct Waiting {
    pub(crate) redis_key: Vec<u8>,
    pub(crate) cost: u32,
    pub(crate) max_wait: Duration,
    pub(crate) answer: oneshot::Sender<Answer>,
}

/// The queue shared by a store's requests and its sending task.
pub(crate) struct Batches {
    waiting: Mutex<Vec<Waiting>>,
    wake: Notify,
    closed: AtomicBool,
    /// One permit per call on its way.
    calls: Arc<Semaphore>,
}

impl Default for Batches {
    fn default() -> Self {
        Batches {
            waiting: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            calls: Arc::new(Semaphore::new(CALLS_IN_FLIGHT)),
        }
    }
}

impl Batches {
    /// A call of its own for a decision when nothing waits and a call is
    /// free (light traffic): it leaves at once, without a hop through the
    /// sending task.
    pub(crate) fn alone(&self) -> Option<OwnedSemaphorePermit> {
        if !lock(&self.waiting).is_empty() {
            return None;
        }
        self.calls.clone().try_acquire_owned().ok()
    }

    /// Queues a decision; the sending task takes it with the next call.
    pub(crate) fn push(&self, waiting: Waiting) {
        lock(&self.waiting).push(waiting);
        self.wake.notify_one();
    }

    /// Ends the sending task (its store is gone).
    pub(crate) fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.wake.notify_one();
    }

    /// Waits for decisions and takes up to [`MAX_BATCH`] of them; `None`
    /// once closed.
    async fn take(&self) -> Option<Vec<Waiting>> {
        loop {
            {
                let mut waiting = lock(&self.waiting);
                if !waiting.is_empty() {
                    let taken = waiting.len().min(MAX_BATCH);
                    return Some(waiting.drain(..taken).collect());
                }
            }
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            self.wake.notified().await;
        }
    }
}

/// The sending task: takes what is queued whenever fewer than
/// [`CALLS_IN_FLIGHT`] calls are out, and hands it to `send` on a task of
/// its own. Ends when the queue is closed.
pub(crate) async fn send_batches<F, Fut>(batches: Arc<Batches>, send: F)
where
    F: Fn(Vec<Waiting>) -> Option<Fut>,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let calls = batches.calls.clone();
    loop {
        let Ok(call) = calls.clone().acquire_owned().await else {
            return;
        };
        let Some(batch) = batches.take().await else {
            return;
        };
        let Some(sending) = send(batch) else {
            return;
        };
        tokio::spawn(async move {
            sending.await;
            drop(call);
        });
    }
}
