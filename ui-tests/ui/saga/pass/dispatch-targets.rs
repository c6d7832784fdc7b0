//! `Saga::DISPATCHES` holds the targets that mean the same at module scope; the others (a type
//! a `use` inside the method brought in, a generic parameter, code behind `#[cfg]`) are left to
//! `dispatches(...)`, and the saga still compiles.

use composable::saga::Dispatch;
use composable::{Saga, aggregate, apply, command, event, saga, start, step};
use serde::{Deserialize, Serialize};

mod billing {
    use super::*;

    #[event(name = "payment.captured", version = 1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Captured {
        pub order_id: String,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Charge;

    #[derive(Debug, Default)]
    pub struct Payment;

    #[aggregate(stream = "payment")]
    impl Payment {
        #[command]
        fn charge(&self, _command: Charge) -> Captured {
            Captured { order_id: String::new() }
        }

        #[apply]
        fn captured(&mut self, _event: &Captured) {}
    }
}

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Placed {
    pub order_id: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Confirm;

#[derive(Debug, Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn confirm(&self, _command: Confirm) -> Placed {
        Placed { order_id: String::new() }
    }

    #[apply]
    fn placed(&mut self, _event: &Placed) {}
}

#[derive(Debug, Default)]
pub struct Checkout {
    order_id: String,
}

#[saga(name = "checkout", key = order_id, dispatches(billing::Payment))]
impl Checkout {
    #[start(no_compensation)]
    fn placed(&mut self, event: &Placed) -> Dispatch {
        use billing::Payment;
        self.order_id.clone_from(&event.order_id);
        Dispatch::to::<Payment>(&event.order_id, billing::Charge)
    }

    #[step(end)]
    fn captured(&mut self, _event: &billing::Captured) -> Dispatch {
        Dispatch::to::<Order>(&self.order_id, Confirm)
    }

    #[allow(dead_code)]
    fn send<A: composable::Aggregate>(&self, command: A::Command) -> Dispatch
    where
        A::Command: Clone + PartialEq + Sync,
    {
        Dispatch::to::<A>(&self.order_id, command)
    }

    #[cfg(any())]
    fn never_built(&self) -> Dispatch {
        Dispatch::to::<Missing>(&self.order_id, Confirm)
    }
}

fn main() {
    assert_eq!(Checkout::DISPATCHES, ["payment", "order"]);
}
