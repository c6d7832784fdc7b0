//! Commands a saga sends to other aggregates, and what carries them there.
//!
//! A [`Dispatch`] names its target (the aggregate's stream category and the instance id) and
//! holds the command, type-erased so that one saga can address many aggregate types. A
//! [`Dispatcher`] delivers it as part of a flow ([`CommandContext`], with the command id
//! the saga derived): [`LocalDispatcher`] runs it in process on the target aggregate's
//! [`AggregateRunner`]; [`BusDispatcher`](crate::command_bus::BusDispatcher) sends it through the
//! bus to another process.

use std::any::Any;
use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::aggregate::Aggregate;
use crate::codec::Codec;
use crate::command::CommandContext;
use crate::event_store::EventStore;
use crate::runner::{AggregateRunner, CommandError};

use crate::BoxError;

/// A command for one aggregate instance, as a saga step returns it.
///
/// ```
/// use composable::saga::Dispatch;
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default)] pub struct Payment;
/// # #[derive(Debug, Clone, PartialEq)] pub struct Refund { pub cents: u64 }
/// # #[event(name = "payment.refunded", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Refunded;
/// # #[aggregate(stream = "payment")]
/// # impl Payment {
/// #     #[command] fn refund(&self, _c: Refund) -> Refunded { Refunded }
/// #     #[apply] fn refunded(&mut self, _e: &Refunded) {}
/// # }
/// let refund = Dispatch::to::<Payment>("order-7", Refund { cents: 450 });
/// assert_eq!((refund.aggregate(), refund.id()), ("payment", "order-7"));
/// assert_eq!(refund.command::<Payment>(), Some(&PaymentCommand::Refund(Refund { cents: 450 })));
/// assert_eq!(refund, Dispatch::to::<Payment>("order-7", Refund { cents: 450 }));
/// ```
pub struct Dispatch {
    aggregate: &'static str,
    id: String,
    command: Box<dyn ErasedCommand>,
}

impl Dispatch {
    /// `command` for instance `id` of aggregate `A`.
    pub fn to<A>(id: impl fmt::Display, command: impl Into<A::Command>) -> Self
    where
        A: Aggregate,
        A::Command: Clone + PartialEq + Sync,
    {
        Self { aggregate: A::STREAM, id: id.to_string(), command: Box::new(command.into()) }
    }

    /// The target aggregate's stream category ([`Aggregate::STREAM`]).
    pub fn aggregate(&self) -> &'static str {
        self.aggregate
    }

    /// The target instance's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The command, when the target is aggregate `A`.
    pub fn command<A: Aggregate>(&self) -> Option<&A::Command> {
        if self.aggregate != A::STREAM {
            return None;
        }
        self.command.as_any().downcast_ref()
    }

    /// The command, taken out, when the target is aggregate `A`; `Err(self)` otherwise.
    ///
    /// # Errors
    /// The dispatch itself when it targets another aggregate.
    pub fn into_command<A: Aggregate>(self) -> Result<A::Command, Self> {
        if self.aggregate != A::STREAM || !self.command.as_any().is::<A::Command>() {
            return Err(self);
        }
        match self.command.into_any().downcast::<A::Command>() {
            Ok(command) => Ok(*command),
            // Checked above; unreachable, but a typed answer costs nothing.
            Err(_) => Err(Self {
                aggregate: self.aggregate,
                id: self.id,
                command: Box::new(MissingCommand),
            }),
        }
    }
}

impl fmt::Debug for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{} <- ", self.aggregate, self.id)?;
        self.command.fmt(f)
    }
}

impl fmt::Display for Dispatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

impl Clone for Dispatch {
    fn clone(&self) -> Self {
        Self { aggregate: self.aggregate, id: self.id.clone(), command: self.command.clone_box() }
    }
}

impl PartialEq for Dispatch {
    fn eq(&self, other: &Self) -> bool {
        self.aggregate == other.aggregate
            && self.id == other.id
            && self.command.eq_dyn(other.command.as_any())
    }
}

