//! Reducers: the only place state changes.
//!
//! `reduce` is synchronous and pure: it mutates the state it is handed, reads the environment,
//! and returns an [`Effect`] describing any further work. Reducers compose:
//! [`combine`](Reducer::combine) runs two over one state, [`scope`](Reducer::scope) embeds a
//! child into a parent's state and actions, [`optional`](Reducer::optional) runs a child on an
//! `Option` of its state, and [`for_each`](Reducer::for_each) runs one child per key of a map.
//!
//! ```
//! use composable::{Effect, Reducer};
//! use composable::reducer::reducer_fn;
//!
//! #[derive(Debug, Clone)]
//! enum Action { Increment, Decrement }
//!
//! let counter = reducer_fn(|count: &mut i64, action: Action, _env: &()| {
//!     match action {
//!         Action::Increment => *count += 1,
//!         Action::Decrement => *count -= 1,
//!     }
//!     Effect::none()
//! });
//! let mut count = 0;
//! let _ = counter.reduce(&mut count, Action::Increment, &());
//! assert_eq!(count, 1);
//! ```

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::marker::PhantomData;
use std::sync::Arc;

use crate::effect::Effect;

/// Turns an action into a state change and an effect.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a reducer",
    note = "implement `composable::Reducer` for it, or build one from a closure with `composable::reducer::reducer_fn`"
)]
pub trait Reducer: Send + Sync + 'static {
    /// The state this reducer changes.
    type State: Send + 'static;
    /// What can happen.
    type Action: Send + 'static;
    /// What the reducer and its effects may read or use: clocks, clients, configuration.
    type Environment: Send + Sync + 'static;

    /// Applies `action` to `state`, returning the work to do next.
    fn reduce(
        &self,
        state: &mut Self::State,
        action: Self::Action,
        env: &Self::Environment,
    ) -> Effect<Self::Action>;

    /// Runs `self`, then `other`, on the same state and action; their effects are merged.
    fn combine<R>(self, other: R) -> Combine<Self, R>
    where
        Self: Sized,
        Self::Action: Clone,
        R: Reducer<State = Self::State, Action = Self::Action, Environment = Self::Environment>,
    {
        Combine { first: self, second: other }
    }

    /// Embeds this reducer into a parent: `state` focuses the parent's state on the child's,
    /// `extract` picks the child's actions out of the parent's (other actions are ignored),
    /// `embed` wraps the child's effect actions back into the parent's, and `env` derives the
    /// child's environment.
    ///
    /// ```
    /// use composable::{Effect, Reducer};
    /// use composable::reducer::reducer_fn;
    ///
    /// #[derive(Default)]
    /// struct App { clicks: u32 }
    /// #[derive(Debug, Clone)]
    /// enum AppAction { Button(ButtonAction), Quit }
    /// #[derive(Debug, Clone)]
    /// enum ButtonAction { Click }
    ///
    /// let button = reducer_fn(|clicks: &mut u32, _: ButtonAction, _: &()| {
    ///     *clicks += 1;
    ///     Effect::none()
    /// });
    /// let app = button.scope(
    ///     |app: &mut App| &mut app.clicks,
    ///     |action: AppAction| match action { AppAction::Button(a) => Some(a), _ => None },
    ///     AppAction::Button,
    ///     |env: &()| env,
    /// );
    /// let mut state = App::default();
    /// let _ = app.reduce(&mut state, AppAction::Button(ButtonAction::Click), &());
    /// let _ = app.reduce(&mut state, AppAction::Quit, &());
    /// assert_eq!(state.clicks, 1);
    /// ```
    #[expect(
        clippy::type_complexity,
        reason = "the parent types are part of the adapter's type so its `Reducer` impl is unambiguous"
    )]
    fn scope<PS, PA, PE, L, X, M, V>(
        self,
        state: L,
        extract: X,
        embed: M,
        env: V,
    ) -> Scope<Self, Lenses<L, X, M, V>, (PS, PA, PE)>
    where
        Self: Sized,
        PS: Send + 'static,
        PA: Send + 'static,
        PE: Send + Sync + 'static,
        L: Fn(&mut PS) -> &mut Self::State + Send + Sync + 'static,
        X: Fn(PA) -> Option<Self::Action> + Send + Sync + 'static,
        M: Fn(Self::Action) -> PA + Send + Sync + 'static,
        V: Fn(&PE) -> &Self::Environment + Send + Sync + 'static,
    {
        Scope {
            child: self,
            lenses: Lenses { state, extract, embed: Arc::new(embed), env },
            parent: PhantomData,
        }
    }

    /// Like [`scope`](Reducer::scope), for a child state that may be absent. Child actions that
    /// arrive while the state is `None` are dropped with a warning: they usually mean an effect
    /// outlived the feature that started it.
    #[expect(
        clippy::type_complexity,
        reason = "the parent types are part of the adapter's type so its `Reducer` impl is unambiguous"
    )]
    fn optional<PS, PA, PE, L, X, M, V>(
        self,
        state: L,
        extract: X,
        embed: M,
        env: V,
    ) -> Optional<Self, Lenses<L, X, M, V>, (PS, PA, PE)>
    where
        Self: Sized,
        PS: Send + 'static,
        PA: Send + 'static,
        PE: Send + Sync + 'static,
        L: Fn(&mut PS) -> &mut Option<Self::State> + Send + Sync + 'static,
        X: Fn(PA) -> Option<Self::Action> + Send + Sync + 'static,
        M: Fn(Self::Action) -> PA + Send + Sync + 'static,
        V: Fn(&PE) -> &Self::Environment + Send + Sync + 'static,
    {
        Optional {
            child: self,
            lenses: Lenses { state, extract, embed: Arc::new(embed), env },
            parent: PhantomData,
        }
    }

    /// Runs this reducer on one element of a keyed collection: `extract` yields the key and the
    /// child action, and `embed` wraps a child's effect actions with the same key. Actions for a
    /// missing key are dropped with a warning.
    ///
    /// ```
    /// use std::collections::BTreeMap;
    /// use composable::{Effect, Reducer};
    /// use composable::reducer::reducer_fn;
    ///
    /// #[derive(Debug, Clone)]
    /// enum RowAction { Toggle }
    /// #[derive(Debug, Clone)]
    /// enum ListAction { Row(u32, RowAction) }
    ///
    /// let row = reducer_fn(|done: &mut bool, _: RowAction, _: &()| {
    ///     *done = !*done;
    ///     Effect::none()
    /// });
    /// let list = row.for_each(
    ///     |rows: &mut BTreeMap<u32, bool>| rows,
    ///     |ListAction::Row(id, action)| Some((id, action)),
    ///     |id, action| ListAction::Row(id, action),
    ///     |env: &()| env,
    /// );
    /// let mut rows = BTreeMap::from([(1, false), (2, false)]);
    /// let _ = list.reduce(&mut rows, ListAction::Row(2, RowAction::Toggle), &());
    /// assert_eq!(rows, BTreeMap::from([(1, false), (2, true)]));
    /// ```
    #[expect(
        clippy::type_complexity,
        reason = "the parent types are part of the adapter's type so its `Reducer` impl is unambiguous"
    )]
    fn for_each<PS, PA, PE, K, C, L, X, M, V>(
        self,
        state: L,
        extract: X,
        embed: M,
        env: V,
    ) -> ForEach<Self, Lenses<L, X, M, V>, (PS, PA, PE, K, C)>
    where
        Self: Sized,
        PS: Send + 'static,
        PA: Send + 'static,
        PE: Send + Sync + 'static,
        K: Clone + fmt::Debug + Send + Sync + 'static,
        C: KeyedStates<K, Self::State>,
        L: Fn(&mut PS) -> &mut C + Send + Sync + 'static,
        X: Fn(PA) -> Option<(K, Self::Action)> + Send + Sync + 'static,
        M: Fn(K, Self::Action) -> PA + Send + Sync + 'static,
        V: Fn(&PE) -> &Self::Environment + Send + Sync + 'static,
    {
        ForEach {
            child: self,
            lenses: Lenses { state, extract, embed: Arc::new(embed), env },
            parent: PhantomData,
        }
    }
}

