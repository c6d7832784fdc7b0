//! The aggregates a saga dispatches to: every `Dispatch::to::<A>` in the impl block's methods
//! (inside `vec![...]` and other macros whose arguments are expressions too), and the types
//! named in `dispatches(...)` for commands built elsewhere.

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;

/// The target types, each once, in the order they first appear: `dispatches(...)` first.
pub(super) fn targets(item: &syn::ItemImpl, declared: &[syn::Path]) -> Vec<syn::Type> {
    let mut finder = Finder { found: Vec::new(), generics: Vec::new() };
    for path in declared {
        finder.add(syn::parse_quote!(#path));
    }
    for impl_item in &item.items {
        if let syn::ImplItem::Fn(method) = impl_item {
            // `Dispatch::to::<A>` with the method's own parameter `A` names no one aggregate.
            finder.generics =
                method.sig.generics.type_params().map(|param| param.ident.clone()).collect();
            finder.visit_block(&method.block);
        }
    }
    finder.found
}

struct Finder {
    found: Vec<syn::Type>,
    generics: Vec<syn::Ident>,
}

impl Finder {
    fn add(&mut self, ty: syn::Type) {
        if let syn::Type::Path(path) = &ty
            && let Some(ident) = path.path.get_ident()
            && self.generics.contains(ident)
        {
            return;
        }
        let key = ty.to_token_stream().to_string();
        if !self.found.iter().any(|known| known.to_token_stream().to_string() == key) {
            self.found.push(ty);
        }
    }
}

impl<'ast> Visit<'ast> for Finder {
    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<&syn::PathSegment> = path.segments.iter().collect();
        for pair in segments.windows(2) {
            let [dispatch, to] = pair else { continue };
            if dispatch.ident != "Dispatch" || to.ident != "to" {
                continue;
            }
            if let syn::PathArguments::AngleBracketed(arguments) = &to.arguments
                && let Some(syn::GenericArgument::Type(ty)) = arguments.args.first()
            {
                self.add(ty.clone());
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_macro(&mut self, mac: &'ast syn::Macro) {
        // `vec![a, b]`, `Some(..)` inside `matches!`, ...: look inside when the tokens read as
        // expressions; other macros' arguments stay opaque (name those targets in
        // `dispatches(...)`).
        if let Ok(exprs) =
            mac.parse_body_with(Punctuated::<syn::Expr, syn::Token![,]>::parse_terminated)
        {
            for expr in &exprs {
                self.visit_expr(expr);
            }
        } else if let Ok(exprs) =
            mac.parse_body_with(Punctuated::<syn::Expr, syn::Token![;]>::parse_terminated)
        {
            for expr in &exprs {
                self.visit_expr(expr);
            }
        }
    }
}
