//! The aggregates a saga dispatches to: every `Dispatch::to::<A>` in the impl block's methods
//! (inside `vec![...]` and other macros whose arguments are expressions too), and the types
//! named in `dispatches(...)` for commands built elsewhere.
//!
//! The list becomes a constant of the `impl Saga` block, at module scope, so a type is taken
//! only when it means the same there: not one that names a generic parameter or `Self`, not one
//! that a `use` or an item inside the method brought into scope, and nothing in code behind
//! `#[cfg]`. Those targets are left to `dispatches(...)`.

use std::collections::{HashMap, HashSet};

use quote::ToTokens;
use syn::punctuated::Punctuated;
use syn::visit::Visit;

/// The aggregates a saga dispatches to, and which of them each method's commands go to.
#[derive(Debug, Default)]
pub(super) struct Targets {
    /// Each once, in the order they first appear: `dispatches(...)` first.
    pub(super) types: Vec<syn::Type>,
    /// Per method, the indices into `types` of the targets found in its body.
    by_method: HashMap<String, Vec<usize>>,
}

impl Targets {
    /// The indices into [`Targets::types`] of what `method` dispatches to, as far as its body
    /// shows (commands built in other functions are not followed).
    pub(super) fn of(&self, method: &syn::Ident) -> &[usize] {
        self.by_method.get(&method.to_string()).map_or(&[], Vec::as_slice)
    }
}

