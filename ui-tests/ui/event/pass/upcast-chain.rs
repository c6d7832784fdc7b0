use composable::{Bincode, Codec, event};
use composable::event::{DecodeError, VersionedEvent};
use serde::{Deserialize, Serialize};

#[event(name = "order.placed", version = 3)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderPlaced {
    pub customer: String,
    pub total: u64,
    pub currency: String,
}

#[event(name = "order.placed", version = 2, upcast = OrderPlaced)]
#[derive(Debug, Serialize, Deserialize)]
pub struct OrderPlacedV2 {
    pub customer: String,
    pub total: u64,
}

#[event(name = "order.placed", version = 1, upcast = OrderPlacedV2)]
#[derive(Debug, Serialize, Deserialize)]
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

fn main() {
    let v1 = Bincode.encode(&OrderPlacedV1 { customer: "ada".into() }).unwrap();
    let decoded = OrderPlaced::decode_version(&Bincode, 1, &v1).unwrap();
    assert_eq!(decoded, OrderPlaced { customer: "ada".into(), total: 0, currency: "EUR".into() });

    let future = OrderPlaced::decode_version(&Bincode, 4, &v1).unwrap_err();
    assert!(matches!(future, DecodeError::FutureVersion { version: 4, newest: 3, .. }), "{future:?}");
    let unknown = OrderPlaced::decode_version(&Bincode, 0, &v1).unwrap_err();
    assert!(matches!(unknown, DecodeError::UnknownVersion { version: 0, .. }), "{unknown:?}");
}
