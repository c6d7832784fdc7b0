//! Effects: side effects as values.
//!
//! A reducer never performs I/O; it returns an [`Effect`] describing the work to do, and the
//! [`Store`](crate::Store) (or the [`TestStore`](crate::testing::TestStore)) executes it. Effects
//! compose: [`merge`](Effect::merge) runs them concurrently, [`concat`](Effect::concat) one after
//! another, [`map`](Effect::map) lifts a child's actions into a parent's, and
//! [`cancellable`](Effect::cancellable) / [`cancel`](Effect::cancel) tie work to an id scoped to
//! one store.
//!
//! ```
//! use std::time::Duration;
//! use composable::Effect;
//!
//! #[derive(Debug, PartialEq)]
//! enum Action { Tick, Loaded(u32) }
//!
//! let effect: Effect<Action> = Effect::merge([
//!     Effect::future(async { Action::Loaded(42) }),
//!     Effect::delay(Duration::from_secs(1), Action::Tick).cancellable("timer"),
//! ]);
//! assert!(!effect.is_none());
//! assert!(Effect::<Action>::none().is_none());
//! ```

use std::any::Any;
use std::fmt;
use std::future::Future;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use futures::future::BoxFuture;

use crate::backoff::Backoff;
use crate::clock::Clock;

/// Work for the store to do after a reduce, yielding zero or more actions back into the store.
#[must_use = "an effect does nothing unless the reducer returns it"]
pub struct Effect<A> {
    pub(crate) kind: Kind<A>,
}

pub(crate) type Operation<A> = Box<dyn FnOnce(Sender<A>) -> BoxFuture<'static, ()> + Send>;

/// Work that needs the store's clock (to wait between attempts) and yields one action.
pub(crate) type Timed<A> = Box<dyn FnOnce(Arc<dyn Clock>) -> BoxFuture<'static, A> + Send>;

pub(crate) enum Kind<A> {
    None,
    Send(A),
    Run(Operation<A>),
    Retry(Timed<A>),
    Delay { after: Duration, action: A },
    Merge(Vec<Effect<A>>),
    Concat(Vec<Effect<A>>),
    Cancellable { id: CancelId, cancel_in_flight: bool, effect: Box<Effect<A>> },
    Cancel(CancelId),
}

impl<A> Effect<A> {
    /// No work. Allocates nothing.
    pub const fn none() -> Self {
        Self { kind: Kind::None }
    }

    /// Feeds `action` back into the store right after the current action.
    pub fn send(action: A) -> Self {
        Self { kind: Kind::Send(action) }
    }

    /// Runs async work that may feed any number of actions back through its [`Sender`].
    ///
    /// ```
    /// # use composable::Effect;
    /// # #[derive(Debug)] enum Action { Progress(u8) }
    /// let effect = Effect::run(|send| async move {
    ///     for percent in [0, 50, 100] {
    ///         send.send(Action::Progress(percent));
    ///     }
    /// });
    /// # let _: Effect<Action> = effect;
    /// ```
    pub fn run<F, Fut>(operation: F) -> Self
    where
        F: FnOnce(Sender<A>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Self { kind: Kind::Run(Box::new(move |sender| Box::pin(operation(sender)))) }
    }

    /// Runs a future and feeds its output back as one action.
    pub fn future<Fut>(future: Fut) -> Self
    where
        Fut: Future<Output = A> + Send + 'static,
        A: Send + 'static,
    {
        Self::run(move |sender| async move { sender.send(future.await) })
    }

