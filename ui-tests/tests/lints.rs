//! The generated code is warning-free under the strictest common lint set: this file is built by
//! `cargo test` and checked by `cargo clippy --all-targets -- -D warnings`.

#![deny(warnings, clippy::all, missing_docs, missing_debug_implementations)]

use composable::event::EventSet;
use composable::saga::{Dispatch, Saga};
use composable::{
    Aggregate, Bincode, aggregate, apply, command, compensate, event, saga, start, step,
};
use serde::{Deserialize, Serialize};

/// The state.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Cart {
    items: u32,
}

/// Adds an item.
#[derive(Debug, Clone, PartialEq)]
pub struct AddItem;

/// Clears the cart.
#[derive(Debug, Clone, PartialEq)]
pub struct Clear;

/// An item was added.
#[event(name = "cart.item_added", version = 2)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemAdded {
    /// How many.
    pub quantity: u32,
}

/// The first shape of [`ItemAdded`].
#[event(name = "cart.item_added", version = 1, upcast = ItemAdded)]
#[derive(Debug, Serialize, Deserialize)]
pub struct ItemAddedV1;

impl From<ItemAddedV1> for ItemAdded {
    fn from(_: ItemAddedV1) -> Self {
        ItemAdded { quantity: 1 }
    }
}

/// The cart was cleared.
#[event(name = "cart.cleared", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Cleared {
    /// By the customer.
    ByCustomer,
}

/// Why a cart refuses a command.
#[derive(Debug, PartialEq)]
pub struct Empty;

impl std::fmt::Display for Empty {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the cart is empty")
    }
}

impl std::error::Error for Empty {}

/// The environment.
#[derive(Debug)]
pub struct Env {
    /// How many items one command adds.
    pub quantity: u32,
}

#[aggregate(stream = "cart", snapshot_every = 50)]
impl Cart {
    #[command]
    fn add(&self, _command: AddItem, env: &Env) -> ItemAdded {
        ItemAdded { quantity: env.quantity }
    }

    #[command]
    fn clear(&self, _command: Clear) -> Result<Vec<CartEvent>, Empty> {
        if self.items == 0 {
            return Err(Empty);
        }
        Ok(vec![Cleared::ByCustomer.into()])
    }

    #[apply]
    fn added(&mut self, event: &ItemAdded) {
        self.items += event.quantity;
    }

    #[apply]
    fn cleared(&mut self, _event: &Cleared) {
        self.items = 0;
    }
}

/// A cart was checked out.
#[event(name = "cart.checked_out", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckedOut {
    /// Which cart.
    pub cart: u32,
}

/// Clears carts once they are checked out.
#[derive(Debug, Default)]
pub struct Clearing {
    cart: u32,
}

#[saga(name = "clearing", key = cart)]
impl Clearing {
    #[start(timeout = "1m", on_timeout = late)]
    fn checked_out(&mut self, event: &CheckedOut) -> Dispatch {
        self.cart = event.cart;
        Dispatch::to::<Cart>(event.cart, Clear)
    }

    #[step(end, key = quantity)]
    fn cleared(&mut self, _event: &ItemAdded) {}

    #[compensate(checked_out)]
    fn undo(&self) -> Dispatch {
        Dispatch::to::<Cart>(self.cart, AddItem)
    }

    fn late(&mut self) {}
}

#[test]
fn the_generated_saga_works_under_strict_lints() {
    let event = ClearingEvent::from(CheckedOut { cart: 4 });
    assert_eq!(Clearing::key(&event), "4");
    let mut saga = Clearing::default();
    assert_eq!(
        saga.handle(&event, None),
        Ok(composable::saga::Reaction::Proceed(vec![Dispatch::to::<Cart>(4, Clear)]))
    );
    assert_eq!(saga.compensate(0), vec![Dispatch::to::<Cart>(4, AddItem)]);
    assert!(saga.timed_out(0).is_empty());
}

#[test]
fn the_generated_aggregate_works_under_strict_lints() {
    let env = Env { quantity: 2 };
    let mut cart = Cart::default();
    assert_eq!(cart.decide(Clear.into(), &env), Err(Empty));
    for event in cart.decide(AddItem.into(), &env).unwrap() {
        cart.apply(&event);
    }
    assert_eq!(cart.items, 2);
    let old = composable::Codec::encode(&Bincode, &ItemAddedV1).unwrap();
    let upcast = CartEvent::decode(&Bincode, "cart.item_added", 1, &old).unwrap();
    assert_eq!(upcast, CartEvent::ItemAdded(ItemAdded { quantity: 1 }));
    assert_eq!(CartEvent::NAMES, ["cart.item_added", "cart.cleared"]);
}
