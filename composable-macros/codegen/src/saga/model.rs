//! A validated `#[saga]`: its steps (event, correlation key, timeout, end), and the
//! compensations of the steps.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;

use super::parse::{Handler, SagaInput, StepArgs};
use crate::common::{self, Errors};
use crate::handler::{HandlerKind, check_plain_fn, reference_receiver, variant_of};

/// One saga, checked.
#[derive(Debug)]
pub(super) struct Saga {
    /// `::composable` or the `crate = path` given.
    pub(super) krate: syn::Path,
    pub(super) self_ty: syn::Type,
    pub(super) vis: syn::Visibility,
    pub(super) name: syn::LitStr,
    pub(super) event_enum: syn::Ident,
    pub(super) steps: Vec<Step>,
    pub(super) compensations: Vec<Compensation>,
    /// The aggregates its handlers dispatch to.
    pub(super) targets: super::targets::Targets,
}

/// A `#[start]` or `#[step]` handler.
#[derive(Debug)]
pub(super) struct Step {
    pub(super) method: syn::Ident,
    /// The variant of the event enum: the event type's last path segment.
    pub(super) variant: syn::Ident,
    pub(super) ty: syn::Type,
    /// The event's field holding the correlation key.
    pub(super) key: Option<syn::Ident>,
    pub(super) start: bool,
    pub(super) end: bool,
    /// `no_compensation` (where it is written): nothing to undo when a later step fails.
    pub(super) no_compensation: Option<Span>,
    /// The handler's attribute, where errors about the step as a whole are reported.
    pub(super) span: Span,
    pub(super) timeout_ms: Option<u64>,
    pub(super) on_timeout: Option<syn::Ident>,
    /// It takes the event's envelope (`&RecordedEvent`) after the event.
    pub(super) envelope: bool,
    /// The return type's span, where "can't return this" is reported.
    pub(super) output: Option<syn::Type>,
    /// The signature is wrong (and reported): the variant exists, but the handler isn't called.
    pub(super) broken: bool,
}

/// A `#[compensate(step)]` handler.
#[derive(Debug)]
pub(super) struct Compensation {
    pub(super) method: syn::Ident,
    /// The index of the step it undoes.
    pub(super) step: usize,
    pub(super) output: Option<syn::Type>,
}