    /// Runs `attempt` until it succeeds or `backoff` allows no further attempt, waiting between
    /// attempts on the store's [`Clock`]: feeds back the action of its success,
    /// or `exhausted` of its last error and the attempts made. What to do with a failure is the
    /// reducer's to decide — record it, compensate, park it for an operator — like any action.
    ///
    /// [`Backoff::STANDARD`] is the usual policy: waits of 1, 2, 4 and 8 seconds, five attempts.
    ///
    /// ```
    /// use composable::Effect;
    /// use composable::backoff::Backoff;
    /// use composable::effect::Exhausted;
    ///
    /// #[derive(Debug)]
    /// enum Action { Charged(u64), ChargeFailed { reason: String, attempts: u32 } }
    ///
    /// async fn charge(card: &str) -> Result<u64, std::io::Error> {
    ///     # let _ = card;
    ///     Ok(500)
    /// }
    ///
    /// let effect = Effect::retry(
    ///     Backoff::STANDARD,
    ///     || async { charge("tok_visa").await.map(Action::Charged) },
    ///     |failed: Exhausted<std::io::Error>| Action::ChargeFailed {
    ///         reason: failed.error.to_string(),
    ///         attempts: failed.attempts,
    ///     },
    /// );
    /// # let _: Effect<Action> = effect;
    /// ```
    pub fn retry<E, F, Fut>(
        backoff: Backoff,
        mut attempt: F,
        exhausted: impl FnOnce(Exhausted<E>) -> A + Send + 'static,
    ) -> Self
    where
        F: FnMut() -> Fut + Send + 'static,
        Fut: Future<Output = Result<A, E>> + Send + 'static,
        E: Send + 'static,
        A: Send + 'static,
    {
        let timed = move |clock: Arc<dyn Clock>| -> BoxFuture<'static, A> {
            Box::pin(async move {
                let mut attempts = 0;
                let tried = backoff
                    .retry(
                        &*clock,
                        |_| true,
                        || {
                            attempts += 1;
                            attempt()
                        },
                    )
                    .await;
                tried.unwrap_or_else(|error| exhausted(Exhausted { error, attempts }))
            })
        };
        Self { kind: Kind::Retry(Box::new(timed)) }
    }

    /// Feeds `action` back after `after` has passed on the store's [`Clock`].
    pub fn delay(after: Duration, action: A) -> Self {
        Self { kind: Kind::Delay { after, action } }
    }

    /// Runs all `effects` at the same time.
    pub fn merge(effects: impl IntoIterator<Item = Self>) -> Self {
        let mut effects: Vec<Self> = effects.into_iter().filter(|e| !e.is_none()).collect();
        match effects.len() {
            0 => Self::none(),
            1 => effects.pop().unwrap_or_else(Self::none),
            _ => Self { kind: Kind::Merge(effects) },
        }
    }

    /// Runs `effects` one after another: each starts when the previous one has finished.
    pub fn concat(effects: impl IntoIterator<Item = Self>) -> Self {
        let mut effects: Vec<Self> = effects.into_iter().filter(|e| !e.is_none()).collect();
        match effects.len() {
            0 => Self::none(),
            1 => effects.pop().unwrap_or_else(Self::none),
            _ => Self { kind: Kind::Concat(effects) },
        }
    }

    /// Runs `self` and `other` at the same time.
    pub fn merge_with(self, other: Self) -> Self {
        Self::merge([self, other])
    }

    /// Runs `other` after `self` has finished.
    pub fn then(self, other: Self) -> Self {
        Self::concat([self, other])
    }

    /// Makes this effect cancellable with [`Effect::cancel`]`(id)`. Ids are scoped to the store
    /// that runs the effect: another store's effects with an equal id are untouched.
    pub fn cancellable(self, id: impl Hash + Eq + fmt::Debug + Send + Sync + 'static) -> Self {
        self.cancellable_with(CancelId::new(id), false)
    }

    /// Like [`cancellable`](Effect::cancellable), and first cancels any running effect with the
    /// same id (debouncing, "latest request wins").
    pub fn cancel_in_flight(self, id: impl Hash + Eq + fmt::Debug + Send + Sync + 'static) -> Self {
        self.cancellable_with(CancelId::new(id), true)
    }

    fn cancellable_with(self, id: CancelId, cancel_in_flight: bool) -> Self {
        if self.is_none() && !cancel_in_flight {
            return self;
        }
        Self { kind: Kind::Cancellable { id, cancel_in_flight, effect: Box::new(self) } }
    }

    /// Cancels every running or not-yet-started effect made cancellable with `id` in this store.
    pub fn cancel(id: impl Hash + Eq + fmt::Debug + Send + Sync + 'static) -> Self {
        Self { kind: Kind::Cancel(CancelId::new(id)) }
    }

    /// Whether this is [`Effect::none`].
    pub fn is_none(&self) -> bool {
        matches!(self.kind, Kind::None)
    }

    /// Turns the actions this effect feeds back into another action type, typically a parent
    /// reducer's.
    pub fn map<B>(self, f: impl Fn(A) -> B + Send + Sync + 'static) -> Effect<B>
    where
        A: 'static,
        B: 'static,
    {
        self.map_shared(&(Arc::new(f) as Arc<dyn Fn(A) -> B + Send + Sync>))
    }

    fn map_shared<B>(self, f: &Arc<dyn Fn(A) -> B + Send + Sync>) -> Effect<B>
    where
        A: 'static,
        B: 'static,
    {
        let kind = match self.kind {
            Kind::None => Kind::None,
            Kind::Send(action) => Kind::Send(f(action)),
            Kind::Run(operation) => {
                let f = Arc::clone(f);
                Kind::Run(Box::new(move |sender: Sender<B>| operation(sender.contramap(f))))
            }
            Kind::Retry(timed) => {
                let f = Arc::clone(f);
                Kind::Retry(Box::new(move |clock| {
                    Box::pin(timed(clock).map(move |action| f(action)))
                }))
            }
            Kind::Delay { after, action } => Kind::Delay { after, action: f(action) },
            Kind::Merge(effects) => {
                Kind::Merge(effects.into_iter().map(|e| e.map_shared(f)).collect())
            }
            Kind::Concat(effects) => {
                Kind::Concat(effects.into_iter().map(|e| e.map_shared(f)).collect())
            }
            Kind::Cancellable { id, cancel_in_flight, effect } => {
                Kind::Cancellable { id, cancel_in_flight, effect: Box::new(effect.map_shared(f)) }
            }
            Kind::Cancel(id) => Kind::Cancel(id),
        };
        Effect { kind }
    }
}

