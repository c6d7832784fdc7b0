//! A validated `#[aggregate]`: the handlers, the generated enums' variants, and the types the
//! `Aggregate` impl names.

use proc_macro2::Span;
use quote::ToTokens;
use syn::spanned::Spanned;

use super::parse::{AggregateArgs, AggregateInput, Handler};
use crate::common::{self, Errors};
use crate::handler::{
    HandlerKind, ResultShape, check_plain_fn, reference_receiver, split_result, variant_of,
};

/// One aggregate, checked.
#[derive(Debug)]
pub(super) struct Aggregate {
    /// `::composable` or the `crate = path` given.
    pub(super) krate: syn::Path,
    /// The state type, as written after `impl`.
    pub(super) self_ty: syn::Type,
    pub(super) vis: syn::Visibility,
    pub(super) stream: syn::LitStr,
    /// Present when the aggregate takes snapshots.
    pub(super) snapshot_every: Option<u64>,
    pub(super) snapshot_schema: u32,
    /// `Aggregate::Environment`; `None` means `()`.
    pub(super) environment: Option<syn::Type>,
    /// `Aggregate::Error`; `None` means `::core::convert::Infallible`.
    pub(super) error: Option<syn::Type>,
    pub(super) command_enum: syn::Ident,
    pub(super) event_enum: syn::Ident,
    pub(super) commands: Vec<Command>,
    pub(super) events: Vec<Apply>,
}

/// A `#[command]` handler and the command variant it serves.
#[derive(Debug)]
pub(super) struct Command {
    pub(super) method: syn::Ident,
    /// The variant of the command enum: the command type's last path segment.
    pub(super) variant: syn::Ident,
    /// The command type.
    pub(super) ty: syn::Type,
    /// The span of the handler's environment type, when it takes one.
    pub(super) env: Option<Span>,
    /// What the handler returns on success (`T` in `Result<T, E>`).
    pub(super) output: syn::Type,
    /// Whether the handler returns a `Result`.
    pub(super) fallible: bool,
    /// The signature is wrong (and reported): the variant exists, so code naming it still
    /// compiles, but `decide` doesn't call the handler.
    pub(super) broken: bool,
}

/// An `#[apply]` handler and the event variant it serves.
#[derive(Debug)]
pub(super) struct Apply {
    pub(super) method: syn::Ident,
    /// The variant of the event enum: the event type's last path segment.
    pub(super) variant: syn::Ident,
    /// The event type.
    pub(super) ty: syn::Type,
    /// The signature is wrong (and reported): the variant exists, but `apply` doesn't call the
    /// handler.
    pub(super) broken: bool,
}

/// A type some handler names, remembered to report a second, different one.
struct Seen {
    ty: syn::Type,
    method: syn::Ident,
}

impl Aggregate {
    /// Checks `input`, pushing every problem to `errors`. Handlers with a wrong signature are
    /// left out of the model (after their error is recorded) so the rest still expands and
    /// code using the generated enums keeps compiling; `None` only when there is no usable
    /// self type.
    pub(super) fn build(input: AggregateInput, errors: &mut Errors) -> Option<Self> {
        let AggregateInput { args, item, handlers } = input;
        // Arguments that didn't parse were reported; the defaults keep the rest checkable.
        let parsed_args = args.is_some();
        let args = args.unwrap_or_default();

        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.spanned(
                &item.generics,
                "an aggregate can't be generic: its events are stored under one stream name; \
                 remove the generic parameters",
            );
            return None;
        }
        let self_ident = match &*item.self_ty {
            syn::Type::Path(path) if path.qself.is_none() => {
                let last = path.path.segments.last()?;
                if !last.arguments.is_none() {
                    errors.spanned(
                        &last.arguments,
                        "an aggregate can't be generic: its events are stored under one stream \
                         name; remove the generic arguments",
                    );
                    return None;
                }
                last.ident.clone()
            }
            other => {
                errors.spanned(
                    other,
                    "`#[aggregate]` goes on the impl block of a named state type: \
                     `impl Order { ... }`",
                );
                return None;
            }
        };
        let self_span = item.self_ty.span();

        let stream = checked_stream(&args, parsed_args, self_span, errors);
        let (snapshot_every, snapshot_schema) = checked_snapshots(&args, errors);