/// The target types, each once, in the order they first appear: `dispatches(...)` first.
pub(super) fn targets(item: &syn::ItemImpl, declared: &[syn::Path]) -> Targets {
    let mut found = Found::default();
    for path in declared {
        found.add(syn::parse_quote!(#path));
    }
    let mut by_method = HashMap::new();
    for impl_item in &item.items {
        let syn::ImplItem::Fn(method) = impl_item else {
            continue;
        };
        if is_conditional(&method.attrs) {
            continue;
        }
        let mut local = LocalNames::default();
        local.generics(&method.sig.generics);
        local.visit_block(&method.block);
        let mut finder = Finder { found: Vec::new() };
        finder.visit_block(&method.block);
        let mut indices = Vec::new();
        for ty in finder.found {
            if !local.names_any(&ty) {
                let index = found.add(ty);
                if !indices.contains(&index) {
                    indices.push(index);
                }
            }
        }
        by_method.insert(method.sig.ident.to_string(), indices);
    }
    Targets { types: found.types, by_method }
}

#[derive(Default)]
struct Found {
    types: Vec<syn::Type>,
    /// Each type's tokens, and its index in `types`.
    keys: HashMap<String, usize>,
}

impl Found {
    /// Adds `ty` unless it is there already; its index either way.
    fn add(&mut self, ty: syn::Type) -> usize {
        let key = ty.to_token_stream().to_string();
        if let Some(index) = self.keys.get(&key) {
            return *index;
        }
        self.keys.insert(key, self.types.len());
        self.types.push(ty);
        self.types.len() - 1
    }
}

/// `#[cfg(..)]` or `#[cfg_attr(..)]`: code that may not exist in every build.
fn is_conditional(attrs: &[syn::Attribute]) -> bool {
    attrs.iter().any(|attr| attr.path().is_ident("cfg") || attr.path().is_ident("cfg_attr"))
}

/// Names that mean something else inside a method than at module scope: generic parameters
/// (of the method and of functions nested in it), and what its `use` declarations and items
/// bring into scope.
#[derive(Default)]
struct LocalNames {
    names: HashSet<String>,
}

impl LocalNames {
    fn generics(&mut self, generics: &syn::Generics) {
        for param in generics.type_params() {
            self.names.insert(param.ident.to_string());
        }
    }

    fn use_tree(&mut self, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => self.use_tree(&path.tree),
            syn::UseTree::Name(name) => {
                self.names.insert(name.ident.to_string());
            }
            syn::UseTree::Rename(rename) => {
                self.names.insert(rename.rename.to_string());
            }
            syn::UseTree::Glob(_) => {
                // Anything may come from a glob: treat the method's types as local.
                self.names.insert("*".to_owned());
            }
            syn::UseTree::Group(group) => group.items.iter().for_each(|tree| self.use_tree(tree)),
        }
    }

    /// Whether `ty` mentions `Self` or a local name anywhere.
    fn names_any(&self, ty: &syn::Type) -> bool {
        if self.names.contains("*") {
            return true;
        }
        let mut idents = Idents(Vec::new());
        idents.visit_type(ty);
        idents.0.iter().any(|ident| ident == "Self" || self.names.contains(ident))
    }
}

impl<'ast> Visit<'ast> for LocalNames {
    fn visit_item(&mut self, item: &'ast syn::Item) {
        let ident = match item {
            syn::Item::Use(item) => {
                self.use_tree(&item.tree);
                None
            }
            syn::Item::Struct(item) => Some(&item.ident),
            syn::Item::Enum(item) => Some(&item.ident),
            syn::Item::Union(item) => Some(&item.ident),
            syn::Item::Type(item) => Some(&item.ident),
            syn::Item::Trait(item) => Some(&item.ident),
            syn::Item::Mod(item) => Some(&item.ident),
            syn::Item::Fn(item) => {
                self.generics(&item.sig.generics);
                Some(&item.sig.ident)
            }
            _ => None,
        };
        if let Some(ident) = ident {
            self.names.insert(ident.to_string());
        }
        syn::visit::visit_item(self, item);
    }

    fn visit_impl_item_fn(&mut self, method: &'ast syn::ImplItemFn) {
        self.generics(&method.sig.generics);
        syn::visit::visit_impl_item_fn(self, method);
    }
}

/// Every identifier in a type's paths.
struct Idents(Vec<String>);

impl<'ast> Visit<'ast> for Idents {
    fn visit_ident(&mut self, ident: &'ast proc_macro2::Ident) {
        self.0.push(ident.to_string());
    }
}

/// The `A` of every `Dispatch::to::<A>` outside conditional code and nested items.
struct Finder {
    found: Vec<syn::Type>,
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
                self.found.push(ty.clone());
            }
        }
        syn::visit::visit_path(self, path);
    }

    fn visit_stmt(&mut self, stmt: &'ast syn::Stmt) {
        let conditional = match stmt {
            syn::Stmt::Local(local) => is_conditional(&local.attrs),
            syn::Stmt::Macro(mac) => is_conditional(&mac.attrs),
            // A nested item has a scope of its own: its targets go in `dispatches(...)`.
            syn::Stmt::Item(_) => true,
            syn::Stmt::Expr(..) => false,
        };
        if !conditional {
            syn::visit::visit_stmt(self, stmt);
        }
    }

    fn visit_expr(&mut self, expr: &'ast syn::Expr) {
        let attrs: &[syn::Attribute] = match expr {
            syn::Expr::Block(expr) => &expr.attrs,
            syn::Expr::Call(expr) => &expr.attrs,
            syn::Expr::MethodCall(expr) => &expr.attrs,
            syn::Expr::Macro(expr) => &expr.attrs,
            syn::Expr::If(expr) => &expr.attrs,
            syn::Expr::Match(expr) => &expr.attrs,
            syn::Expr::Path(expr) => &expr.attrs,
            syn::Expr::Struct(expr) => &expr.attrs,
            syn::Expr::Array(expr) => &expr.attrs,
            syn::Expr::Tuple(expr) => &expr.attrs,
            _ => &[],
        };
        if !is_conditional(attrs) {
            syn::visit::visit_expr(self, expr);
        }
    }

    fn visit_arm(&mut self, arm: &'ast syn::Arm) {
        if !is_conditional(&arm.attrs) {
            syn::visit::visit_arm(self, arm);
        }
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
