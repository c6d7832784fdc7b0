//! `#[projection(name = "...", store = ...)]` on an impl block of `#[project]` handlers.

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
    // As with `#[aggregate]`: the impl block goes out with its handler attributes marked read.
    let stripped = input.item.to_token_stream();
    let generated = model::Projection::build(input, &mut errors)
        .map(|projection| expand::expand(&projection))
        .unwrap_or_default();
    common::finish(stripped, generated, errors)
}
