pub(crate) mod account;
