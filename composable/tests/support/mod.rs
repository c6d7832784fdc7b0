pub(crate) mod account;
#[allow(dead_code)] // Not every suite that has the support module races.
pub(crate) mod racing;