/// A reducer built from a closure; see [`reducer_fn`].
pub struct FnReducer<F, S, A, E> {
    reduce: F,
    types: PhantomData<fn(S, A, E)>,
}

impl<F, S, A, E> fmt::Debug for FnReducer<F, S, A, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FnReducer").finish_non_exhaustive()
    }
}

/// Builds a [`Reducer`] from a closure `|state, action, env| -> Effect`.
pub fn reducer_fn<F, S, A, E>(reduce: F) -> FnReducer<F, S, A, E>
where
    F: Fn(&mut S, A, &E) -> Effect<A> + Send + Sync + 'static,
    S: Send + 'static,
    A: Send + 'static,
    E: Send + Sync + 'static,
{
    FnReducer { reduce, types: PhantomData }
}

impl<F, S, A, E> Reducer for FnReducer<F, S, A, E>
where
    F: Fn(&mut S, A, &E) -> Effect<A> + Send + Sync + 'static,
    S: Send + 'static,
    A: Send + 'static,
    E: Send + Sync + 'static,
{
    type State = S;
    type Action = A;
    type Environment = E;

    fn reduce(&self, state: &mut S, action: A, env: &E) -> Effect<A> {
        (self.reduce)(state, action, env)
    }
}

/// Two reducers over one state; see [`Reducer::combine`].
#[derive(Debug, Clone)]
pub struct Combine<R1, R2> {
    first: R1,
    second: R2,
}

