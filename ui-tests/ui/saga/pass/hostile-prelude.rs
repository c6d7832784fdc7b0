//! The generated code names everything by absolute path: it compiles in a module without the
//! prelude, next to items that shadow every name it could have relied on.

#![allow(dead_code, non_camel_case_types)]

mod hostile {
    #![no_implicit_prelude]

    use ::composable::{aggregate, apply, command, compensate, event, saga, start, step};
    use ::composable::saga::Dispatch;

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

    #[derive(::core::fmt::Debug, ::core::default::Default)]
    pub struct Payment;

    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
    pub struct Charge;

    #[event(name = "payment.captured", version = 1)]
    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Captured {
        pub order_id: ::std::string::String,
    }

    #[aggregate(stream = "payment")]
    impl Payment {
        #[command]
        fn charge(&self, _command: Charge) -> Captured {
            Captured { order_id: ::std::string::String::new() }
        }

        #[apply]
        fn captured(&mut self, _event: &Captured) {}
    }

    #[event(name = "order.placed", version = 1)]
    #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq, ::serde::Serialize, ::serde::Deserialize)]
    pub struct Placed {
        pub order_id: ::std::string::String,
    }

    #[derive(::core::fmt::Debug, ::core::default::Default)]
    pub struct Checkout {
        order_id: ::std::string::String,
    }

    #[saga(name = "checkout", key = order_id)]
    impl Checkout {
        #[start(timeout = "30s", on_timeout = late)]
        fn placed(&mut self, event: &Placed) -> Dispatch {
            ::core::clone::Clone::clone_from(&mut self.order_id, &event.order_id);
            Dispatch::to::<Payment>(&event.order_id, Charge)
        }

        #[step(end)]
        fn captured(&mut self, _event: &Captured) {}

        #[compensate(placed)]
        fn undo(&self) -> ::core::option::Option<Dispatch> {
            ::core::option::Option::None
        }

        fn late(&mut self) {}
    }
}

fn main() {
    use composable::saga::Saga;
    let placed = hostile::CheckoutEvent::from(hostile::Placed { order_id: "o1".into() });
    assert_eq!(hostile::Checkout::key(&placed), "o1");
}
