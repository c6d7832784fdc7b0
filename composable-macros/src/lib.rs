//! The attribute macros of [`composable`](https://docs.rs/composable). Use them through
//! `composable`'s re-exports; the code they generate names `composable` (or the path given with
//! `crate = ...`).

use proc_macro::TokenStream;

/// Placeholder.
#[proc_macro_attribute]
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::event(args.into(), item.into()).into()
}

/// Placeholder.
#[proc_macro_attribute]
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::aggregate(args.into(), item.into()).into()
}

/// Placeholder.
#[proc_macro_attribute]
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::command(args.into(), item.into()).into()
}

/// Placeholder.
#[proc_macro_attribute]
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    composable_codegen::apply(args.into(), item.into()).into()
}
