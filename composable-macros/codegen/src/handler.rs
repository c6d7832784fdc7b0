//! `#[command]` and `#[apply]` on their own.
//!
//! Inside an `#[aggregate]` impl block these attributes are read by `#[aggregate]` first, which
//! rewrites them to `#[command(__within_aggregate)]`: they then expand to the bare method. Any
//! other use is a handler outside of an aggregate, which is an error.

use proc_macro2::{Span, TokenStream, TokenTree};

/// The argument `#[aggregate]` gives the handler attributes it has read.
const CHECKED: &str = "__within_aggregate";

/// `path(__within_aggregate)`: a handler attribute `#[aggregate]` has read.
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
}

impl HandlerKind {
    pub(crate) fn attribute(self) -> &'static str {
        match self {
            HandlerKind::Command => "command",
            HandlerKind::Apply => "apply",
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
    let error = syn::Error::new(
        Span::call_site(),
        format!(
            "`#[{name}]` must be inside an `#[aggregate]` impl block: put this method in an \
             `impl` block annotated with `#[aggregate(stream = \"...\")]`",
        ),
    );
    let mut out = item;
    out.extend(error.to_compile_error());
    out
}
