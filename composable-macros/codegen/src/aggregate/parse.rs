//! Reads `#[aggregate(...)]`'s arguments and finds the handlers in the impl block.

use darling::FromMeta;
use proc_macro2::TokenStream;

use crate::common::{self, Errors};
use crate::handler::HandlerKind;

/// The arguments of `#[aggregate(...)]`, as written. Everything is optional here so that an
/// unknown key doesn't lose the others; `model` reports what is missing.
#[derive(Debug, Default, FromMeta)]
pub(super) struct AggregateArgs {
    /// The stream category, such as `"order"`.
    #[darling(default)]
    pub(super) stream: Option<syn::LitStr>,
    /// Take a snapshot every this many events.
    #[darling(default)]
    pub(super) snapshot_every: Option<syn::LitInt>,
    /// The state's schema version stored with snapshots.
    #[darling(default)]
    pub(super) snapshot_schema: Option<syn::LitInt>,
    /// The environment type, when it isn't inferred from the handlers.
    #[darling(default)]
    pub(super) env: Option<syn::Type>,
    /// The error type, when it isn't inferred from the handlers.
    #[darling(default)]
    pub(super) error: Option<syn::Type>,
    /// The name of the generated command enum.
    #[darling(default)]
    pub(super) command_enum: Option<syn::Ident>,
    /// The name of the generated event enum.
    #[darling(default)]
    pub(super) event_enum: Option<syn::Ident>,
    /// The visibility of the generated enums.
    #[darling(default)]
    pub(super) vis: Option<syn::Visibility>,
    /// Where the runtime is, when `composable` is re-exported under another name.
    #[darling(rename = "crate", default)]
    pub(super) krate: Option<syn::Path>,
}

/// One method marked `#[command]` or `#[apply]`.
#[derive(Debug)]
pub(super) struct Handler {
    pub(super) kind: HandlerKind,
    pub(super) sig: syn::Signature,
}

#[derive(Debug)]
pub(super) struct AggregateInput {
    /// `None` when the arguments didn't parse (the errors are already recorded).
    pub(super) args: Option<AggregateArgs>,
    /// The impl block, with the handler attributes removed.
    pub(super) item: syn::ItemImpl,
    pub(super) handlers: Vec<Handler>,
}

/// Parses both halves. `None` means the item is not an inherent impl block, so there is nothing
/// to generate.
pub(super) fn parse(
    args: TokenStream,
    item: TokenStream,
    errors: &mut Errors,
) -> Option<AggregateInput> {
    let args =
        errors.handle(common::parse_args(args).and_then(|list| AggregateArgs::from_list(&list)));
    let mut item = errors.handle(parse_item(item))?;
    let handlers = take_handlers(&mut item, errors);
    Some(AggregateInput { args, item, handlers })
}

fn parse_item(item: TokenStream) -> darling::Result<syn::ItemImpl> {
    common::inherent_impl(
        item,
        &common::ImplBlock {
            attribute: "#[aggregate]",
            holding: "handlers",
            example_type: "Order",
            implements: "Aggregate",
            usage: "#[aggregate(stream = \"order\")]",
        },
    )
}

/// Finds the methods marked `#[command]` or `#[apply]`; their attributes are marked as read.
fn take_handlers(item: &mut syn::ItemImpl, errors: &mut Errors) -> Vec<Handler> {
    let mut handlers = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut kind: Option<HandlerKind> = None;
        for found in common::take_handler_attributes(method, handler_kind) {
            let common::HandlerAttribute { kind: this, span, meta } = found;
            if !matches!(meta, syn::Meta::Path(_)) {
                errors.spanned(
                    &meta,
                    format!(
                        "`#[{name}]` takes no arguments: write `#[{name}]`",
                        name = this.attribute()
                    ),
                );
            }
            match kind {
                None => kind = Some(this),
                Some(first) => errors.at(
                    span,
                    if first == this {
                        format!(
                            "`#[{}]` is already on this method: remove this one",
                            this.attribute()
                        )
                    } else {
                        format!(
                            "a method is either a `#[command]` or an `#[apply]` handler, not both: \
                             deciding and applying are separate steps; remove `#[{}]` and write a \
                             second method",
                            this.attribute()
                        )
                    },
                ),
            }
        }
        if let Some(kind) = kind {
            handlers.push(Handler { kind, sig: method.sig.clone() });
        }
    }
    handlers
}

fn handler_kind(path: &syn::Path) -> Option<HandlerKind> {
    let last = path.segments.last()?;
    if last.ident == "command" {
        Some(HandlerKind::Command)
    } else if last.ident == "apply" {
        Some(HandlerKind::Apply)
    } else {
        None
    }
}
