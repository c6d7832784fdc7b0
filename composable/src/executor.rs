//! Runs [`Effect`] values: the one place both the [`Store`](crate::Store) and the
//! [`TestStore`](crate::testing::TestStore) turn effect descriptions into tasks.
//!
//! Synchronous parts (`send`, `cancel`) happen during [`Executor::start`], so an action fed back
//! with `Effect::send` is queued right behind the action that produced it. Everything else runs
//! on a Tokio task that holds a [`Tracker`] guard, so callers can wait for the work an action
//! started. Cancellation handles are registered before a task is spawned: cancelling an effect
//! that has not started running yet stops it before its first poll.

use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use futures::FutureExt;
use futures::future::{AbortHandle, AbortRegistration, Abortable, BoxFuture};
use tokio::sync::Notify;
use tracing::Instrument;
use tracing::field::Empty;

use crate::clock::Clock;
use crate::effect::{CancelId, Effect, Kind, Sender};
use crate::metrics;

/// Counts running work that belongs to one thing (one `send`, or a whole store).
#[derive(Clone, Default)]
pub(crate) struct Tracker(Arc<TrackerInner>);

#[derive(Default)]
struct TrackerInner {
    running: AtomicUsize,
    idle: Notify,
}

/// Held by a running task; the tracker counts it until dropped.
pub(crate) struct TrackerGuard(Tracker);

impl Tracker {
    pub(crate) fn enter(&self) -> TrackerGuard {
        self.0.running.fetch_add(1, Ordering::AcqRel);
        TrackerGuard(self.clone())
    }

    pub(crate) fn running(&self) -> usize {
        self.0.running.load(Ordering::Acquire)
    }

    /// Completes once no work is counted.
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.0.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.running() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for TrackerGuard {
    fn drop(&mut self) {
        if self.0.0.running.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.0.0.idle.notify_waiters();
        }
    }
}

/// Where the actions of asynchronous effects go: the store's queue, or the test store's inbox.
/// The tracker is the one of the `send` that started the effect.
pub(crate) type Deliver<A> = Arc<dyn Fn(A, Option<Tracker>) + Send + Sync>;

pub(crate) struct Executor<A> {
    shared: Arc<Shared<A>>,
}

struct Shared<A> {
    /// Whose effects these are (the reducer's type), for their spans and metrics.
    name: &'static str,
    clock: Arc<dyn Clock>,
    deliver: Deliver<A>,
    cancellations: Mutex<HashMap<CancelId, Vec<(u64, AbortHandle)>>>,
    next_token: AtomicU64,
    running: Tracker,
    runtime: tokio::runtime::Handle,
}

impl<A> Clone for Executor<A> {
    fn clone(&self) -> Self {
        Self { shared: Arc::clone(&self.shared) }
    }
}

