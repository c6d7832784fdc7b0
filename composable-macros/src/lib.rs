//! The attribute macros of [`composable`](https://docs.rs/composable): [`macro@event`],
//! [`macro@aggregate`], and the [`macro@command`] and [`macro@apply`] handlers inside an
//! aggregate; [`macro@saga`], and the [`macro@start`], [`macro@step`] and [`macro@compensate`]
//! handlers inside a saga.
//!
//! Use them through `composable`'s re-exports (`use composable::{aggregate, event, ...}`). The
//! code they generate names the runtime as `::composable::__private::...`; when `composable` is
//! re-exported under another path, say so with `crate = path` on any attribute.
//!
//! Every entry point hands its tokens to `composable-codegen`, where each attribute is parsed,
//! checked and expanded; see `docs/adr/0003-macro-crate-layout.md` for why the code lives there.

use proc_macro::TokenStream;

/// Declares a struct or enum as a stored event with a stable name and version.
///
/// ```
/// use composable::event;
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "order.placed", version = 2)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderPlaced {
///     pub total: u64,
///     pub currency: String,
/// }
///
/// // An older shape, still found in stored events: decoded as itself, then converted.
/// #[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
/// #[derive(Serialize, Deserialize)]
/// pub struct OrderPlacedV1 {
///     pub total: u64,
/// }
///
/// impl From<OrderPlacedV1> for OrderPlaced {
///     fn from(v1: OrderPlacedV1) -> Self {
///         OrderPlaced { total: v1.total, currency: "EUR".into() }
///     }
/// }
///
/// use composable::event::VersionedEvent;
/// use composable::{Bincode, Codec};
/// let stored = Bincode.encode(&OrderPlacedV1 { total: 5 })?;
/// let newest = OrderPlaced::decode_version(&Bincode, 1, &stored)?;
/// assert_eq!(newest, OrderPlaced { total: 5, currency: "EUR".into() });
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
///
/// # Keys
/// * `name = "..."` (required): stored with every payload; never change it once events are
///   written. Every version of one event shares it.
/// * `version = N` (required): this shape's version, from 1.
/// * `upcast = Newer`: marks an older version. `Newer` must carry the same `name` and version
///   `N + 1`, and implement `From<Self>`. Chains of any length resolve to the newest version,
///   which is the only one an `#[apply]` handler takes.
/// * `crate = path`: where `composable` is, when it is re-exported under another name.
///
/// The type must derive `serde::Serialize` and `serde::Deserialize` (below `#[event]`), and can't
/// be generic.
///
/// # Generated
/// `composable::Event` (the name and version); on the newest version, `VersionedEvent`, which
/// decodes a payload of any known version (refusing newer ones); on an older version,
/// the upcaster that lets its newer version decode it, plus compile-time checks of the chain.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::event(args.into(), item.into()).into()
}

