//! Reads `#[saga(...)]`'s arguments and finds the step and compensation handlers in the impl
//! block.

use darling::FromMeta;
use darling::util::Flag;
use proc_macro2::{Span, TokenStream};

use crate::common::{self, Errors};
use crate::handler::HandlerKind;

/// The arguments of `#[saga(...)]`, as written. Everything is optional here so that an unknown
/// key doesn't lose the others; `model` reports what is missing.
#[derive(Debug, Default, FromMeta)]
pub(super) struct SagaArgs {
    /// The saga's name: instances live in streams `saga.{name}-{key}`.
    #[darling(default)]
    pub(super) name: Option<syn::LitStr>,
    /// The field of every handled event holding the correlation key, unless a step says
    /// otherwise.
    #[darling(default)]
    pub(super) key: Option<syn::Ident>,
    /// The name of the generated event enum.
    #[darling(default)]
    pub(super) event_enum: Option<syn::Ident>,
    /// The visibility of the generated enum.
    #[darling(default)]
    pub(super) vis: Option<syn::Visibility>,
    /// Aggregates its handlers dispatch to without a `Dispatch::to::<A>` in the impl block
    /// (commands built in other functions).
    #[darling(default)]
    pub(super) dispatches: Targets,
    /// Where the runtime is, when `composable` is re-exported under another name.
    #[darling(rename = "crate", default)]
    pub(super) krate: Option<syn::Path>,
}

/// `dispatches(Payment, Inventory)`: aggregate types, in parentheses.
#[derive(Debug, Default)]
pub(super) struct Targets(pub(super) Vec<syn::Path>);

impl FromMeta for Targets {
    fn from_meta(item: &syn::Meta) -> darling::Result<Self> {
        match item {
            syn::Meta::List(_) => {
                darling::util::PathList::from_meta(item).map(|list| Self(list.to_vec()))
            }
            _ => Err(darling::Error::custom(
                "`dispatches` lists aggregate types in parentheses: \
                 `dispatches(Payment, Inventory)`",
            )
            .with_span(item)),
        }
    }
}

/// The arguments of `#[start(...)]` and `#[step(...)]`.
#[derive(Debug, Default, FromMeta)]
pub(super) struct StepArgs {
    /// The event's field holding the correlation key.
    #[darling(default)]
    pub(super) key: Option<syn::Ident>,
    /// How long to wait for the next event after this step's commands, such as `"30s"`.
    #[darling(default)]
    pub(super) timeout: Option<syn::LitStr>,
    /// A method run when the timeout fires, before the compensations.
    #[darling(default)]
    pub(super) on_timeout: Option<syn::Ident>,
    /// This step finishes the saga.
    #[darling(default)]
    pub(super) end: Flag,
    /// What this step's event records needs no undoing when a later step fails: it has no
    /// `#[compensate]`, and says so.
    #[darling(default)]
    pub(super) no_compensation: Flag,
}

/// One method marked `#[start]`, `#[step]` or `#[compensate]`.
#[derive(Debug)]
pub(super) struct Handler {
    pub(super) kind: HandlerKind,
    /// The attribute, for errors about it as a whole.
    pub(super) span: Span,
    /// `#[start]`/`#[step]`: the arguments (`None` when they didn't parse).
    pub(super) args: Option<StepArgs>,
    /// `#[compensate(step)]`: the step named.
    pub(super) compensates: Option<syn::Ident>,
    pub(super) sig: syn::Signature,
}

#[derive(Debug)]
pub(super) struct SagaInput {
    /// `None` when the arguments didn't parse (the errors are already recorded).
    pub(super) args: Option<SagaArgs>,
    /// The impl block, with the handler attributes marked as read.
    pub(super) item: syn::ItemImpl,
    pub(super) handlers: Vec<Handler>,
}

/// Parses both halves. `None` means the item is not an inherent impl block.
pub(super) fn parse(
    args: TokenStream,
    item: TokenStream,
    errors: &mut Errors,
) -> Option<SagaInput> {
    let args = errors.handle(common::parse_args(args).and_then(|list| SagaArgs::from_list(&list)));
    let mut item = errors.handle(parse_item(item))?;
    let handlers = take_handlers(&mut item, errors);
    Some(SagaInput { args, item, handlers })
}

fn parse_item(item: TokenStream) -> darling::Result<syn::ItemImpl> {
    common::inherent_impl(
        item,
        &common::ImplBlock {
            attribute: "#[saga]",
            holding: "steps",
            example_type: "Checkout",
            implements: "Saga",
            usage: "#[saga(name = \"checkout\", key = order_id)]",
        },
    )
}

/// Finds the handlers and marks their attributes as read, as `#[aggregate]` does.
fn take_handlers(item: &mut syn::ItemImpl, errors: &mut Errors) -> Vec<Handler> {
    let mut handlers = Vec::new();
    for impl_item in &mut item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let mut found: Option<Handler> = None;
        for attribute in common::take_handler_attributes(method, handler_kind) {
            let common::HandlerAttribute { kind, span, meta } = attribute;
            if let Some(first) = &found {
                errors.at(
                    span,
                    format!(
                        "this method is already a `#[{}]` handler: one attribute per method",
                        first.kind.attribute()
                    ),
                );
                continue;
            }
            let (args, compensates) = match kind {
                HandlerKind::Compensate => (None, compensated_step(&meta, span, errors)),
                _ => (step_args(&meta, errors), None),
            };
            found = Some(Handler { kind, span, args, compensates, sig: method.sig.clone() });
        }
        handlers.extend(found);
    }
    handlers
}

fn step_args(meta: &syn::Meta, errors: &mut Errors) -> Option<StepArgs> {
    match meta {
        syn::Meta::Path(_) => Some(StepArgs::default()),
        syn::Meta::List(list) => errors.handle(
            common::parse_args(list.tokens.clone()).and_then(|list| StepArgs::from_list(&list)),
        ),
        syn::Meta::NameValue(value) => {
            errors.spanned(
                value,
                "write the step's keys in parentheses: `#[step(timeout = \"30s\")]`",
            );
            None
        }
    }
}

fn compensated_step(meta: &syn::Meta, span: Span, errors: &mut Errors) -> Option<syn::Ident> {
    let parsed = match meta {
        syn::Meta::List(list) => syn::parse2::<syn::Ident>(list.tokens.clone()).ok(),
        _ => None,
    };
    if parsed.is_none() {
        errors.at(
            span,
            "`#[compensate]` names the step it undoes: `#[compensate(payment_captured)]`",
        );
    }
    parsed
}

/// `#[start]`, `#[step]`, `#[compensate]`, or the same through a path.
fn handler_kind(path: &syn::Path) -> Option<HandlerKind> {
    let last = path.segments.last()?;
    if last.ident == "start" {
        Some(HandlerKind::Start)
    } else if last.ident == "step" {
        Some(HandlerKind::Step)
    } else if last.ident == "compensate" {
        Some(HandlerKind::Compensate)
    } else {
        None
    }
}