impl<A: Send + 'static> Executor<A> {
    /// The executor of `name`'s effects (a reducer's type name).
    ///
    /// # Panics
    /// Outside a Tokio runtime, like `tokio::spawn`.
    pub(crate) fn new(name: &'static str, clock: Arc<dyn Clock>, deliver: Deliver<A>) -> Self {
        Self {
            shared: Arc::new(Shared {
                name,
                clock,
                deliver,
                cancellations: Mutex::new(HashMap::new()),
                next_token: AtomicU64::new(0),
                running: Tracker::default(),
                runtime: tokio::runtime::Handle::current(),
            }),
        }
    }

    /// All work this executor is running.
    pub(crate) fn running(&self) -> &Tracker {
        &self.shared.running
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.shared.clock
    }

    /// Starts `effect`. Actions it feeds back synchronously are pushed to `immediate`; async
    /// work is spawned and counted by `origin` (created on first use) and the store's tracker.
    pub(crate) fn start(
        &self,
        effect: Effect<A>,
        origin: &mut Option<Tracker>,
        immediate: &mut VecDeque<A>,
    ) {
        match effect.kind {
            Kind::None => {}
            Kind::Send(action) => immediate.push_back(action),
            Kind::Cancel(id) => self.shared.cancel(&id),
            Kind::Merge(effects) => {
                for effect in effects {
                    self.start(effect, origin, immediate);
                }
            }
            Kind::Cancellable { id, cancel_in_flight, effect } => {
                if cancel_in_flight {
                    self.shared.cancel(&id);
                }
                let (token, registration) = self.shared.register(&id);
                let work = self.shared.drive(*effect, self.sender(origin));
                let shared = Arc::clone(&self.shared);
                self.spawn(
                    Box::pin(async move {
                        let finished = Abortable::new(work, registration).await.is_ok();
                        shared.unregister(&id, token);
                        finished
                    }),
                    origin,
                );
            }
            kind @ (Kind::Run(_) | Kind::Retry(_) | Kind::Delay { .. } | Kind::Concat(_)) => {
                let work = self.shared.drive(Effect { kind }, self.sender(origin));
                self.spawn(work.map(|()| true).boxed(), origin);
            }
        }
    }

    fn sender(&self, origin: &mut Option<Tracker>) -> Sender<A> {
        let origin = origin.get_or_insert_with(Tracker::default).clone();
        let deliver = Arc::clone(&self.shared.deliver);
        Sender::new(move |action| deliver(action, Some(origin.clone())))
    }

    /// Runs `work` (which says whether it finished, rather than being cancelled) on a task
    /// of its own, in an `effect` span, timed for
    /// [`metrics::EFFECT_DURATION`](crate::metrics::EFFECT_DURATION).
    fn spawn(&self, work: BoxFuture<'static, bool>, origin: &mut Option<Tracker>) {
        let guards =
            (self.shared.running.enter(), origin.get_or_insert_with(Tracker::default).enter());
        let name = self.shared.name;
        let span = tracing::info_span!("effect", store = name, outcome = Empty);
        let recorded = span.clone();
        let took = metrics::Stopwatch::start();
        let work = async move {
            let _guards = guards;
            let outcome = match AssertUnwindSafe(work).catch_unwind().await {
                Ok(true) => "finished",
                Ok(false) => "cancelled",
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a non-string panic payload".to_owned());
                    tracing::error!(panic = %message, "an effect panicked; the store keeps running");
                    "panicked"
                }
            };
            recorded.record("outcome", outcome);
            metrics::effect_finished(name, outcome, took);
        };
        self.shared.runtime.spawn(work.instrument(span));
    }

    /// Cancels every cancellable effect (test stores use it to skip in-flight work).
    #[cfg(feature = "testing")]
    pub(crate) fn cancel_all(&self) {
        let handles: Vec<_> = self.shared.cancellations().drain().flat_map(|(_, v)| v).collect();
        for (_, handle) in handles {
            handle.abort();
        }
    }
}

impl<A: Send + 'static> Shared<A> {
    fn cancellations(&self) -> MutexGuard<'_, HashMap<CancelId, Vec<(u64, AbortHandle)>>> {
        self.cancellations.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn register(&self, id: &CancelId) -> (u64, AbortRegistration) {
        let (handle, registration) = AbortHandle::new_pair();
        let token = self.next_token.fetch_add(1, Ordering::Relaxed);
        self.cancellations().entry(id.clone()).or_default().push((token, handle));
        (token, registration)
    }

    fn unregister(&self, id: &CancelId, token: u64) {
        let mut cancellations = self.cancellations();
        if let Some(handles) = cancellations.get_mut(id) {
            handles.retain(|(t, _)| *t != token);
            if handles.is_empty() {
                cancellations.remove(id);
            }
        }
    }

    fn cancel(&self, id: &CancelId) {
        let handles = self.cancellations().remove(id).unwrap_or_default();
        for (_, handle) in handles {
            handle.abort();
        }
    }

    /// The async interpretation of an effect, run inside a task.
    fn drive(self: &Arc<Self>, effect: Effect<A>, sender: Sender<A>) -> BoxFuture<'static, ()> {
        let shared = Arc::clone(self);
        match effect.kind {
            Kind::None => Box::pin(std::future::ready(())),
            Kind::Send(action) => {
                sender.send(action);
                Box::pin(std::future::ready(()))
            }
            Kind::Cancel(id) => {
                shared.cancel(&id);
                Box::pin(std::future::ready(()))
            }
            Kind::Run(operation) => operation(sender),
            Kind::Retry(timed) => {
                let work = timed(Arc::clone(&shared.clock));
                Box::pin(async move { sender.send(work.await) })
            }
            Kind::Delay { after, action } => {
                let sleep = shared.clock.sleep(after);
                Box::pin(async move {
                    sleep.await;
                    sender.send(action);
                })
            }
            Kind::Merge(effects) => {
                let works: Vec<_> =
                    effects.into_iter().map(|e| shared.drive(e, sender.clone())).collect();
                Box::pin(async move {
                    futures::future::join_all(works).await;
                })
            }
            Kind::Concat(effects) => Box::pin(async move {
                for effect in effects {
                    shared.drive(effect, sender.clone()).await;
                }
            }),
            Kind::Cancellable { id, cancel_in_flight, effect } => {
                if cancel_in_flight {
                    shared.cancel(&id);
                }
                let (token, registration) = shared.register(&id);
                let work = shared.drive(*effect, sender);
                Box::pin(async move {
                    let _ = Abortable::new(work, registration).await;
                    shared.unregister(&id, token);
                })
            }
        }
    }
}