impl<R1, R2> Reducer for Combine<R1, R2>
where
    R1: Reducer,
    R1::Action: Clone,
    R2: Reducer<State = R1::State, Action = R1::Action, Environment = R1::Environment>,
{
    type State = R1::State;
    type Action = R1::Action;
    type Environment = R1::Environment;

    fn reduce(
        &self,
        state: &mut Self::State,
        action: Self::Action,
        env: &Self::Environment,
    ) -> Effect<Self::Action> {
        let first = self.first.reduce(state, action.clone(), env);
        let second = self.second.reduce(state, action, env);
        first.merge_with(second)
    }
}

/// The functions that connect a child reducer to its parent.
pub struct Lenses<L, X, M, V> {
    state: L,
    extract: X,
    embed: Arc<M>,
    env: V,
}

impl<L, X, M, V> fmt::Debug for Lenses<L, X, M, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lenses").finish_non_exhaustive()
    }
}

/// A child reducer embedded in a parent; see [`Reducer::scope`].
pub struct Scope<R, L, P> {
    child: R,
    lenses: L,
    parent: PhantomData<fn() -> P>,
}

impl<R: fmt::Debug, L, P> fmt::Debug for Scope<R, L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("child", &self.child).finish_non_exhaustive()
    }
}

impl<R, PS, PA, PE, L, X, M, V> Reducer for Scope<R, Lenses<L, X, M, V>, (PS, PA, PE)>
where
    R: Reducer,
    PS: Send + 'static,
    PA: Send + 'static,
    PE: Send + Sync + 'static,
    L: Fn(&mut PS) -> &mut R::State + Send + Sync + 'static,
    X: Fn(PA) -> Option<R::Action> + Send + Sync + 'static,
    M: Fn(R::Action) -> PA + Send + Sync + 'static,
    V: Fn(&PE) -> &R::Environment + Send + Sync + 'static,
{
    type State = PS;
    type Action = PA;
    type Environment = PE;

    fn reduce(&self, state: &mut PS, action: PA, env: &PE) -> Effect<PA> {
        let Some(action) = (self.lenses.extract)(action) else {
            return Effect::none();
        };
        let effect = self.child.reduce((self.lenses.state)(state), action, (self.lenses.env)(env));
        let embed = Arc::clone(&self.lenses.embed);
        effect.map(move |action| embed(action))
    }
}

/// A child reducer on an optional state; see [`Reducer::optional`].
pub struct Optional<R, L, P> {
    child: R,
    lenses: L,
    parent: PhantomData<fn() -> P>,
}

impl<R: fmt::Debug, L, P> fmt::Debug for Optional<R, L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Optional").field("child", &self.child).finish_non_exhaustive()
    }
}

impl<R, PS, PA, PE, L, X, M, V> Reducer for Optional<R, Lenses<L, X, M, V>, (PS, PA, PE)>
where
    R: Reducer,
    R::Action: fmt::Debug,
    PS: Send + 'static,
    PA: Send + 'static,
    PE: Send + Sync + 'static,
    L: Fn(&mut PS) -> &mut Option<R::State> + Send + Sync + 'static,
    X: Fn(PA) -> Option<R::Action> + Send + Sync + 'static,
    M: Fn(R::Action) -> PA + Send + Sync + 'static,
    V: Fn(&PE) -> &R::Environment + Send + Sync + 'static,
{
    type State = PS;
    type Action = PA;
    type Environment = PE;

    fn reduce(&self, state: &mut PS, action: PA, env: &PE) -> Effect<PA> {
        let Some(action) = (self.lenses.extract)(action) else {
            return Effect::none();
        };
        let Some(child) = (self.lenses.state)(state).as_mut() else {
            tracing::warn!(?action, "child action received while its optional state is absent");
            return Effect::none();
        };
        let effect = self.child.reduce(child, action, (self.lenses.env)(env));
        let embed = Arc::clone(&self.lenses.embed);
        effect.map(move |action| embed(action))
    }
}

/// A collection of child states addressed by key, for [`Reducer::for_each`].
pub trait KeyedStates<K, S>: Send + 'static {
    /// The state at `key`, if present.
    fn state_mut(&mut self, key: &K) -> Option<&mut S>;
}

impl<K: Eq + Hash + Send + 'static, S: Send + 'static> KeyedStates<K, S> for HashMap<K, S> {
    fn state_mut(&mut self, key: &K) -> Option<&mut S> {
        self.get_mut(key)
    }
}

