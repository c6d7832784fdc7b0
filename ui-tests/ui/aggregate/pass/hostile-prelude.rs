//! The generated code names everything by absolute path: it compiles in a module without the
//! prelude, next to items that shadow every name it could have relied on.

#![allow(dead_code, non_camel_case_types)]

mod hostile {
    #![no_implicit_prelude]

    use ::composable::{aggregate, apply, command, event};

    // Shadow what generated code might use unqualified.
    pub struct Result;
    pub struct Option;
    pub struct Some;
    pub struct None;
    pub struct Ok;
    pub struct Err;
    pub struct Vec;
    pub struct String;
    pub struct Box;
    pub struct From;
    pub struct Into;
    pub struct Default;
    pub struct Clone;
    pub struct Debug;
    pub struct PartialEq;
    pub mod core {}
    pub mod std {}
    pub mod composable {}
    pub mod serde {}

    #[derive(::core::fmt::Debug, ::core::default::Default, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Order {
        pub placed: ::core::primitive::bool,
    }

    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
    pub struct PlaceOrder;

    #[event(name = "order.placed", version = 2)]
    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    pub struct OrderPlaced;

    #[event(name = "order.placed", version = 1, upcast = OrderPlaced)]
    #[derive(::serde::Serialize, ::serde::Deserialize)]
    pub struct OrderPlacedV1;

    impl ::core::convert::From<OrderPlacedV1> for OrderPlaced {
        fn from(_: OrderPlacedV1) -> Self {
            OrderPlaced
        }
    }

    #[derive(::core::fmt::Debug)]
    pub struct OrderError;

    impl ::core::fmt::Display for OrderError {
        fn fmt(&self, f: &mut ::core::fmt::Formatter<'_>) -> ::core::fmt::Result {
            f.write_str("refused")
        }
    }

    impl ::std::error::Error for OrderError {}

    pub struct ShopEnv;

    #[aggregate(stream = "order", snapshot_every = 10)]
    impl Order {
        #[command]
        fn place(
            &self,
            _command: PlaceOrder,
            _env: &ShopEnv,
        ) -> ::core::result::Result<OrderPlaced, OrderError> {
            ::core::result::Result::Ok(OrderPlaced)
        }

        #[apply]
        fn placed(&mut self, _event: &OrderPlaced) {
            self.placed = true;
        }
    }
}

fn main() {
    use composable::{Aggregate, Bincode, Codec};
    use composable::event::EventSet;
    let mut order = hostile::Order::default();
    let events = order.decide(hostile::PlaceOrder.into(), &hostile::ShopEnv).unwrap();
    order.apply(&events[0]);
    assert!(order.placed);
    let v1 = Bincode.encode(&hostile::OrderPlacedV1).unwrap();
    let decoded = hostile::OrderEvent::decode(&Bincode, "order.placed", 1, &v1).unwrap();
    assert_eq!(decoded, hostile::OrderEvent::OrderPlaced(hostile::OrderPlaced));
}
