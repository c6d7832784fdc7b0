//! A whole aggregate: environment, fallible and infallible handlers, several events, snapshots.

use composable::{Aggregate, Bincode, aggregate, apply, command, event};
use composable::event::EventSet;
use serde::{Deserialize, Serialize};

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Order {
    placed: bool,
    cancelled: bool,
    total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder {
    pub total: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CancelOrder;

#[derive(Debug, Clone, PartialEq)]
pub struct Touch;

#[event(name = "order.placed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub total: u64,
    pub currency: String,
}

#[event(name = "order.cancelled", version = 1)]
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct OrderCancelled;

#[derive(Debug, PartialEq, Eq)]
pub enum OrderError {
    AlreadyPlaced,
    NotPlaced,
}

impl std::fmt::Display for OrderError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OrderError::AlreadyPlaced => "already placed",
            OrderError::NotPlaced => "not placed",
        })
    }
}

impl std::error::Error for OrderError {}

pub struct ShopEnv {
    pub currency: &'static str,
}

#[aggregate(stream = "order", snapshot_every = 100, snapshot_schema = 2)]
impl Order {
    /// Handlers keep their docs and stay callable as ordinary methods.
    #[command]
    fn place(&self, command: PlaceOrder, env: &ShopEnv) -> Result<OrderPlaced, OrderError> {
        if self.placed {
            return Err(OrderError::AlreadyPlaced);
        }
        Ok(OrderPlaced { total: command.total, currency: env.currency.to_owned() })
    }

    #[command]
    fn cancel(&self, _command: CancelOrder) -> Result<Vec<OrderEvent>, OrderError> {
        if !self.placed {
            return Err(OrderError::NotPlaced);
        }
        Ok(vec![OrderCancelled.into()])
    }

    #[command]
    fn touch(&self, _command: Touch) -> Vec<OrderEvent> {
        Vec::new()
    }

    #[apply]
    fn placed(&mut self, event: &OrderPlaced) {
        self.placed = true;
        self.total = event.total;
    }

    #[apply]
    fn cancelled(&mut self, _event: &OrderCancelled) {
        self.cancelled = true;
    }

    fn helper(&self) -> bool {
        self.placed && !self.cancelled
    }
}

fn main() {
    assert_eq!(Order::STREAM, "order");
    assert_eq!(Order::SNAPSHOT_EVERY.map(|n| n.get()), Some(100));
    assert_eq!(Order::SNAPSHOT_SCHEMA, 2);
    assert_eq!(OrderEvent::NAMES, &["order.placed", "order.cancelled"]);

    let env = ShopEnv { currency: "EUR" };
    let mut order = Order::default();
    let events = order.decide(PlaceOrder { total: 7 }.into(), &env).unwrap();
    assert_eq!(events, vec![OrderEvent::OrderPlaced(OrderPlaced { total: 7, currency: "EUR".into() })]);
    for event in &events {
        order.apply(event);
    }
    assert!(order.helper());
    assert_eq!(order.decide(OrderCommand::PlaceOrder(PlaceOrder { total: 1 }), &env), Err(OrderError::AlreadyPlaced));
    assert_eq!(order.decide(Touch.into(), &env), Ok(vec![]));

    let events = order.decide(CancelOrder.into(), &env).unwrap();
    assert_eq!(events[0].event_name(), "order.cancelled");
    assert_eq!(events[0].event_version(), 1);
    let bytes = events[0].encode(&Bincode).unwrap();
    assert_eq!(OrderEvent::decode(&Bincode, "order.cancelled", 1, &bytes).unwrap(), events[0]);
    order.apply(&events[0]);
    assert!(!order.helper());

    let snapshot = order.encode_snapshot(&Bincode).unwrap().unwrap();
    let restored = Order::decode_snapshot(&Bincode, &snapshot).unwrap().unwrap();
    assert_eq!(restored.total, 7);
    assert!(restored.cancelled);
}