        let wrote_commands = handlers.iter().any(|h| h.kind == HandlerKind::Command);
        let wrote_applies = handlers.iter().any(|h| h.kind == HandlerKind::Apply);
        let mut commands: Vec<Command> = Vec::new();
        let mut events: Vec<Apply> = Vec::new();
        let mut environment: Option<Seen> = None;
        let mut error: Option<Seen> = None;
        for handler in handlers {
            match handler.kind {
                HandlerKind::Command => {
                    let Some(mut checked) = command(&handler, args.error.is_some(), errors) else {
                        continue;
                    };
                    if let Some(first) =
                        commands.iter().find(|c| c.variant == checked.command.variant)
                    {
                        errors.spanned(
                            &checked.command.ty,
                            format!(
                                "`{}` already has a command handler, `{}`: each command is \
                                 decided by exactly one `#[command]` method (the command enum's \
                                 variants are named after the command types)",
                                checked.command.variant, first.method,
                            ),
                        );
                        continue;
                    }
                    if let (None, Some(env)) = (&args.env, &checked.env)
                        && !agree(&mut environment, env, &checked.command.method)
                    {
                        errors.push(conflict("environment", "env", &environment, env));
                        checked.command.broken = true;
                    }
                    if let (None, Some(err)) = (&args.error, &checked.error)
                        && !agree(&mut error, err, &checked.command.method)
                    {
                        errors.push(conflict("error", "error", &error, err));
                        checked.command.broken = true;
                    }
                    commands.push(checked.command);
                }
                HandlerKind::Apply => {
                    let Some(apply) = apply(&handler, errors) else {
                        continue;
                    };
                    if let Some(first) = events.iter().find(|e| e.variant == apply.variant) {
                        errors.spanned(
                            &apply.ty,
                            format!(
                                "`{}` is already applied by `{}`: each event is applied by \
                                 exactly one `#[apply]` method; merge the two",
                                apply.variant, first.method,
                            ),
                        );
                        continue;
                    }
                    events.push(apply);
                }
                // Only `#[command]` and `#[apply]` are collected from an aggregate.
                HandlerKind::Start
                | HandlerKind::Step
                | HandlerKind::Compensate
                | HandlerKind::Project => {}
            }
        }

        // A handler with a wrong signature was reported already: don't add "no handler".
        if !wrote_commands {
            errors.at(
                self_span,
                format!(
                    "`{self_ident}` has no `#[command]` handler: add a method that decides events \
                     from a command, such as `#[command] fn place(&self, command: PlaceOrder) -> \
                     Result<OrderPlaced, OrderError>`",
                ),
            );
        }
        if !wrote_applies {
            errors.at(
                self_span,
                format!(
                    "`{self_ident}` has no `#[apply]` handler: add a method that folds an event \
                     into the state, such as `#[apply] fn placed(&mut self, event: &OrderPlaced)`",
                ),
            );
        }

        let command_enum = args
            .command_enum
            .unwrap_or_else(|| syn::Ident::new(&format!("{self_ident}Command"), self_ident.span()));
        let event_enum = args
            .event_enum
            .unwrap_or_else(|| syn::Ident::new(&format!("{self_ident}Event"), self_ident.span()));
        if command_enum == event_enum {
            errors.spanned(
                &event_enum,
                format!("the command and event enums can't both be named `{event_enum}`"),
            );
        }

        Some(Aggregate {
            krate: common::crate_path(args.krate),
            self_ty: *item.self_ty,
            vis: args
                .vis
                .unwrap_or_else(|| syn::Visibility::Public(syn::Token![pub](Span::call_site()))),
            stream,
            snapshot_every,
            snapshot_schema,
            environment: args.env.or(environment.map(|seen| seen.ty)),
            error: args.error.or(error.map(|seen| seen.ty)),
            command_enum,
            event_enum,
            commands,
            events,
        })
    }
}

fn checked_stream(
    args: &AggregateArgs,
    parsed_args: bool,
    self_span: Span,
    errors: &mut Errors,
) -> syn::LitStr {
    match &args.stream {
        Some(stream) if stream.value().trim().is_empty() => {
            errors.spanned(
                stream,
                "the stream category can't be empty: it prefixes every stream id of this \
                 aggregate, as in `stream = \"order\"`",
            );
            stream.clone()
        }
        Some(stream) => stream.clone(),
        None if !parsed_args => syn::LitStr::new("", self_span),
        None => {
            errors.at(
                Span::call_site(),
                "missing `stream`: name the stream category of this aggregate, as in \
                 `#[aggregate(stream = \"order\")]`",
            );
            syn::LitStr::new("", self_span)
        }
    }
}

fn checked_snapshots(args: &AggregateArgs, errors: &mut Errors) -> (Option<u64>, u32) {
    let every = args.snapshot_every.as_ref().and_then(|every| match every.base10_parse::<u64>() {
        Ok(0) => {
            errors.spanned(
                every,
                "`snapshot_every = 0` would never take a snapshot: give a number of events \
                     such as `snapshot_every = 100`, or remove the key to take no snapshots",
            );
            None
        }
        Ok(every) => Some(every),
        Err(_) => {
            errors.spanned(
                every,
                "`snapshot_every` is a number of events, from 1 to 18446744073709551615",
            );
            None
        }
    });
    let schema = match &args.snapshot_schema {
        None => 1,
        Some(schema) => schema.base10_parse::<u32>().unwrap_or_else(|_| {
            errors.spanned(
                schema,
                "`snapshot_schema` is a whole number from 0 to 4294967295: bump it when the \
                 state's shape changes",
            );
            1
        }),
    };
    (every, schema)
}

