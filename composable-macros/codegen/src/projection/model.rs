//! A validated `#[projection]`: its name, store and version, the handlers, and the event enum's
//! variants.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;

use super::parse::{Handler, ProjectionArgs, ProjectionInput};
use crate::common::{self, Errors};
use crate::handler::{
    HandlerKind, ResultShape, check_plain_fn, reference_receiver, split_result, variant_of,
};

/// One projection, checked.
#[derive(Debug)]
pub(super) struct Projection {
    /// `::composable` or the `crate = path` given.
    pub(super) krate: syn::Path,
    /// The projection type, as written after `impl`.
    pub(super) self_ty: syn::Type,
    pub(super) vis: syn::Visibility,
    pub(super) name: syn::LitStr,
    pub(super) version: u32,
    /// `None` when missing (reported): no `Projection` impl is generated.
    pub(super) store: Option<syn::Type>,
    /// `Projection::Error`; `None` means `::core::convert::Infallible`.
    pub(super) error: Option<syn::Type>,
    pub(super) event_enum: syn::Ident,
    pub(super) handlers: Vec<Project>,
}

/// A `#[project]` handler and the event variant it serves.
#[derive(Debug)]
pub(super) struct Project {
    pub(super) method: syn::Ident,
    /// The variant of the event enum: the event type's last path segment.
    pub(super) variant: syn::Ident,
    /// The event type.
    pub(super) ty: syn::Type,
    /// The span of the batch parameter's type, where a batch of another store is reported.
    pub(super) batch: Span,
    /// It takes the event by reference.
    pub(super) by_ref: bool,
    /// It takes the envelope (`&RecordedEvent`) after the event.
    pub(super) envelope: bool,
    pub(super) is_async: bool,
    /// It returns a `Result`.
    pub(super) fallible: bool,
    /// The signature is wrong (and reported): the variant exists, but `apply` doesn't call it.
    pub(super) broken: bool,
}

impl Projection {
    /// Checks `input`, pushing every problem to `errors`. `None` only when there is no usable
    /// self type.
    pub(super) fn build(input: ProjectionInput, errors: &mut Errors) -> Option<Self> {
        let ProjectionInput { args, item, handlers } = input;
        let parsed_args = args.is_some();
        let args = args.unwrap_or_default();

        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.spanned(
                &item.generics,
                "a projection can't be generic: its read model and checkpoint are stored under \
                 one name; remove the generic parameters",
            );
            return None;
        }
        let self_ident = match &*item.self_ty {
            syn::Type::Path(path)
                if path.qself.is_none() && path.path.segments.last()?.arguments.is_none() =>
            {
                path.path.segments.last()?.ident.clone()
            }
            other => {
                errors.spanned(
                    other,
                    "`#[projection]` goes on the impl block of a named, non-generic type: \
                     `impl OrdersByCustomer { ... }`",
                );
                return None;
            }
        };
        let self_span = item.self_ty.span();

        let name = checked_name(&args, parsed_args, self_span, errors);
        let version = checked_version(&args, errors);
        if args.store.is_none() && parsed_args {
            errors.at(
                Span::call_site(),
                "missing `store`: name the read store this projection writes to, as in \
                 `#[projection(name = \"orders_by_customer\", store = InMemoryDocuments)]`",
            );
        }

        let mut checked: Vec<Project> = Vec::new();
        let mut error: Option<(syn::Type, syn::Ident)> = None;
        for handler in &handlers {
            let Some((mut project, handler_error)) = project(handler, args.error.is_some(), errors)
            else {
                continue;
            };
            if let Some(first) = checked.iter().find(|p| p.variant == project.variant) {
                errors.spanned(
                    &project.ty,
                    format!(
                        "`{}` is already handled by `{}`: each event is projected by exactly one \
                         `#[project]` method; merge the two",
                        project.variant, first.method,
                    ),
                );
                continue;
            }
            if let (None, Some(ty)) = (&args.error, handler_error) {
                match &error {
                    None => error = Some((ty, project.method.clone())),
                    Some((first, method)) if !same_type(first, &ty) => {
                        errors.spanned(
                            &ty,
                            format!(
                                "conflicting error types: `{method}` returns `{}` but this \
                                 handler returns `{}`; the handlers of a projection share one \
                                 error type, so use the same one, or set `error = ...` on \
                                 `#[projection]` to a type both convert into",
                                common::type_name(first),
                                common::type_name(&ty),
                            ),
                        );
                        project.broken = true;
                    }
                    Some(_) => {}
                }
            }
            checked.push(project);
        }
        if handlers.is_empty() {
            errors.at(
                self_span,
                format!(
                    "`{self_ident}` has no `#[project]` handler: add a method that applies an \
                     event to the read model, such as `#[project] fn placed(&self, batch: &mut \
                     DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError>`",
                ),
            );
        }

