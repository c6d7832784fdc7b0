//! Helpers shared by the attributes: argument lists, the runtime path, derive detection and the
//! error fallback.

use std::fmt::Display;

use darling::ast::NestedMeta;
use proc_macro2::{Span, TokenStream};
use quote::ToTokens;
use syn::spanned::Spanned;

/// Every mistake found in one use of an attribute, reported together (serde's `Ctxt`).
///
/// Errors are kept as `syn::Error`s rather than in darling's accumulator because a `syn::Error`
/// made from tokens underlines all of them (`&mut self`, `Result<T, E>`), where a single span
/// would underline only the first token. darling's own errors (unknown and duplicate keys, with
/// their "did you mean") are converted as they are.
#[derive(Default)]
pub(crate) struct Errors(Option<syn::Error>);

impl Errors {
    pub(crate) fn push(&mut self, error: syn::Error) {
        match &mut self.0 {
            Some(errors) => errors.combine(error),
            None => self.0 = Some(error),
        }
    }

    /// An error underlining all of `tokens`.
    pub(crate) fn spanned(&mut self, tokens: impl ToTokens, message: impl Display) {
        self.push(syn::Error::new_spanned(tokens, message));
    }

    /// An error at one span.
    pub(crate) fn at(&mut self, span: Span, message: impl Display) {
        self.push(syn::Error::new(span, message));
    }

    /// The value, or `None` after recording darling's errors.
    pub(crate) fn handle<T>(&mut self, result: darling::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error.into());
                None
            }
        }
    }

    fn into_compile_errors(self) -> TokenStream {
        self.0.map(|errors| errors.into_compile_error()).unwrap_or_default()
    }
}

/// An error at `span`.
pub(crate) fn error(span: Span, message: impl std::fmt::Display) -> darling::Error {
    darling::Error::from(syn::Error::new(span, message))
}

/// Splits an attribute's arguments (`name = "x", version = 2`) into darling's nested metas.
pub(crate) fn parse_args(args: TokenStream) -> darling::Result<Vec<NestedMeta>> {
    NestedMeta::parse_meta_list(args).map_err(darling::Error::from)
}

/// The path generated code reaches the runtime through: `crate = path` when given, otherwise
/// `::composable`.
pub(crate) fn crate_path(krate: Option<syn::Path>) -> syn::Path {
    krate.unwrap_or_else(|| {
        let mut path = syn::Path::from(syn::Ident::new("composable", Span::call_site()));
        path.leading_colon = Some(Default::default());
        path
    })
}

/// The paths named in `#[derive(...)]` attributes.
pub(crate) fn derived_traits(attrs: &[syn::Attribute]) -> Vec<syn::Path> {
    let mut derived = Vec::new();
    for attr in attrs.iter().filter(|attr| attr.path().is_ident("derive")) {
        // A malformed derive is the compiler's to report; it is simply not counted here.
        let _ = attr.parse_nested_meta(|meta| {
            derived.push(meta.path);
            Ok(())
        });
    }
    derived
}

/// Whether `path` names `name` (`Serialize`, `serde::Serialize`, `::serde::Serialize`, ...).
pub(crate) fn names_trait(path: &syn::Path, name: &str) -> bool {
    path.segments.last().is_some_and(|last| last.ident == name)
}

/// A handler attribute found on a method: its kind, the span of the whole attribute, and its
/// arguments as the user wrote them.
pub(crate) struct HandlerAttribute<K> {
    pub(crate) kind: K,
    pub(crate) span: Span,
    pub(crate) meta: syn::Meta,
}

/// Finds the handler attributes `kind_of` recognises on `method`, in order, and marks them as
/// read (`crate::handler::checked_marker`) so that they expand to nothing. They are kept rather
/// than removed so that the user's `use composable::{command, apply, ...}` is still used: a
/// removed attribute is never resolved, and its import would warn as unused.
pub(crate) fn take_handler_attributes<K>(
    method: &mut syn::ImplItemFn,
    kind_of: impl Fn(&syn::Path) -> Option<K>,
) -> Vec<HandlerAttribute<K>> {
    let mut found = Vec::new();
    for attr in &mut method.attrs {
        let Some(kind) = kind_of(attr.path()) else { continue };
        let span = attr
            .pound_token
            .span
            .join(attr.bracket_token.span.close())
            .unwrap_or_else(|| attr.meta.span());
        let marker = crate::handler::checked_marker(attr.path().clone());
        let meta = std::mem::replace(&mut attr.meta, marker);
        found.push(HandlerAttribute { kind, span, meta });
    }
    found
}