/// Records the first type seen, or says whether `ty` is the same (token for token).
fn agree(seen: &mut Option<Seen>, ty: &syn::Type, method: &syn::Ident) -> bool {
    match seen {
        None => {
            *seen = Some(Seen { ty: ty.clone(), method: method.clone() });
            true
        }
        Some(first) => same_type(&first.ty, ty),
    }
}

fn same_type(a: &syn::Type, b: &syn::Type) -> bool {
    a.to_token_stream().to_string() == b.to_token_stream().to_string()
}

fn conflict(what: &str, key: &str, first: &Option<Seen>, ty: &syn::Type) -> syn::Error {
    let (first_ty, first_method) = match first {
        Some(first) => (common::type_name(&first.ty), first.method.to_string()),
        None => (String::new(), String::new()),
    };
    syn::Error::new_spanned(
        ty,
        format!(
            "conflicting {what} types: `{first_method}` uses `{first_ty}` but this handler uses \
             `{}`; the command handlers of an aggregate share one {what} type, so use the same \
             one, or set `{key} = ...` on `#[aggregate]` if these name the same type",
            common::type_name(ty),
        ),
    )
}

/// What a command handler's signature says, besides the command itself.
struct CheckedCommand {
    command: Command,
    /// The environment type it takes (behind the reference).
    env: Option<syn::Type>,
    /// The error type of its `Result`.
    error: Option<syn::Type>,
}

