//! `#[event(name = "...", version = N, upcast = Newer)]`.

mod expand;
mod model;
mod parse;

use proc_macro2::TokenStream;

use crate::common::{self, Errors};

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = Errors::default();
    let generated = parse::parse(args, item.clone(), &mut errors)
        .and_then(|input| model::Event::build(input, &mut errors))
        .map(|event| expand::expand(&event))
        .unwrap_or_default();
    common::finish(item, generated, errors)
}
