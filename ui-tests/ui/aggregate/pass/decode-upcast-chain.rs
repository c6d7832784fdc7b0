//! Stored payloads of any version decode to the newest event through the aggregate's event set.

use composable::{Bincode, Codec, aggregate, apply, command, event};
use composable::event::{DecodeError, EventSet};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 3)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
    pub total: u64,
    pub currency: String,
}

#[event(name = "order.placed", version = 2, upcast = OrderPlaced)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV2 {
    pub customer: String,
    pub total: u64,
}

#[event(name = "order.placed", version = 1, upcast = OrderPlacedV2)]
#[derive(Serialize, Deserialize)]
pub struct OrderPlacedV1 {
    pub customer: String,
}

impl From<OrderPlacedV2> for OrderPlaced {
    fn from(v2: OrderPlacedV2) -> Self {
        OrderPlaced { customer: v2.customer, total: v2.total, currency: "EUR".into() }
    }
}

impl From<OrderPlacedV1> for OrderPlacedV2 {
    fn from(v1: OrderPlacedV1) -> Self {
        OrderPlacedV2 { customer: v1.customer, total: 0 }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlaceOrder;

#[derive(Default)]
pub struct Order;

#[aggregate(stream = "order")]
impl Order {
    #[command]
    fn place(&self, _command: PlaceOrder) -> OrderPlaced {
        OrderPlaced { customer: "ada".into(), total: 1, currency: "EUR".into() }
    }

    #[apply]
    fn placed(&mut self, _event: &OrderPlaced) {}
}

fn main() {
    let v1 = Bincode.encode(&OrderPlacedV1 { customer: "ada".into() }).unwrap();
    let newest = OrderEvent::decode(&Bincode, "order.placed", 1, &v1).unwrap();
    assert_eq!(
        newest,
        OrderEvent::OrderPlaced(OrderPlaced { customer: "ada".into(), total: 0, currency: "EUR".into() })
    );
    assert_eq!(newest.event_version(), 3);

    let v2 = Bincode.encode(&OrderPlacedV2 { customer: "bob".into(), total: 9 }).unwrap();
    let OrderEvent::OrderPlaced(from_v2) = OrderEvent::decode(&Bincode, "order.placed", 2, &v2).unwrap();
    assert_eq!((from_v2.total, from_v2.currency.as_str()), (9, "EUR"));

    let v3 = newest.encode(&Bincode).unwrap();
    assert_eq!(OrderEvent::decode(&Bincode, "order.placed", 3, &v3).unwrap(), newest);

    let future = OrderEvent::decode(&Bincode, "order.placed", 4, &v3).unwrap_err();
    assert!(matches!(future, DecodeError::FutureVersion { name: "order.placed", version: 4, newest: 3 }), "{future:?}");

    let unknown = OrderEvent::decode(&Bincode, "order.shipped", 1, &v3).unwrap_err();
    assert!(
        matches!(&unknown, DecodeError::UnknownEvent { name, expected } if name == "order.shipped" && *expected == ["order.placed"]),
        "{unknown:?}"
    );

    let corrupt = OrderEvent::decode(&Bincode, "order.placed", 1, &[0xff, 0xff, 0xff]).unwrap_err();
    assert!(matches!(corrupt, DecodeError::Payload { name: "order.placed", version: 1, .. }), "{corrupt:?}");
    let truncated = OrderEvent::decode(&Bincode, "order.placed", 3, &v3[..v3.len() - 1]).unwrap_err();
    assert!(matches!(truncated, DecodeError::Payload { version: 3, .. }), "{truncated:?}");
}