fn command(handler: &Handler, error_given: bool, errors: &mut Errors) -> Option<CheckedCommand> {
    let sig = &handler.sig;
    let method = &sig.ident;
    let mut ok = check_plain_fn(sig, HandlerKind::Command, errors);
    let mut inputs = sig.inputs.iter().peekable();

    // Without a receiver, the first parameter is still read as the command or event.
    let receiver = inputs.next_if(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    match reference_receiver(receiver) {
        Some(false) => {}
        Some(true) => {
            errors.spanned(
                receiver,
                "a command handler only reads the state: take `&self`, and change the state in \
                 an `#[apply]` handler of the event it returns",
            );
            ok = false;
        }
        None => {
            errors.at(
                receiver.map_or_else(|| sig.paren_token.span.join(), Spanned::span),
                format!(
                    "a command handler is a method taking `&self` and then the command: \
                     `fn {method}(&self, command: MyCommand) -> ...`"
                ),
            );
            ok = false;
        }
    }

    let command =
        match inputs.next() {
            Some(syn::FnArg::Typed(arg)) => match (&*arg.ty, variant_of(&arg.ty)) {
                (syn::Type::Reference(reference), _) => {
                    errors.spanned(
                        reference,
                        format!(
                            "a command handler takes its command by value: `{}: {}`",
                            arg.pat.to_token_stream(),
                            common::type_name(&reference.elem),
                        ),
                    );
                    None
                }
                (ty, Some(variant)) => Some((ty.clone(), variant)),
                (ty, None) => {
                    errors.spanned(ty,
                    "a command must be a named struct or enum: its name becomes a variant of the \
                     command enum",
                );
                    None
                }
            },
            _ => {
                errors.at(sig.paren_token.span.join(),
                format!(
                    "`{method}` is missing its command: a command handler takes `&self` and then \
                     the command, as in `fn {method}(&self, command: MyCommand) -> ...`"
                ),
            );
                None
            }
        };

    let env = match inputs.next() {
        None => None,
        Some(syn::FnArg::Typed(arg)) => match &*arg.ty {
            syn::Type::Reference(reference) if reference.mutability.is_none() => {
                Some((*reference.elem).clone())
            }
            syn::Type::Reference(reference) => {
                errors.spanned(
                    reference,
                    format!(
                        "the environment is shared and read-only: take `{}: &{}`",
                        arg.pat.to_token_stream(),
                        common::type_name(&reference.elem),
                    ),
                );
                ok = false;
                None
            }
            ty => {
                errors.spanned(
                    ty,
                    format!(
                        "the environment is passed by reference: take `{}: &{}`",
                        arg.pat.to_token_stream(),
                        common::type_name(ty),
                    ),
                );
                ok = false;
                None
            }
        },
        Some(other) => {
            errors.spanned(other, "unexpected receiver");
            ok = false;
            None
        }
    };
    for extra in inputs {
        errors.spanned(
            extra,
            "a command handler takes `&self`, the command and optionally the environment \
             (`env: &MyEnv`): remove this parameter",
        );
        ok = false;
    }

    let (output, error) = match &sig.output {
        syn::ReturnType::Default => {
            ok = false;
            errors.at(
                sig.paren_token.span.close(),
                format!(
                    "`{method}` must return the events it decides: add a return type such as \
                     `-> Result<MyEvent, MyError>`, or `-> MyEvent` when it can't fail"
                ),
            );
            (unit(), None)
        }
        syn::ReturnType::Type(_, ty) => match split_result(ty) {
            ResultShape::Plain => ((**ty).clone(), None),
            ResultShape::Result(ok, err) => (*ok, Some(Some(*err))),
            ResultShape::ResultAlias(ok) if error_given => (*ok, Some(None)),
            ResultShape::ResultAlias(ok_ty) => {
                errors.spanned(
                    ty,
                    "the error type of this `Result` isn't visible to `#[aggregate]`: write \
                     `Result<T, MyError>`, or set `error = MyError` on `#[aggregate]`",
                );
                ok = false;
                (*ok_ty, None)
            }
        },
    };

    let (ty, variant) = command?;
    Some(CheckedCommand {
        command: Command {
            method: method.clone(),
            variant,
            ty,
            env: env.as_ref().map(Spanned::span),
            output,
            fallible: error.is_some(),
            broken: !ok,
        },
        env: env.filter(|_| ok),
        error: error.flatten().filter(|_| ok),
    })
}

fn unit() -> syn::Type {
    syn::Type::Tuple(syn::TypeTuple {
        attrs: Vec::new(),
        paren_token: Default::default(),
        elems: Default::default(),
    })
}

fn apply(handler: &Handler, errors: &mut Errors) -> Option<Apply> {
    let sig = &handler.sig;
    let method = &sig.ident;
    let mut ok = check_plain_fn(sig, HandlerKind::Apply, errors);
    let mut inputs = sig.inputs.iter().peekable();

    // Without a receiver, the first parameter is still read as the command or event.
    let receiver = inputs.next_if(|arg| matches!(arg, syn::FnArg::Receiver(_)));
    match reference_receiver(receiver) {
        Some(true) => {}
        Some(false) => {
            errors.spanned(
                receiver,
                "an apply handler folds the event into the state: take `&mut self`",
            );
            ok = false;
        }
        None => {
            errors.at(
                receiver.map_or_else(|| sig.paren_token.span.join(), Spanned::span),
                format!(
                    "an apply handler is a method taking `&mut self` and then the event: \
                     `fn {method}(&mut self, event: &MyEvent)`"
                ),
            );
            ok = false;
        }
    }

    let event =
        match inputs.next() {
            Some(syn::FnArg::Typed(arg)) => match &*arg.ty {
                syn::Type::Reference(reference) if reference.mutability.is_none() => {
                    match variant_of(&reference.elem) {
                        Some(variant) => Some(((*reference.elem).clone(), variant)),
                        None => {
                            errors.spanned(&reference.elem,
                            "an event must be a named struct or enum annotated with `#[event]`: \
                             its name becomes a variant of the event enum",
                        );
                            None
                        }
                    }
                }
                syn::Type::Reference(reference) => {
                    errors.spanned(
                        reference,
                        format!(
                            "events are facts and never change: take `{}: &{}`",
                            arg.pat.to_token_stream(),
                            common::type_name(&reference.elem),
                        ),
                    );
                    ok = false;
                    variant_of(&reference.elem).map(|variant| ((*reference.elem).clone(), variant))
                }
                ty => {
                    errors.spanned(
                        ty,
                        format!(
                            "an apply handler takes its event by reference: `{}: &{}`",
                            arg.pat.to_token_stream(),
                            common::type_name(ty),
                        ),
                    );
                    ok = false;
                    variant_of(ty).map(|variant| (ty.clone(), variant))
                }
            },
            _ => {
                errors.at(sig.paren_token.span.join(),
                format!(
                    "`{method}` is missing its event: an apply handler takes `&mut self` and then \
                     the event, as in `fn {method}(&mut self, event: &MyEvent)`"
                ),
            );
                None
            }
        };
    for extra in inputs {
        errors.spanned(
            extra,
            "an apply handler takes only `&mut self` and the event: it reads nothing else, so \
             replaying events always rebuilds the same state; remove this parameter",
        );
        ok = false;
    }
    if let syn::ReturnType::Type(_, ty) = &sig.output {
        let unit = matches!(&**ty, syn::Type::Tuple(tuple) if tuple.elems.is_empty());
        if !unit {
            errors.spanned(
                ty,
                "an apply handler returns nothing: it only folds the event into the state, and \
                 applying can't fail (refuse in the `#[command]` handler instead); remove the \
                 return type",
            );
            ok = false;
        }
    }

    let (ty, variant) = event?;
    Some(Apply { method: method.clone(), variant, ty, broken: !ok })
}
