// Each suite that has the support module uses some of it.
#![allow(dead_code, unreachable_pub)]

pub(crate) mod account;
pub(crate) mod flows;
pub(crate) mod racing;