/// Implements `composable::Aggregate` from an impl block of `#[command]` and `#[apply]`
/// handlers.
///
/// ```
/// use composable::{Aggregate, aggregate, apply, command, event};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, Default, Serialize, Deserialize)]
/// pub struct Order {
///     placed: bool,
/// }
///
/// #[derive(Debug, Clone, PartialEq)]
/// pub struct PlaceOrder {
///     pub total: u64,
/// }
///
/// #[event(name = "order.placed", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderPlaced {
///     pub total: u64,
/// }
///
/// #[derive(Debug, thiserror::Error)]
/// pub enum OrderError {
///     #[error("the order is already placed")]
///     AlreadyPlaced,
/// }
///
/// pub struct ShopEnv {
///     pub max_total: u64,
/// }
///
/// #[aggregate(stream = "order", snapshot_every = 100)]
/// impl Order {
///     #[command]
///     fn place(&self, command: PlaceOrder, env: &ShopEnv) -> Result<OrderPlaced, OrderError> {
///         if self.placed {
///             return Err(OrderError::AlreadyPlaced);
///         }
///         Ok(OrderPlaced { total: command.total.min(env.max_total) })
///     }
///
///     #[apply]
///     fn placed(&mut self, _event: &OrderPlaced) {
///         self.placed = true;
///     }
/// }
///
/// let env = ShopEnv { max_total: 10 };
/// let mut order = Order::default();
/// let events = order.decide(PlaceOrder { total: 25 }.into(), &env)?;
/// assert_eq!(events, vec![OrderEvent::OrderPlaced(OrderPlaced { total: 10 })]);
/// events.iter().for_each(|event| order.apply(event));
/// assert!(order.decide(OrderCommand::PlaceOrder(PlaceOrder { total: 1 }), &env).is_err());
/// # Ok::<(), OrderError>(())
/// ```
///
/// # Handlers
/// * `#[command] fn name(&self, command: C) -> R`, or `(&self, command: C, env: &Env)`. `R` is
///   `Result<T, E>` or a plain `T` (the handler can't fail), where `T` is an event of this
///   aggregate, the event enum, or a `Vec` of the event enum. A `Result` alias whose name ends
///   in `Result` and that has one argument (`AccountResult<T>`) works when `error` is given.
/// * `#[apply] fn name(&mut self, event: &E)`, where `E` is the newest version of an event;
///   returns nothing.
///
/// The handlers stay ordinary methods of the impl block.
///
/// # Keys
/// * `stream = "..."` (required): the stream category of this aggregate's instances.
/// * `snapshot_every = N`: take a snapshot every `N` events (the state must then derive serde's
///   `Serialize` and `Deserialize`); without it, no snapshots.
/// * `snapshot_schema = N`: the state's schema version stored with snapshots (default 1); bump
///   it when the state's shape changes, and older snapshots are ignored.
/// * `env = Type`: the environment; otherwise the type behind the handlers' `env: &Type`
///   parameter, or `()` when none takes one.
/// * `error = Type`: the error; otherwise the `E` of the handlers' `Result<T, E>`, or
///   `core::convert::Infallible` when none can fail. When given, each handler's error is
///   converted with `From`.
/// * `command_enum = Name`, `event_enum = Name`: the generated enums' names (default
///   `{Type}Command` and `{Type}Event`).
/// * `vis = "pub(crate)"`: the generated enums' visibility, `pub` by default. An impl block
///   doesn't tell the state type's visibility; the enums must be at least as visible as it.
/// * `crate = path`: where `composable` is, when it is re-exported under another name.
///
/// # Generated
/// * `enum OrderCommand` with one variant per command handler, named after the command type,
///   and `From<Command> for OrderCommand`.
/// * `enum OrderEvent` with one variant per apply handler, named after the event type, with
///   `From<Event> for OrderEvent` and `IntoEvents<OrderEvent>` for each event, and `EventSet`
///   (decoding by stored name and version, older versions upcast).
/// * `impl Aggregate for Order`.
///
/// Both enums derive `Debug`, `Clone` and `PartialEq`, so commands and events must too.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::aggregate(args.into(), item.into()).into()
}

/// Marks a method of an [`macro@aggregate`] impl block as a command handler: it reads the state
/// (and the environment) and returns the events a command produces, or refuses it.
///
/// Only meaningful inside `#[aggregate]`, which reads it; anywhere else it is an error:
///
/// ```compile_fail
/// use composable::command;
///
/// pub struct Order;
/// pub struct PlaceOrder;
///
/// impl Order {
///     #[command] // error: `#[command]` must be inside an `#[aggregate]` impl block
///     fn place(&self, _command: PlaceOrder) {}
/// }
/// ```
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::command(args.into(), item.into()).into()
}

/// Marks a method of an [`macro@aggregate`] impl block as an apply handler: it folds one event
/// into the state, and is the only place the state changes.
///
/// Only meaningful inside `#[aggregate]`, which reads it; anywhere else it is an error:
///
/// ```compile_fail
/// use composable::apply;
///
/// pub struct Order;
/// pub struct OrderPlaced;
///
/// impl Order {
///     #[apply] // error: `#[apply]` must be inside an `#[aggregate]` impl block
///     fn placed(&mut self, _event: &OrderPlaced) {}
/// }
/// ```
#[proc_macro_attribute]
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::apply(args.into(), item.into()).into()
}