impl<A> Default for Effect<A> {
    fn default() -> Self {
        Self::none()
    }
}

impl<A: fmt::Debug> fmt::Debug for Effect<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::None => f.write_str("Effect::none()"),
            Kind::Send(action) => f.debug_tuple("Effect::send").field(action).finish(),
            Kind::Run(_) => f.write_str("Effect::run(..)"),
            Kind::Retry(_) => f.write_str("Effect::retry(..)"),
            Kind::Delay { after, action } => {
                f.debug_tuple("Effect::delay").field(after).field(action).finish()
            }
            Kind::Merge(effects) => f.debug_tuple("Effect::merge").field(effects).finish(),
            Kind::Concat(effects) => f.debug_tuple("Effect::concat").field(effects).finish(),
            Kind::Cancellable { id, cancel_in_flight, effect } => f
                .debug_struct("Effect::cancellable")
                .field("id", id)
                .field("cancel_in_flight", cancel_in_flight)
                .field("effect", effect)
                .finish(),
            Kind::Cancel(id) => f.debug_tuple("Effect::cancel").field(id).finish(),
        }
    }
}

/// The last error of an [`Effect::retry`] that ran out of attempts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Exhausted<E> {
    /// The error of the last attempt.
    pub error: E,
    /// How many attempts were made.
    pub attempts: u32,
}

/// Feeds actions from a running effect back into its store.
///
/// Sending after the store is gone does nothing: the work outlived its store.
pub struct Sender<A> {
    deliver: Arc<dyn Fn(A) + Send + Sync>,
}