/// A command of some aggregate, with the traits a [`Dispatch`] needs.
trait ErasedCommand: fmt::Debug + Send + Sync {
    fn as_any(&self) -> &dyn Any;
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send>;
    fn clone_box(&self) -> Box<dyn ErasedCommand>;
    fn eq_dyn(&self, other: &dyn Any) -> bool;
}

impl<T: fmt::Debug + Clone + PartialEq + Send + Sync + 'static> ErasedCommand for T {
    fn as_any(&self) -> &dyn Any {
        self
    }
    fn into_any(self: Box<Self>) -> Box<dyn Any + Send> {
        self
    }
    fn clone_box(&self) -> Box<dyn ErasedCommand> {
        Box::new(self.clone())
    }
    fn eq_dyn(&self, other: &dyn Any) -> bool {
        other.downcast_ref::<T>().is_some_and(|other| self == other)
    }
}

#[derive(Debug, Clone, PartialEq)]
struct MissingCommand;

/// What a step handler's commands can be: one [`Dispatch`], several, maybe one, or none.
pub trait IntoDispatches {
    /// The commands, in dispatch order.
    fn into_dispatches(self) -> Vec<Dispatch>;
}

impl IntoDispatches for Dispatch {
    fn into_dispatches(self) -> Vec<Dispatch> {
        vec![self]
    }
}

impl IntoDispatches for Vec<Dispatch> {
    fn into_dispatches(self) -> Vec<Dispatch> {
        self
    }
}

impl IntoDispatches for Option<Dispatch> {
    fn into_dispatches(self) -> Vec<Dispatch> {
        self.into_iter().collect()
    }
}

impl IntoDispatches for () {
    fn into_dispatches(self) -> Vec<Dispatch> {
        Vec::new()
    }
}

/// A dispatched command did not take effect.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DispatchError {
    /// The target aggregate refused the command: a business failure, which makes the saga
    /// compensate.
    #[error("`{aggregate}-{id}` rejected the command: {reason}")]
    Rejected {
        /// The target's stream category.
        aggregate: &'static str,
        /// The target instance.
        id: String,
        /// The aggregate's error, as a message.
        reason: String,
        /// The aggregate's error.
        #[source]
        source: BoxError,
    },
    /// No runner is registered for the target aggregate.
    #[error(
        "no route for aggregate `{aggregate}`: register it with `LocalDispatcher::route` (its runner) \
         or `BusDispatcher::route`; with the application host, register its runner with \
         `.aggregate(&runner)` (and name it in `#[saga(dispatches(..))]` when the saga builds \
         its commands outside the impl block, so that the host checks it when it is built)"
    )]
    NoRoute {
        /// The target's stream category.
        aggregate: &'static str,
    },
    /// The command could not be delivered or executed (a store failure, a conflict the retry
    /// policy did not resolve): retrying the saga's input may succeed.
    #[error("command for `{aggregate}-{id}` failed: {source}")]
    Failed {
        /// The target's stream category.
        aggregate: &'static str,
        /// The target instance.
        id: String,
        /// What went wrong.
        #[source]
        source: BoxError,
    },
}

/// Delivers a saga's commands to their aggregates.
///
/// [`LocalDispatcher`] executes them in process;
/// [`BusDispatcher`](crate::command_bus::BusDispatcher) publishes them and reports the replies.
/// The context's command id must reach the aggregate, so that a repeated command is answered as
/// a duplicate.
pub trait Dispatcher: Send + Sync + 'static {
    /// Executes `dispatch` as part of the flow `context`.
    fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> impl Future<Output = Result<(), DispatchError>> + Send;
}

impl<D: Dispatcher> Dispatcher for Arc<D> {
    fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> impl Future<Output = Result<(), DispatchError>> + Send {
        (**self).dispatch(dispatch, context)
    }
}

