//! Reads `#[event(...)]`'s arguments and the struct or enum it annotates.

use darling::FromMeta;
use proc_macro2::TokenStream;

use crate::common::{self, Errors};

/// The arguments of `#[event(...)]`, as written.
#[derive(Debug, FromMeta)]
pub(super) struct EventArgs {
    /// The stored name, such as `"order.placed"`.
    pub(super) name: syn::LitStr,
    /// The version of this shape, from 1.
    pub(super) version: syn::LitInt,
    /// The next newer version of this event, for older versions.
    #[darling(default)]
    pub(super) upcast: Option<syn::Path>,
    /// Where the runtime is, when `composable` is re-exported under another name.
    #[darling(rename = "crate", default)]
    pub(super) krate: Option<syn::Path>,
}

/// The annotated type: only what the expansion needs.
#[derive(Debug)]
pub(super) struct EventItem {
    pub(super) ident: syn::Ident,
    pub(super) generics: syn::Generics,
    pub(super) attrs: Vec<syn::Attribute>,
}

#[derive(Debug)]
pub(super) struct EventInput {
    pub(super) args: EventArgs,
    pub(super) item: EventItem,
}

/// Parses both halves; every problem goes to `errors`, and `None` means there is nothing to
/// build a model from.
pub(super) fn parse(
    args: TokenStream,
    item: TokenStream,
    errors: &mut Errors,
) -> Option<EventInput> {
    let args = errors.handle(common::parse_args(args).and_then(|list| EventArgs::from_list(&list)));
    let item = errors.handle(parse_item(item));
    Some(EventInput { args: args?, item: item? })
}

fn parse_item(item: TokenStream) -> darling::Result<EventItem> {
    match syn::parse2::<syn::Item>(item)? {
        syn::Item::Struct(item) => {
            Ok(EventItem { ident: item.ident, generics: item.generics, attrs: item.attrs })
        }
        syn::Item::Enum(item) => {
            Ok(EventItem { ident: item.ident, generics: item.generics, attrs: item.attrs })
        }
        other => Err(common::error(
            common::item_head_span(&other),
            "`#[event]` goes on a struct or an enum: the type whose values are stored as this event",
        )),
    }
}