impl<A> Clone for Sender<A> {
    fn clone(&self) -> Self {
        Self { deliver: Arc::clone(&self.deliver) }
    }
}

impl<A> fmt::Debug for Sender<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sender")
    }
}

impl<A> Sender<A> {
    pub(crate) fn new(deliver: impl Fn(A) + Send + Sync + 'static) -> Self {
        Self { deliver: Arc::new(deliver) }
    }

    /// Feeds `action` back into the store; it is queued behind actions already waiting.
    pub fn send(&self, action: A) {
        (self.deliver)(action);
    }

    fn contramap<C: 'static>(self, f: Arc<dyn Fn(C) -> A + Send + Sync>) -> Sender<C>
    where
        A: 'static,
    {
        Sender::new(move |action| (self.deliver)(f(action)))
    }
}

/// The id of a cancellable effect: any hashable value (`"timer"`, an enum variant, a row id).
/// Two ids are equal when they have the same type and compare equal.
#[derive(Clone)]
pub struct CancelId(Arc<dyn Key>);

impl CancelId {
    /// Wraps any hashable value.
    pub fn new(id: impl Hash + Eq + fmt::Debug + Send + Sync + 'static) -> Self {
        Self(Arc::new(id))
    }
}

trait Key: Any + Send + Sync + fmt::Debug {
    fn as_any(&self) -> &dyn Any;
    fn eq_key(&self, other: &dyn Key) -> bool;
    fn hash_key(&self, state: &mut dyn Hasher);
}

impl<T: Hash + Eq + fmt::Debug + Send + Sync + 'static> Key for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn eq_key(&self, other: &dyn Key) -> bool {
        other.as_any().downcast_ref::<T>() == Some(self)
    }
    fn hash_key(&self, mut state: &mut dyn Hasher) {
        std::any::TypeId::of::<T>().hash(&mut state);
        self.hash(&mut state);
    }
}

impl PartialEq for CancelId {
    fn eq(&self, other: &Self) -> bool {
        self.0.eq_key(other.0.as_ref())
    }
}

impl Eq for CancelId {}

impl Hash for CancelId {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.0.hash_key(state);
    }
}

impl fmt::Debug for CancelId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn none_is_none_and_merging_nothing_stays_none() {
        assert!(Effect::<u8>::none().is_none());
        assert!(Effect::<u8>::merge([Effect::none(), Effect::none()]).is_none());
        assert!(Effect::<u8>::concat([]).is_none());
        assert!(Effect::<u8>::none().cancellable("x").is_none());
        assert_eq!(std::mem::size_of::<Effect<()>>(), std::mem::size_of::<Kind<()>>());
    }

    #[test]
    fn a_single_effect_is_not_wrapped() {
        let merged = Effect::merge([Effect::none(), Effect::send(1u8)]);
        assert!(matches!(merged.kind, Kind::Send(1)));
    }

    #[test]
    fn map_rewrites_every_action() {
        let effect = Effect::merge([Effect::send(1u8), Effect::delay(Duration::from_secs(1), 2)])
            .map(|n| u32::from(n) * 10);
        let Kind::Merge(effects) = effect.kind else { panic!("expected a merge") };
        assert!(matches!(effects[0].kind, Kind::Send(10)));
        assert!(matches!(effects[1].kind, Kind::Delay { action: 20, .. }));
    }

    #[test]
    fn cancel_ids_compare_by_type_and_value() {
        assert_eq!(CancelId::new("a"), CancelId::new("a"));
        assert_ne!(CancelId::new("a"), CancelId::new("b"));
        assert_ne!(CancelId::new(1u32), CancelId::new(1u64));
        let mut set = std::collections::HashSet::new();
        set.insert(CancelId::new(("row", 7)));
        assert!(set.contains(&CancelId::new(("row", 7))));
    }
}
