//! What the tests that run `checkout-service` as real processes share: the services they need,
//! a database of their own, and the processes.

#![allow(dead_code, unreachable_pub)]

pub mod processes;