/// Implements `composable::saga::Saga` from an impl block of `#[start]`, `#[step]` and
/// `#[compensate]` handlers: a workflow across aggregates, event-sourced like one.
///
/// ```
/// use composable::saga::{Dispatch, Reaction, Saga};
/// use composable::{aggregate, apply, command, compensate, event, saga, start, step};
/// use serde::{Deserialize, Serialize};
///
/// # #[derive(Debug, Default)] pub struct Order;
/// # #[derive(Debug, Clone, PartialEq)] pub struct Cancel;
/// # #[event(name = "order.cancelled", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Cancelled;
/// # #[aggregate(stream = "order")]
/// # impl Order {
/// #     #[command] fn cancel(&self, _c: Cancel) -> Cancelled { Cancelled }
/// #     #[apply] fn cancelled(&mut self, _e: &Cancelled) {}
/// # }
/// # #[derive(Debug, Default)] pub struct Payment;
/// # #[derive(Debug, Clone, PartialEq)] pub struct Charge { pub cents: u64 }
/// # #[event(name = "payment.charged", version = 1)]
/// # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)] pub struct Charged { pub order: String }
/// # #[aggregate(stream = "payment")]
/// # impl Payment {
/// #     #[command] fn charge(&self, _c: Charge) -> Charged { Charged { order: String::new() } }
/// #     #[apply] fn charged(&mut self, _e: &Charged) {}
/// # }
/// #[event(name = "order.placed", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderPlaced { pub order: String, pub cents: u64 }
///
/// #[derive(Debug, Default)]
/// pub struct Checkout { order: String }
///
/// #[saga(name = "checkout", key = order)]
/// impl Checkout {
///     #[start(timeout = "5m")]
///     fn placed(&mut self, event: &OrderPlaced) -> Dispatch {
///         self.order.clone_from(&event.order);
///         Dispatch::to::<Payment>(&event.order, Charge { cents: event.cents })
///     }
///
///     #[step(end)]
///     fn charged(&mut self, _event: &Charged) {}
///
///     #[compensate(placed)]
///     fn cancel_order(&self) -> Dispatch {
///         Dispatch::to::<Order>(&self.order, Cancel)
///     }
/// }
///
/// let placed = CheckoutEvent::from(OrderPlaced { order: "o1".into(), cents: 450 });
/// assert_eq!(Checkout::key(&placed), "o1");
/// let mut saga = Checkout::default();
/// assert_eq!(
///     saga.handle(&placed, None),
///     Ok(Reaction::Proceed(vec![Dispatch::to::<Payment>("o1", Charge { cents: 450 })]))
/// );
/// assert_eq!(saga.compensate(Checkout::step(&placed)), vec![Dispatch::to::<Order>("o1", Cancel)]);
/// ```
///
/// # Handlers
/// * `#[start] fn name(&mut self, event: &E) -> R`: the event that starts an instance. Exactly
///   the start event creates one; any other event for an unknown key is ignored.
/// * `#[step] fn name(&mut self, event: &E) -> R`: a later event of the instance.
///   `#[step(end)]` finishes it.
/// * Either may take the event's envelope after it, `envelope: &RecordedEvent` (its stream,
///   position, correlation and causation ids, times), the same on replay as when it arrived.
/// * `R` is what to do next: a `Dispatch`, a `Vec<Dispatch>`, an `Option<Dispatch>`, nothing,
///   a `Reaction` of one of those, or a `Result` of any of these (an `Err` fails the saga,
///   which then compensates). `Reaction::ignore("why")` leaves an event that is not for this
///   instance, or not for it yet, aside: nothing is recorded and the instance is unchanged.
/// * `#[compensate(step)] fn name(&self) -> D`: undoes step `step`'s fact (`D` as `R`, without
///   `Result`). When a step fails or times out, the compensations of every step whose event
///   arrived run, latest first.
/// * Every step that is not an `end` needs a compensation, or `no_compensation` to say that
///   what its event records needs no undoing: a transfer whose withdrawal step had none would
///   keep the money when the deposit is refused, and nothing would say so. A missing one is a
///   compile error.
///
/// Handlers are replayed to rebuild an instance after a restart, so they read nothing but the
/// saga's state and the event: no clocks, no I/O.
///
/// # Keys
/// On `#[saga]`:
/// * `name = "..."` (required): instances live in streams `saga.{name}-{key}`.
/// * `key = field`: the field of every handled event holding the correlation key (any
///   `Display` type); a step may name its own.
/// * `dispatches(Audit, ...)`: aggregates the handlers dispatch to through commands built
///   outside the impl block. Every `Dispatch::to::<A>` inside it (in `vec![...]` too) is found
///   without help, unless `A` means something else at module scope (a `use` or item inside the
///   method, a generic parameter, `Self`) or sits behind `#[cfg]`: name those here. Together
///   they are `Saga::DISPATCHES`, which the application host checks against the aggregates
///   registered with it.
/// * `event_enum = Name`, `vis = "pub(crate)"`, `crate = path`: as on `#[aggregate]`.
///
/// On `#[start]` and `#[step]`:
/// * `key = field`: this event's correlation field.
/// * `timeout = "30s"`: once the step's commands are dispatched, how long to wait for the next
///   event (`ms`, `s`, `m`, `h`, `d`). When it fires, the saga compensates. Not on an `end`
///   step.
/// * `on_timeout = method`: a `fn(&mut self) -> D` whose commands go out when the timeout
///   fires, before the compensations.
/// * `end`: this step finishes the saga.
/// * `no_compensation`: nothing to undo when a later step fails (not on an `end` step, nor
///   beside a `#[compensate]` of the same step).
///
/// # Generated
/// * `enum CheckoutEvent` with one variant per step, named after the event type, with `From`
///   for each event and `EventSet`.
/// * `impl Saga for Checkout`.
#[proc_macro_attribute]
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::saga(args.into(), item.into()).into()
}

