//! `#[aggregate(stream = "...")]` on an impl block of `#[command]` and `#[apply]` handlers.

mod expand;
mod model;
mod parse;

use proc_macro2::TokenStream;
use quote::ToTokens;

use crate::common::{self, Errors};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let Some(input) = parse::parse(args, item.clone(), &mut errors) else {
        return common::finish(item, TokenStream::new(), errors);
    };
    // The impl block goes out without the handler attributes, whatever else happens: left in,
    // they would expand on their own and report that they are outside an `#[aggregate]`.
    let stripped = input.item.to_token_stream();
    let generated = model::Aggregate::build(input, &mut errors)
        .map(|aggregate| expand::expand(&aggregate))
        .unwrap_or_default();
    common::finish(stripped, generated, errors)
}
