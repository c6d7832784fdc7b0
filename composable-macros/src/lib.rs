//! The attribute macros of [`composable`](https://docs.rs/composable): [`macro@event`],
//! [`macro@aggregate`], and the [`macro@command`] and [`macro@apply`] handlers inside an
//! aggregate.
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
/// use composable::{Bincode, Codec, VersionedEvent};
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