impl<K: Ord + Send + 'static, S: Send + 'static> KeyedStates<K, S> for BTreeMap<K, S> {
    fn state_mut(&mut self, key: &K) -> Option<&mut S> {
        self.get_mut(key)
    }
}

/// A child reducer run per key of a collection; see [`Reducer::for_each`].
pub struct ForEach<R, L, P> {
    child: R,
    lenses: L,
    parent: PhantomData<fn() -> P>,
}

impl<R: fmt::Debug, L, P> fmt::Debug for ForEach<R, L, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ForEach").field("child", &self.child).finish_non_exhaustive()
    }
}

impl<R, PS, PA, PE, K, C, L, X, M, V> Reducer for ForEach<R, Lenses<L, X, M, V>, (PS, PA, PE, K, C)>
where
    R: Reducer,
    R::Action: fmt::Debug,
    PS: Send + 'static,
    PA: Send + 'static,
    PE: Send + Sync + 'static,
    K: Clone + fmt::Debug + Send + Sync + 'static,
    C: KeyedStates<K, R::State>,
    L: Fn(&mut PS) -> &mut C + Send + Sync + 'static,
    X: Fn(PA) -> Option<(K, R::Action)> + Send + Sync + 'static,
    M: Fn(K, R::Action) -> PA + Send + Sync + 'static,
    V: Fn(&PE) -> &R::Environment + Send + Sync + 'static,
{
    type State = PS;
    type Action = PA;
    type Environment = PE;

    fn reduce(&self, state: &mut PS, action: PA, env: &PE) -> Effect<PA> {
        let Some((key, action)) = (self.lenses.extract)(action) else {
            return Effect::none();
        };
        let Some(child) = (self.lenses.state)(state).state_mut(&key) else {
            tracing::warn!(?key, ?action, "child action received for a key that is not present");
            return Effect::none();
        };
        let effect = self.child.reduce(child, action, (self.lenses.env)(env));
        let embed = Arc::clone(&self.lenses.embed);
        effect.map(move |action| embed(key.clone(), action))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq)]
    enum Action {
        Add(i32),
    }

    #[test]
    fn combine_runs_both_in_order_on_one_state() {
        let add = reducer_fn(|log: &mut Vec<String>, Action::Add(n), _: &()| {
            log.push(format!("add {n}"));
            Effect::send(Action::Add(n + 1))
        });
        let audit = reducer_fn(|log: &mut Vec<String>, action: Action, _: &()| {
            log.push(format!("audit {action:?}"));
            Effect::none()
        });
        let both = add.combine(audit);
        let mut log = Vec::new();
        let effect = both.reduce(&mut log, Action::Add(1), &());
        assert_eq!(log, ["add 1", "audit Add(1)"]);
        assert!(matches!(effect.kind, crate::effect::Kind::Send(Action::Add(2))));
    }

    #[test]
    fn optional_ignores_actions_while_absent() {
        #[derive(Debug, Clone)]
        enum Parent {
            Child(Action),
        }
        let child = reducer_fn(|n: &mut i32, Action::Add(k), _: &()| {
            *n += k;
            Effect::send(Action::Add(0))
        });
        let parent = child.optional(
            |s: &mut Option<i32>| s,
            |Parent::Child(a)| Some(a),
            Parent::Child,
            |e: &()| e,
        );
        let mut state = None;
        assert!(parent.reduce(&mut state, Parent::Child(Action::Add(1)), &()).is_none());
        state = Some(1);
        let effect = parent.reduce(&mut state, Parent::Child(Action::Add(2)), &());
        assert_eq!(state, Some(3));
        assert!(matches!(effect.kind, crate::effect::Kind::Send(Parent::Child(Action::Add(0)))));
    }

    #[test]
    fn for_each_routes_by_key_and_tags_effects() {
        #[derive(Debug, Clone, PartialEq)]
        enum List {
            Row(&'static str, Action),
        }
        let row = reducer_fn(|n: &mut i32, Action::Add(k), _: &()| {
            *n += k;
            Effect::send(Action::Add(-k))
        });
        let list = row.for_each(
            |rows: &mut HashMap<&'static str, i32>| rows,
            |List::Row(key, action)| Some((key, action)),
            List::Row,
            |e: &()| e,
        );
        let mut rows = HashMap::from([("a", 0), ("b", 0)]);
        let effect = list.reduce(&mut rows, List::Row("b", Action::Add(5)), &());
        assert_eq!(rows["b"], 5);
        assert_eq!(rows["a"], 0);
        assert!(matches!(effect.kind, crate::effect::Kind::Send(List::Row("b", Action::Add(-5)))));
        assert!(list.reduce(&mut rows, List::Row("zzz", Action::Add(1)), &()).is_none());
    }
}