/// Marks the step of a [`macro@saga`] whose event starts an instance. Only meaningful inside
/// `#[saga]`, which reads it; anywhere else it is an error.
#[proc_macro_attribute]
pub fn start(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::saga_handler("start", args.into(), item.into()).into()
}

/// Marks a step of a [`macro@saga`]: an event that moves an instance on. Only meaningful inside
/// `#[saga]`, which reads it; anywhere else it is an error.
#[proc_macro_attribute]
pub fn step(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::saga_handler("step", args.into(), item.into()).into()
}

/// Marks the compensation of a step of a [`macro@saga`]. Only meaningful inside `#[saga]`,
/// which reads it; anywhere else it is an error.
#[proc_macro_attribute]
pub fn compensate(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::saga_handler("compensate", args.into(), item.into()).into()
}

/// Implements `composable::projection::Projection` from an impl block of `#[project]`
/// handlers, one per event: a read model kept up to date from the events of one or several
/// aggregates.
///
/// ```
/// use composable::projection::{DocumentBatch, DocumentError, InMemoryDocuments};
/// use composable::{RecordedEvent, event, project, projection};
/// use serde::{Deserialize, Serialize};
///
/// #[event(name = "order.placed", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderPlaced { pub customer: String, pub total: u64 }
///
/// #[event(name = "order.cancelled", version = 1)]
/// #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
/// pub struct OrderCancelled { pub customer: String, pub total: u64 }
///
/// /// What each customer has spent.
/// pub struct Spending;
///
/// #[projection(name = "spending", store = InMemoryDocuments)]
/// impl Spending {
///     #[project]
///     fn placed(&self, batch: &mut DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError> {
///         let spent: u64 = batch.get("spent", &event.customer)?.unwrap_or(0);
///         batch.put("spent", &event.customer, &(spent + event.total))
///     }
///
///     #[project]
///     fn cancelled(
///         &self,
///         batch: &mut DocumentBatch,
///         event: OrderCancelled,
///         envelope: &RecordedEvent,
///     ) -> Result<(), DocumentError> {
///         let spent: u64 = batch.get("spent", &event.customer)?.unwrap_or(0);
///         batch.put("spent", &event.customer, &spent.saturating_sub(event.total))?;
///         batch.put("last_cancel", &event.customer, &envelope.stream_id.to_string())
///     }
/// }
///
/// use composable::event::EventSet;
/// use composable::projection::Projection;
/// assert_eq!(<Spending as Projection>::NAME, "spending");
/// assert_eq!(SpendingEvent::NAMES, ["order.placed", "order.cancelled"]);
/// ```
///
/// # Keys
/// * `name = "..."` (required): a lowercase identifier (`a-z`, `0-9`, `_`, at most 63
///   characters) naming the projection's checkpoint, tables and keys.
/// * `store = Type` (required): the read store it writes to; each handler takes its batch.
/// * `version = N`: the read model's version, from 1 (the default). A new version is built
///   beside the old one from the start of the log.
/// * `error = Type`: the error type, when it isn't the one every fallible handler returns (each
///   handler's error converts into it with `From`).
/// * `event_enum = Name`: the generated enum's name (default: the type's name + `Event`).
/// * `vis = "pub(crate)"`: its visibility (default `pub`).
/// * `crate = path`: where `composable` is, when it is re-exported under another name.
///
/// # Handlers
/// `fn name(&self, batch: &mut <Store's batch>, event: E, envelope: &RecordedEvent)`, where
/// the event is taken by value or by reference, the envelope (stream, position, metadata) is
/// optional, the method may be `async`, and it returns nothing or `Result<(), Error>`.
/// Stored older versions of `E` arrive upcast to `E`, the newest.
///
/// # Generated
/// * `enum SpendingEvent` with one variant per handler, named after the event type, with
///   `From` for each event and `EventSet`.
/// * `impl Projection for Spending`.
#[proc_macro_attribute]
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::projection(args.into(), item.into()).into()
}

/// Marks a method of a [`macro@projection`] impl block as the handler of one event. Only
/// meaningful inside `#[projection]`, which reads it; anywhere else it is an error:
///
/// ```compile_fail
/// use composable::project;
///
/// pub struct Spending;
/// pub struct OrderPlaced;
///
/// impl Spending {
///     #[project] // error: `#[project]` must be inside a `#[projection]` impl block
///     fn placed(&self, _batch: &mut (), _event: &OrderPlaced) {}
/// }
/// ```
#[proc_macro_attribute]
pub fn project(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::project(args.into(), item.into()).into()
}