        let event_enum = args
            .event_enum
            .unwrap_or_else(|| syn::Ident::new(&format!("{self_ident}Event"), self_ident.span()));
        Some(Projection {
            krate: common::crate_path(args.krate),
            self_ty: *item.self_ty,
            vis: args
                .vis
                .unwrap_or_else(|| syn::Visibility::Public(syn::Token![pub](Span::call_site()))),
            name,
            version,
            store: args.store,
            error: args.error.or(error.map(|(ty, _)| ty)),
            event_enum,
            handlers: checked,
        })
    }
}

/// A projection's name names its checkpoint, its tables and its keys: `[a-z][a-z0-9_]*`, at
/// most 63 bytes (PostgreSQL's identifier limit).
fn checked_name(
    args: &ProjectionArgs,
    parsed_args: bool,
    self_span: Span,
    errors: &mut Errors,
) -> syn::LitStr {
    let Some(name) = &args.name else {
        if parsed_args {
            errors.at(
                Span::call_site(),
                "missing `name`: name the projection, as in \
                 `#[projection(name = \"orders_by_customer\", store = InMemoryDocuments)]`; it \
                 names its checkpoint, tables and keys, so never change it once it has run",
            );
        }
        return syn::LitStr::new("projection", self_span);
    };
    let value = name.value();
    let valid = value.len() <= 63
        && value.starts_with(|c: char| c.is_ascii_lowercase())
        && value.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        let mut suggestion: String = value
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' })
            .collect();
        if !suggestion.starts_with(|c: char| c.is_ascii_lowercase()) {
            suggestion.insert_str(0, "p_");
        }
        suggestion.truncate(63);
        errors.spanned(
            name,
            format!(
                "a projection's `name` is a lowercase identifier of at most 63 characters \
                 (`a-z`, `0-9`, `_`, starting with a letter): it names tables and keys; try \
                 `\"{suggestion}\"`"
            ),
        );
    }
    name.clone()
}

fn checked_version(args: &ProjectionArgs, errors: &mut Errors) -> u32 {
    let Some(version) = &args.version else { return 1 };
    match version.base10_parse::<u32>() {
        Ok(0) | Err(_) => {
            errors.spanned(
                version,
                "`version` is a whole number from 1: bump it when the read model's shape \
                 changes, and the new version is rebuilt beside the old one",
            );
            1
        }
        Ok(version) => version,
    }
}

fn same_type(a: &syn::Type, b: &syn::Type) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

const SHAPE: &str = "a projection handler takes `&self`, the store's batch, the event and \
                     optionally its envelope: `fn placed(&self, batch: &mut DocumentBatch, event: \
                     &OrderPlaced, envelope: &RecordedEvent)`";

