//! Reads `#[projection(...)]`'s arguments and finds the `#[project]` handlers in the impl block.

use darling::FromMeta;
use proc_macro2::TokenStream;

use crate::common::{self, Errors};
use crate::handler::HandlerKind;

/// The arguments of `#[projection(...)]`, as written. Everything is optional here so that an
/// unknown key doesn't lose the others; `model` reports what is missing.
#[derive(Debug, Default, FromMeta)]
pub(super) struct ProjectionArgs {
    /// The projection's name: its checkpoint, its tables or keys, its service.
    #[darling(default)]
    pub(super) name: Option<syn::LitStr>,
    /// The version of its read model: a new version is built beside the old one.
    #[darling(default)]
    pub(super) version: Option<syn::LitInt>,
    /// The read store it writes to.
    #[darling(default)]
    pub(super) store: Option<syn::Type>,
    /// The error type, when it isn't inferred from the handlers.
    #[darling(default)]
    pub(super) error: Option<syn::Type>,
    /// The name of the generated event enum.
    #[darling(default)]
    pub(super) event_enum: Option<syn::Ident>,
    /// The visibility of the generated enum.
    #[darling(default)]
    pub(super) vis: Option<syn::Visibility>,
    /// Where the runtime is, when `composable` is re-exported under another name.
    #[darling(rename = "crate", default)]
    pub(super) krate: Option<syn::Path>,
}

/// One method marked `#[project]`.
#[derive(Debug)]
pub(super) struct Handler {
    pub(super) sig: syn::Signature,
}

#[derive(Debug)]
pub(super) struct ProjectionInput {
    /// `None` when the arguments didn't parse (the errors are already recorded).
    pub(super) args: Option<ProjectionArgs>,
    /// The impl block, with the handler attributes marked as read.
    pub(super) item: syn::ItemImpl,
    pub(super) handlers: Vec<Handler>,
}

/// Parses both halves. `None` means the item is not an inherent impl block.
pub(super) fn parse(
    args: TokenStream,
    item: TokenStream,
    errors: &mut Errors,
) -> Option<ProjectionInput> {
    let args =
        errors.handle(common::parse_args(args).and_then(|list| ProjectionArgs::from_list(&list)));
    let mut item = errors.handle(common::inherent_impl(
        item,
        &common::ImplBlock {
            attribute: "#[projection]",
            holding: "`#[project]` handlers",
            example_type: "OrdersByCustomer",
            implements: "Projection",
            usage: "#[projection(name = \"orders_by_customer\", store = InMemoryDocuments)]",
        },
    ))?;
    let handlers = take_handlers(&mut item, errors);
    Some(ProjectionInput { args, item, handlers })
}

/// Finds the methods marked `#[project]`; their attributes are marked as read.
fn take_handlers(item: &mut syn::ItemImpl, errors: &mut Errors) -> Vec<Handler> {
    let mut handlers = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut found = false;
        for attribute in common::take_handler_attributes(method, handler_kind) {
            let common::HandlerAttribute { span, meta, .. } = attribute;
            if !matches!(meta, syn::Meta::Path(_)) {
                errors.spanned(&meta, "`#[project]` takes no arguments: write `#[project]`");
            }
            if found {
                errors.at(span, "`#[project]` is already on this method: remove this one");
            }
            found = true;
        }
        if found {
            handlers.push(Handler { sig: method.sig.clone() });
        }
    }
    handlers
}

fn handler_kind(path: &syn::Path) -> Option<HandlerKind> {
    path.segments.last().filter(|last| last.ident == "project").map(|_| HandlerKind::Project)
}
