//! `#[saga(name = "...", key = ...)]` on an impl block of `#[start]`, `#[step]` and
//! `#[compensate]` handlers.

mod expand;
mod model;
mod parse;
mod targets;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::{self, Errors};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let Some(input) = parse::parse(args, item.clone(), &mut errors) else {
        return common::finish(item, TokenStream::new(), errors);
    };
    // The impl block goes out without the handler attributes marked as read, whatever else happens: left in,
    // they would expand on their own and report that they are outside a `#[saga]`.
    let stripped = input.item.to_token_stream();
    let generated = model::Saga::build(input, &mut errors)
        .map(|saga| expand::expand(&saga))
        .unwrap_or_default();
    common::finish(stripped, generated, errors)
}