/// Checks one handler; its error type, when it returns `Result<(), E>`.
fn project(
    handler: &Handler,
    error_given: bool,
    errors: &mut Errors,
) -> Option<(Project, Option<syn::Type>)> {
    let sig = &handler.sig;
    let method = &sig.ident;
    let mut ok = check_plain_fn(sig, HandlerKind::Project, errors);
    let mut inputs = sig.inputs.iter().peekable();

    let receiver = inputs.next_if(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    match reference_receiver(receiver) {
        Some(false) => {}
        Some(true) => {
            errors.spanned(
                receiver,
                "a projection handler takes `&self`: the read model lives in the store and is \
                 changed through the batch, so events replay the same way in every process",
            );
            ok = false;
        }
        None => {
            errors.at(receiver.map_or_else(|| sig.paren_token.span.join(), Spanned::span), SHAPE);
            ok = false;
        }
    }

    let typed: Vec<&syn::PatType> = inputs
        .filter_map(|arg| match arg {
            syn::FnArg::Typed(arg) => Some(arg),
            syn::FnArg::Receiver(_) => None,
        })
        .collect();
    let is_mut_ref =
        |ty: &syn::Type| matches!(ty, syn::Type::Reference(r) if r.mutability.is_some());
    let (batch, event, rest) = match typed.as_slice() {
        [] => {
            errors.at(sig.paren_token.span.join(), format!("`{method}` takes nothing: {SHAPE}"));
            return None;
        }
        [only] if is_mut_ref(&only.ty) => {
            errors.at(
                sig.paren_token.span.join(),
                format!(
                    "`{method}` is missing its event: after the batch, take the event, as in \
                     `event: &OrderPlaced`"
                ),
            );
            return None;
        }
        [only] => {
            errors.spanned(
                only,
                format!(
                    "`{method}` is missing the batch it writes to: take the store's batch before \
                     the event, as in `batch: &mut DocumentBatch, {}: {}`",
                    only.pat.to_token_stream(),
                    common::type_name(&only.ty),
                ),
            );
            return None;
        }
        [batch, event, rest @ ..] => (*batch, *event, rest),
    };

    let batch_span = match &*batch.ty {
        syn::Type::Reference(reference) if reference.mutability.is_some() => reference.elem.span(),
        other => {
            errors.spanned(
                other,
                format!(
                    "the batch is written to, so it is taken by mutable reference: `{}: &mut {}`",
                    batch.pat.to_token_stream(),
                    common::type_name(other),
                ),
            );
            ok = false;
            other.span()
        }
    };

    let (ty, by_ref) = match &*event.ty {
        syn::Type::Reference(reference) if reference.mutability.is_some() => {
            errors.spanned(
                reference,
                format!(
                    "events are facts and never change: take `{}: &{}` or `{0}: {1}`",
                    event.pat.to_token_stream(),
                    common::type_name(&reference.elem),
                ),
            );
            ok = false;
            ((*reference.elem).clone(), true)
        }
        syn::Type::Reference(reference) => ((*reference.elem).clone(), true),
        ty => (ty.clone(), false),
    };
    let Some(variant) = variant_of(&ty) else {
        errors.spanned(
            &ty,
            "an event must be a named struct or enum annotated with `#[event]`: its name becomes \
             a variant of the projection's event enum",
        );
        return None;
    };

    let envelope = match rest {
        [] => false,
        [envelope, extra @ ..] => {
            if !matches!(&*envelope.ty, syn::Type::Reference(r) if r.mutability.is_none()) {
                errors.spanned(
                    &envelope.ty,
                    format!(
                        "the envelope is read-only: take `{}: &RecordedEvent`",
                        envelope.pat.to_token_stream()
                    ),
                );
                ok = false;
            }
            for extra in extra {
                errors.spanned(
                    extra,
                    format!("{SHAPE}; remove this parameter: settings belong in `self`"),
                );
                ok = false;
            }
            true
        }
    };

    let mut error = None;
    let fallible = match &sig.output {
        syn::ReturnType::Default => false,
        syn::ReturnType::Type(_, ty) => match split_result(ty) {
            ResultShape::Plain if is_unit(ty) => false,
            ResultShape::Result(ok_ty, err) if is_unit(&ok_ty) => {
                error = Some(*err);
                true
            }
            ResultShape::ResultAlias(ok_ty) if is_unit(&ok_ty) && error_given => true,
            ResultShape::ResultAlias(ok_ty) if is_unit(&ok_ty) => {
                errors.spanned(
                    ty,
                    "the error type of this `Result` isn't visible to `#[projection]`: write \
                     `Result<(), MyError>`, or set `error = MyError` on `#[projection]`",
                );
                ok = false;
                true
            }
            _ => {
                errors.spanned(
                    ty,
                    "a projection handler returns nothing, or `Result<(), MyError>` when it can \
                     fail: what it produces is written to the batch",
                );
                ok = false;
                false
            }
        },
    };

    let project = Project {
        method: method.clone(),
        variant,
        ty,
        batch: batch_span,
        by_ref,
        envelope,
        is_async: sig.asyncness.is_some(),
        fallible,
        broken: !ok,
    };
    Some((project, error.filter(|_| ok)))
}

fn is_unit(ty: &syn::Type) -> bool {
    matches!(ty, syn::Type::Tuple(tuple) if tuple.elems.is_empty())
}