impl Saga {
    /// Checks `input`, pushing every problem to `errors`; `None` only when there is no usable
    /// self type.
    pub(super) fn build(input: SagaInput, errors: &mut Errors) -> Option<Self> {
        let SagaInput { args, item, handlers } = input;
        let parsed_args = args.is_some();
        let args = args.unwrap_or_default();

        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.spanned(
                &item.generics,
                "a saga can't be generic: its instances are stored under one name; remove the \
                 generic parameters",
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
                    "`#[saga]` goes on the impl block of a named, non-generic state type: \
                     `impl Checkout { ... }`",
                );
                return None;
            }
        };
        let self_span = item.self_ty.span();
        let name = checked_name(&args.name, parsed_args, self_span, errors);

        let mut steps: Vec<Step> = Vec::new();
        let mut pending_compensations = Vec::new();
        for handler in &handlers {
            match handler.kind {
                HandlerKind::Start | HandlerKind::Step => {
                    let Some(step) = step(handler, args.key.as_ref(), parsed_args, errors) else {
                        continue;
                    };
                    if let Some(first) = steps.iter().find(|s| s.variant == step.variant) {
                        errors.spanned(
                            &step.ty,
                            format!(
                                "`{}` is already handled by step `{}`: each event moves a saga \
                                 through exactly one step; merge the two",
                                step.variant, first.method,
                            ),
                        );
                        continue;
                    }
                    steps.push(step);
                }
                HandlerKind::Compensate => pending_compensations.push(handler),
                HandlerKind::Command | HandlerKind::Apply | HandlerKind::Project => {}
            }
        }

        let wrote = |kind| handlers.iter().any(|h: &Handler| h.kind == kind);
        if !wrote(HandlerKind::Start) {
            errors.at(
                self_span,
                format!(
                    "`{self_ident}` has no `#[start]` handler: mark the step whose event starts an \
                     instance, such as `#[start] fn order_placed(&mut self, event: &OrderPlaced) \
                     -> Dispatch`"
                ),
            );
        }
        let ends =
            handlers.iter().any(|h| h.args.as_ref().is_some_and(|args| args.end.is_present()));
        if !ends && (wrote(HandlerKind::Start) || wrote(HandlerKind::Step)) {
            errors.at(
                self_span,
                format!(
                    "`{self_ident}` never ends: mark the step(s) that finish an instance with \
                     `#[step(end)]`"
                ),
            );
        }

        let mut compensations: Vec<Compensation> = Vec::new();
        let mut broken_compensations: Vec<usize> = Vec::new();
        let mut misnamed_compensation = false;
        for handler in pending_compensations {
            let Some(named) = &handler.compensates else {
                continue;
            };
            let Some(index) = steps.iter().position(|step| step.method == *named) else {
                // Which step it meant is unknown: the rule below would blame the wrong one.
                misnamed_compensation = true;
                let known: Vec<String> =
                    steps.iter().map(|step| format!("`{}`", step.method)).collect();
                errors.spanned(
                    named,
                    format!(
                        "there is no step `{named}` to compensate: the steps are {}",
                        if known.is_empty() { "none".to_owned() } else { known.join(", ") }
                    ),
                );
                continue;
            };
            if steps[index].end {
                errors.spanned(
                    named,
                    format!(
                        "`{named}` ends the saga, so nothing can fail after it and its \
                         compensation would never run: remove `#[compensate({named})]`"
                    ),
                );
                continue;
            }
            if let Some(first) = compensations.iter().find(|c| c.step == index) {
                errors.spanned(
                    named,
                    format!(
                        "step `{named}` is already compensated by `{}`: one compensation per \
                         step, returning every command it needs",
                        first.method
                    ),
                );
                continue;
            }
            match compensation(handler, errors) {
                Some(output) => compensations.push(Compensation {
                    method: handler.sig.ident.clone(),
                    step: index,
                    output,
                }),
                // Its signature is reported; the step is not reported again as uncompensated.
                None => broken_compensations.push(index),
            }
        }

        if !misnamed_compensation {
            check_compensated(&steps, &compensations, &broken_compensations, errors);
        }

        let targets = super::targets::targets(&item, &args.dispatches.0);
        Some(Saga {
            krate: common::crate_path(args.krate),
            self_ty: (*item.self_ty).clone(),
            vis: args.vis.unwrap_or_else(|| syn::parse_quote!(pub)),
            name,
            event_enum: args.event_enum.unwrap_or_else(|| {
                syn::Ident::new(&format!("{self_ident}Event"), self_ident.span())
            }),
            steps,
            compensations,
            targets,
        })
    }
}

/// Every step that other steps can follow either has a compensation or says it needs none: a
/// later failure must not leave what it did silently in place (a transfer that withdrew and
/// failed to deposit would keep the money).
fn check_compensated(
    steps: &[Step],
    compensations: &[Compensation],
    broken_compensations: &[usize],
    errors: &mut Errors,
) {
    for (index, step) in steps.iter().enumerate() {
        if step.broken || broken_compensations.contains(&index) {
            continue;
        }
        let method = &step.method;
        let attribute = if step.start { "start" } else { "step" };
        let compensated = compensations.iter().any(|compensation| compensation.step == index);
        if step.end {
            if let Some(marked) = step.no_compensation {
                errors.at(
                    marked,
                    format!(
                        "`{method}` ends the saga, so no later step can fail and there is nothing \
                         to compensate: remove `no_compensation`"
                    ),
                );
            }
        } else if let Some(marked) = step.no_compensation.filter(|_| compensated) {
            errors.at(
                marked,
                format!(
                    "`{method}` is marked `no_compensation` but has a `#[compensate({method})]`: \
                     remove one of the two"
                ),
            );
        } else if !compensated && step.no_compensation.is_none() {
            errors.at(
                step.span,
                format!(
                    "step `{method}` has no compensation: when a later step fails or times out, \
                     what its event recorded stays done. Undo it with `#[compensate({method})] \
                     fn undo_{method}(&self) -> Dispatch`, or, if there is nothing to undo, add \
                     `no_compensation` to its `#[{attribute}]` attribute"
                ),
            );
        }
    }
}