/// Runs commands in process on the [`AggregateRunner`]s registered with it, by aggregate type.
///
/// ```
/// # use composable::{aggregate, apply, command, event};
/// # use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Default)] pub struct Payment { charged: bool }
/// # #[derive(Debug, Clone, PartialEq)] pub struct Charge;
/// # #[event(name = "payment.charged", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charged;
/// # #[derive(Debug, thiserror::Error)] #[error("already charged")] pub struct Twice;
/// # #[aggregate(stream = "payment")]
/// # impl Payment {
/// #     #[command] fn charge(&self, _c: Charge) -> Result<Charged, Twice> {
/// #         if self.charged { Err(Twice) } else { Ok(Charged) }
/// #     }
/// #     #[apply] fn charged(&mut self, _e: &Charged) { self.charged = true }
/// # }
/// use std::sync::Arc;
/// use composable::{AggregateRunner, CommandContext, InMemoryEventStore};
/// use composable::dispatch::{Dispatch, DispatchError, Dispatcher, LocalDispatcher};
///
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let payments = Arc::new(AggregateRunner::<Payment, _>::new(InMemoryEventStore::new(), ()));
/// let dispatcher = LocalDispatcher::new().route(Arc::clone(&payments));
/// let flow = CommandContext::new_flow();
/// dispatcher.dispatch(Dispatch::to::<Payment>("o1", Charge), flow).await?;
/// let again = dispatcher.dispatch(Dispatch::to::<Payment>("o1", Charge), flow).await;
/// assert!(matches!(again, Err(DispatchError::Rejected { .. })));
/// # Ok::<(), DispatchError>(())
/// # }).unwrap();
/// ```
#[derive(Default, Clone)]
pub struct LocalDispatcher {
    routes: HashMap<&'static str, Arc<dyn Route>>,
}

impl fmt::Debug for LocalDispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut routes: Vec<&str> = self.routes.keys().copied().collect();
        routes.sort_unstable();
        f.debug_struct("LocalDispatcher").field("routes", &routes).finish()
    }
}

impl LocalDispatcher {
    /// A dispatcher with no routes.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sends commands for aggregate `A` to `runner` (replacing an earlier route for `A`).
    #[must_use]
    pub fn route<A, S, C>(mut self, runner: Arc<AggregateRunner<A, S, C>>) -> Self
    where
        A: Aggregate,
        A::Command: Clone,
        S: EventStore,
        C: Codec,
    {
        self.routes.insert(A::STREAM, runner);
        self
    }
}

impl Dispatcher for LocalDispatcher {
    async fn dispatch(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> Result<(), DispatchError> {
        let Some(route) = self.routes.get(dispatch.aggregate()) else {
            return Err(DispatchError::NoRoute { aggregate: dispatch.aggregate() });
        };
        route.execute(dispatch, context).await
    }
}

/// One registered runner, with its aggregate type erased.
trait Route: Send + Sync {
    fn execute(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> BoxFuture<'_, Result<(), DispatchError>>;
}

impl<A, S, C> Route for AggregateRunner<A, S, C>
where
    A: Aggregate,
    A::Command: Clone,
    S: EventStore,
    C: Codec,
{
    fn execute(
        &self,
        dispatch: Dispatch,
        context: CommandContext,
    ) -> BoxFuture<'_, Result<(), DispatchError>> {
        Box::pin(async move {
            let (aggregate, id) = (dispatch.aggregate(), dispatch.id().to_owned());
            let command =
                dispatch.into_command::<A>().map_err(|dispatch| DispatchError::Failed {
                    aggregate,
                    id: id.clone(),
                    source: format!("the command {dispatch:?} is not a command of `{}`", A::STREAM)
                        .into(),
                })?;
            match self.execute_in(&id, command, context).await {
                Ok(_) => Ok(()),
                Err(CommandError::Rejected(error)) => Err(DispatchError::Rejected {
                    aggregate,
                    id,
                    reason: error.to_string(),
                    source: Box::new(error),
                }),
                Err(error) => Err(DispatchError::Failed { aggregate, id, source: Box::new(error) }),
            }
        })
    }
}
