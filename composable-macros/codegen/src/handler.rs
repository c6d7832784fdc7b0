//! Handler attributes on their own (`#[command]`, `#[apply]`, and the saga's `#[start]`,
//! `#[step]`, `#[compensate]`), and the signature checks their containers share.
//!
//! Inside an `#[aggregate]` (or `#[saga]`) impl block these attributes are read by the container
//! first, which rewrites them to `#[command(__read_by_container)]`: they then expand to the bare
//! method. Any other use is a handler outside of its container, which is an error.

use proc_macro2::{Span, TokenStream, TokenTree};

use crate::common::Errors;

/// The argument `#[aggregate]` gives the handler attributes it has read.
const CHECKED: &str = "__read_by_container";

/// `path(__read_by_container)`: a handler attribute `#[aggregate]` has read.
pub(crate) fn checked_marker(path: syn::Path) -> syn::Meta {
    let span = path.segments.last().map_or_else(Span::call_site, |last| last.ident.span());
    syn::Meta::List(syn::MetaList {
        path,
        delimiter: syn::MacroDelimiter::Paren(syn::token::Paren(span)),
        tokens: TokenStream::from(TokenTree::Ident(syn::Ident::new(CHECKED, span))),
    })
}

fn is_checked(args: &TokenStream) -> bool {
    let mut tokens = args.clone().into_iter();
    matches!(
        (tokens.next(), tokens.next()),
        (Some(TokenTree::Ident(ident)), None) if ident == CHECKED
    )
}

/// Which handler attribute was used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HandlerKind {
    Command,
    Apply,
    Start,
    Step,
    Compensate,
    Project,
}

impl HandlerKind {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            HandlerKind::Command => "command",
            HandlerKind::Apply => "apply",
            HandlerKind::Start => "start",
            HandlerKind::Step => "step",
            HandlerKind::Compensate => "compensate",
            HandlerKind::Project => "project",
        }
    }

    fn container(self) -> &'static str {
        match self {
            HandlerKind::Command | HandlerKind::Apply => "aggregate(stream = \"...\")",
            HandlerKind::Start | HandlerKind::Step | HandlerKind::Compensate => {
                "saga(name = \"...\", key = ...)"
            }
            HandlerKind::Project => "projection(name = \"...\", store = ...)",
        }
    }
}

/// The item, unchanged, next to an error on the attribute.
pub(crate) fn outside_aggregate(
    kind: HandlerKind,
    args: TokenStream,
    item: TokenStream,
) -> TokenStream {
    if is_checked(&args) {
        return item;
    }
    let name = kind.attribute();
    let container = kind.container();
    let short = container.split('(').next().unwrap_or(container);
    let article = if short.starts_with('a') { "an" } else { "a" };
    let error = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{name}]` must be inside {article} `#[{short}]` impl block: put this method in an \
             `impl` block annotated with `#[{container}]`",
        ),
    );
    let mut out = item;
    out.extend(error.to_compile_error());
    out
}

/// Problems shared by both handler kinds: `async`, `unsafe`, generics, variadics.
pub(crate) fn check_plain_fn(sig: &syn::Signature, kind: HandlerKind, errors: &mut Errors) -> bool {
    let noun = match kind {
        HandlerKind::Command => "a command handler",
        HandlerKind::Apply => "an apply handler",
        HandlerKind::Start | HandlerKind::Step => "a saga step",
        HandlerKind::Compensate => "a compensation",
        HandlerKind::Project => "a projection handler",
    };
    let mut ok = true;
    // A projection handler writes to its store, which may take I/O: it may be `async`.
    if let Some(asyncness) = sig.asyncness.as_ref().filter(|_| kind != HandlerKind::Project) {
        errors.at(
            asyncness.span,
            match kind {
                HandlerKind::Command => {
                    "a command handler can't be `async`: deciding is pure and synchronous; \
                     remove `async` and pass what it needs through the environment"
                }
                HandlerKind::Apply => {
                    "an apply handler can't be `async`: applying an event only changes the \
                     state; remove `async`"
                }
                HandlerKind::Project => "",
                HandlerKind::Start | HandlerKind::Step | HandlerKind::Compensate => {
                    "a saga handler can't be `async`: it decides the next commands and the saga \
                     runner dispatches them; remove `async`"
                }
            },
        );
        ok = false;
    }
    if let syn::Safety::Unsafe(unsafety) = &sig.safety {
        errors.at(unsafety.span, format!("{noun} can't be `unsafe`: remove `unsafe`"));
        ok = false;
    }
    if !sig.generics.params.is_empty() || sig.generics.where_clause.is_some() {
        errors.spanned(
            &sig.generics,
            format!(
                "{noun} can't be generic: the generated enum names one concrete type per \
                 handler; remove the generic parameters"
            ),
        );
        ok = false;
    }
    if let Some(variadic) = &sig.variadic {
        errors.spanned(variadic, format!("{noun} can't be variadic"));
        ok = false;
    }
    ok
}

/// The receiver, if it is `&self` (`Some(false)`) or `&mut self` (`Some(true)`).
pub(crate) fn reference_receiver(arg: Option<&syn::FnArg>) -> Option<bool> {
    match arg {
        Some(syn::FnArg::Receiver(receiver)) => match &receiver.kind {
            syn::ReceiverKind::Reference(_, _, mutability) => Some(mutability.is_some()),
            _ => None,
        },
        _ => None,
    }
}

/// The variant name for a handler's command or event type: its last path segment.
pub(crate) fn variant_of(ty: &syn::Type) -> Option<syn::Ident> {
    match ty {
        syn::Type::Path(path) if path.qself.is_none() => {
            path.path.segments.last().map(|last| last.ident.clone())
        }
        syn::Type::Group(group) => variant_of(&group.elem),
        _ => None,
    }
}

/// The shape of a handler's return type.
pub(crate) enum ResultShape {
    /// Not a `Result`: the handler can't fail.
    Plain,
    /// `Result<T, E>`.
    Result(Box<syn::Type>, Box<syn::Type>),
    /// `Result<T>`: an alias fixing the error type.
    ResultAlias(Box<syn::Type>),
}

pub(crate) fn split_result(ty: &syn::Type) -> ResultShape {
    let syn::Type::Path(path) = ty else {
        return ResultShape::Plain;
    };
    let Some(last) = path.path.segments.last() else {
        return ResultShape::Plain;
    };
    // `Result`, or an alias such as `AccountResult<T>`.
    if !last.ident.to_string().ends_with("Result") {
        return ResultShape::Plain;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return ResultShape::Plain;
    };
    let types: Vec<&syn::Type> = args
        .args
        .iter()
        .filter_map(|arg| match arg {
            syn::GenericArgument::Type(ty) => Some(ty),
            _ => None,
        })
        .collect();
    match types.as_slice() {
        [ok] => ResultShape::ResultAlias(Box::new((*ok).clone())),
        [ok, err] => ResultShape::Result(Box::new((*ok).clone()), Box::new((*err).clone())),
        _ => ResultShape::Plain,
    }
}