fn checked_name(
    name: &Option<syn::LitStr>,
    parsed_args: bool,
    self_span: Span,
    errors: &mut Errors,
) -> syn::LitStr {
    match name {
        Some(name) if name.value().is_empty() => {
            errors.spanned(name, "a saga's `name` can't be empty: it names the instances' streams");
            name.clone()
        }
        Some(name) if name.value().contains('-') => {
            errors.spanned(
                name,
                format!(
                    "a saga's `name` can't contain `-`: instances live in streams \
                     `saga.{{name}}-{{key}}`, split at the first `-`; try `{}`",
                    name.value().replace('-', "_")
                ),
            );
            name.clone()
        }
        Some(name) => name.clone(),
        None => {
            // Arguments that didn't parse were reported already.
            if parsed_args {
                errors.at(
                    self_span,
                    "`#[saga]` needs a name: `#[saga(name = \"checkout\", key = order_id)]`",
                );
            }
            syn::LitStr::new("saga", self_span)
        }
    }
}

/// `"250ms"`, `"30s"`, `"5m"`, `"2h"`, `"1d"` in milliseconds.
fn parse_duration(text: &str) -> Option<u64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    number.checked_mul(scale).filter(|ms| *ms > 0)
}

fn step(
    handler: &Handler,
    saga_key: Option<&syn::Ident>,
    saga_args_parsed: bool,
    errors: &mut Errors,
) -> Option<Step> {
    let sig = &handler.sig;
    let method = &sig.ident;
    let mut ok = check_plain_fn(sig, handler.kind, errors);
    let mut inputs = sig.inputs.iter().peekable();
    let receiver = inputs.next_if(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    if reference_receiver(receiver) != Some(true) {
        errors.at(
            receiver.map_or_else(|| sig.paren_token.span.join(), Spanned::span),
            format!(
                "a saga step is a method taking `&mut self` and then the event: \
                 `fn {method}(&mut self, event: &MyEvent) -> Dispatch`"
            ),
        );
        ok = false;
    }
    let event = match inputs.next() {
        Some(syn::FnArg::Typed(arg)) => match &*arg.ty {
            syn::Type::Reference(reference) if reference.mutability.is_none() => {
                match variant_of(&reference.elem) {
                    Some(variant) => Some(((*reference.elem).clone(), variant)),
                    None => {
                        errors.spanned(
                            &reference.elem,
                            "a saga handles named events annotated with `#[event]`: the name \
                             becomes a variant of the saga's event enum",
                        );
                        None
                    }
                }
            }
            ty => {
                errors.spanned(
                    ty,
                    format!(
                        "a saga step takes its event by shared reference: `{}: &{}`",
                        arg.pat.to_token_stream(),
                        common::type_name(match ty {
                            syn::Type::Reference(reference) => &reference.elem,
                            other => other,
                        }),
                    ),
                );
                ok = false;
                let elem = match ty {
                    syn::Type::Reference(reference) => &*reference.elem,
                    other => other,
                };
                variant_of(elem).map(|variant| (elem.clone(), variant))
            }
        },
        _ => {
            errors.at(
                sig.paren_token.span.join(),
                format!(
                    "`{method}` is missing its event: a saga step takes `&mut self` and then the \
                     event, as in `fn {method}(&mut self, event: &MyEvent) -> Dispatch`"
                ),
            );
            None
        }
    };
    let envelope = match inputs.next() {
        None => false,
        Some(syn::FnArg::Typed(arg)) => {
            let name = arg.pat.to_token_stream();
            match &*arg.ty {
                syn::Type::Reference(reference) if reference.mutability.is_none() => {}
                syn::Type::Reference(_) => {
                    errors.spanned(
                        &arg.ty,
                        format!("the envelope is read-only: take `{name}: &RecordedEvent`"),
                    );
                    ok = false;
                }
                other if variant_of(other).is_some_and(|ident| ident == "RecordedEvent") => {
                    errors.spanned(
                        other,
                        format!("take the envelope by reference: `{name}: &RecordedEvent`"),
                    );
                    ok = false;
                }
                other => {
                    errors.spanned(
                        other,
                        format!(
                            "after the event, a saga step takes only the event's envelope, \
                             `envelope: &RecordedEvent`: it is replayed to rebuild the saga, so \
                             it reads nothing else; remove `{name}`"
                        ),
                    );
                    ok = false;
                }
            }
            true
        }
        Some(receiver @ syn::FnArg::Receiver(_)) => {
            extra_parameter(receiver, errors);
            ok = false;
            false
        }
    };
    for extra in inputs {
        extra_parameter(extra, errors);
        ok = false;
    }
    let output = match &sig.output {
        syn::ReturnType::Default => None,
        syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
    };

    let args = handler.args.as_ref();
    let default_args = StepArgs::default();
    let args = args.unwrap_or(&default_args);
    // The saga's key, when the step has none of its own, is read from this step's event: a
    // missing field is this step's problem, so it is reported on the step's event type.
    let own_key = args.key.clone();
    // Without parsed arguments (reported already) the saga's key may simply have been lost.
    if own_key.is_none() && saga_key.is_none() && handler.args.is_some() && saga_args_parsed {
        errors.at(
            handler.span,
            format!(
                "step `{method}` has no way to correlate its event with a saga instance: name \
                 the event's field holding the key, `#[{}(key = order_id)]`, or set `key = ...` \
                 on `#[saga]` for every step",
                handler.kind.attribute()
            ),
        );
    }
    let end = args.end.is_present();
    let no_compensation = args.no_compensation.is_present().then(|| args.no_compensation.span());
    if end && handler.kind == HandlerKind::Start {
        errors.at(
            handler.span,
            "a saga can't end on the event that starts it: a one-step workflow needs no saga",
        );
    }
    let timeout_ms = args.timeout.as_ref().and_then(|timeout| {
        if end {
            errors.spanned(
                timeout,
                format!(
                    "`{method}` ends the saga, so there is no next event to wait for: remove \
                     `timeout`"
                ),
            );
            return None;
        }
        let parsed = parse_duration(&timeout.value());
        if parsed.is_none() {
            errors.spanned(
                timeout,
                "a timeout is a whole, positive number and a unit: `\"250ms\"`, `\"30s\"`, \
                 `\"5m\"`, `\"2h\"` or `\"1d\"`",
            );
        }
        parsed
    });
    if let Some(on_timeout) = &args.on_timeout
        && args.timeout.is_none()
    {
        errors.spanned(
            on_timeout,
            "`on_timeout` runs when the step's timeout fires: add `timeout = \"30s\"`",
        );
    }

    let (ty, variant) = event?;
    let key = own_key.or_else(|| {
        saga_key.map(|key| {
            let mut key = key.clone();
            key.set_span(ty.span());
            key
        })
    });
    Some(Step {
        method: method.clone(),
        variant,
        ty,
        key,
        start: handler.kind == HandlerKind::Start,
        end,
        no_compensation,
        span: handler.span,
        timeout_ms,
        on_timeout: args.on_timeout.clone().filter(|_| timeout_ms.is_some()),
        envelope,
        output,
        broken: !ok,
    })
}

fn extra_parameter(extra: &syn::FnArg, errors: &mut Errors) {
    errors.spanned(
        extra,
        "a saga step takes only `&mut self`, the event and, if it needs it, the event's \
         envelope (`envelope: &RecordedEvent`): it is replayed to rebuild the saga, so it \
         reads nothing else; remove this parameter",
    );
}

/// Checks a compensation's signature: `&self` and nothing else. `None` when it is wrong.
fn compensation(handler: &Handler, errors: &mut Errors) -> Option<Option<syn::Type>> {
    let sig = &handler.sig;
    let method = &sig.ident;
    let mut ok = check_plain_fn(sig, HandlerKind::Compensate, errors);
    let mut inputs = sig.inputs.iter().peekable();
    let receiver = inputs.next_if(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    if reference_receiver(receiver) != Some(false) {
        errors.at(
            receiver.map_or_else(|| sig.paren_token.span.join(), Spanned::span),
            format!(
                "a compensation reads the saga's state and returns the commands that undo a \
                 step: `fn {method}(&self) -> Dispatch`"
            ),
        );
        ok = false;
    }
    for extra in inputs {
        errors.spanned(
            extra,
            "a compensation takes only `&self`: what it needs to undo the step is in the saga's \
             state; remove this parameter",
        );
        ok = false;
    }
    let output = match &sig.output {
        syn::ReturnType::Default => None,
        syn::ReturnType::Type(_, ty) => Some((**ty).clone()),
    };
    ok.then_some(output)
}