/// What an attribute that goes on an inherent impl block says when it is put elsewhere.
pub(crate) struct ImplBlock<'a> {
    /// The attribute, as written in messages: `#[aggregate]`.
    pub(crate) attribute: &'a str,
    /// What the block holds: `handlers`.
    pub(crate) holding: &'a str,
    /// A type to show in `impl Type { ... }`.
    pub(crate) example_type: &'a str,
    /// The trait the attribute implements itself.
    pub(crate) implements: &'a str,
    /// The attribute with its arguments, as in a usage example.
    pub(crate) usage: &'a str,
}

/// Parses the item of an attribute that goes on an inherent impl block (`#[aggregate]`,
/// `#[saga]`), refusing trait impls and other items with a message that shows the right use.
pub(crate) fn inherent_impl(
    item: TokenStream,
    block: &ImplBlock<'_>,
) -> darling::Result<syn::ItemImpl> {
    let ImplBlock { attribute, holding, example_type, implements, usage } = block;
    match syn::parse2::<syn::Item>(item)? {
        syn::Item::Impl(item) => match &item.trait_ {
            Some((path, _)) => Err(error(
                path.span(),
                format!(
                    "`{attribute}` goes on an inherent impl block holding the {holding} \
                     (`impl {example_type} {{ ... }}`), not on a trait impl: it writes the \
                     `{implements}` impl itself"
                ),
            )),
            None => Ok(item),
        },
        other => Err(error(
            item_head_span(&other),
            format!(
                "`{attribute}` goes on the impl block holding the {holding}: \
                 `{usage} impl {example_type} {{ ... }}`"
            ),
        )),
    }
}

/// The span of an item's keyword and name, for errors about the item as a whole: pointing at
/// the whole item would underline every line of it.
pub(crate) fn item_head_span(item: &syn::Item) -> Span {
    let (keyword, ident): (Span, Option<&syn::Ident>) = match item {
        syn::Item::Fn(item) => (item.sig.fn_token.span, Some(&item.sig.ident)),
        syn::Item::Struct(item) => (item.struct_token.span, Some(&item.ident)),
        syn::Item::Enum(item) => (item.enum_token.span, Some(&item.ident)),
        syn::Item::Union(item) => (item.union_token.span, Some(&item.ident)),
        syn::Item::Trait(item) => (item.trait_token.span, Some(&item.ident)),
        syn::Item::Type(item) => (item.type_token.span, Some(&item.ident)),
        syn::Item::Mod(item) => (item.mod_token.span, Some(&item.ident)),
        syn::Item::Impl(item) => (item.impl_token.span, None),
        other => return other.span(),
    };
    match ident {
        Some(ident) => keyword.join(ident.span()).unwrap_or(keyword),
        None => keyword,
    }
}

/// A type as a user would write it, for messages (`std::io::Error`, not `std :: io :: Error`).
pub(crate) fn type_name(ty: &syn::Type) -> String {
    let mut name = ty.to_token_stream().to_string();
    for (spaced, tight) in [
        (" :: ", "::"),
        (":: ", "::"),
        (" < ", "<"),
        (" <", "<"),
        ("< ", "<"),
        (" >", ">"),
        (" ,", ","),
        ("& ", "&"),
    ] {
        name = name.replace(spaced, tight);
    }
    name
}

/// The user's item, then whatever could be generated, then every error as `compile_error!`.
///
/// The item is always kept so that one mistake doesn't turn into "cannot find type" errors
/// everywhere it is used.
pub(crate) fn finish(item: TokenStream, generated: TokenStream, errors: Errors) -> TokenStream {
    let mut out = item;
    out.extend(generated);
    out.extend(errors.into_compile_errors());
    out
}
