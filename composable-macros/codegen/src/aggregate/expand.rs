//! Tokens for a checked `#[aggregate]`: the only place this module uses `quote!`.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::model::{Aggregate, Apply, Command};

pub(super) fn expand(aggregate: &Aggregate) -> TokenStream {
    let krate = &aggregate.krate;
    let rt = quote!(#krate::__private);
    let commands = command_enum(aggregate, &rt);
    let command_codec = command_codec(aggregate, &rt);
    let events = event_enum(aggregate, &rt);
    let event_set = event_set(aggregate, &rt);
    let aggregate_impl = aggregate_impl(aggregate, &rt);
    quote! {
        #commands
        #command_codec
        #events
        #event_set
        #aggregate_impl
    }
}

fn self_name(aggregate: &Aggregate) -> String {
    quote::ToTokens::to_token_stream(&aggregate.self_ty).to_string().replace(' ', "")
}

fn command_enum(aggregate: &Aggregate, _rt: &TokenStream) -> TokenStream {
    let Aggregate { vis, command_enum, commands, .. } = aggregate;
    let self_name = self_name(aggregate);
    let doc = format!(" The commands of [`{self_name}`], one variant per `#[command]` handler.");
    let variants = commands.iter().map(|Command { method, variant, ty, .. }| {
        let doc = format!(" Decided by `{self_name}::{method}`.");
        quote! {
            #[doc = #doc]
            #variant(#ty)
        }
    });
    let froms = commands.iter().map(|Command { variant, ty, .. }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #command_enum {
                fn from(command: #ty) -> Self {
                    Self::#variant(command)
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #vis enum #command_enum {
            #(#variants,)*
        }

        #(#froms)*
    }
}

/// `CommandCodec` for every codec under which each command type is serialisable. The bounds
/// name the codec parameter, so they are checked where the impl is used (routing the aggregate
/// through the bus), not here: commands that aren't serde types stay legal in process.
/// `Command::Variant(_) => "Variant"` for every command: its name on the wire and in traces.
fn command_name_arms(aggregate: &Aggregate) -> Vec<TokenStream> {
    let Aggregate { command_enum, commands, .. } = aggregate;
    commands
        .iter()
        .map(|Command { variant, .. }| {
            let name = variant.to_string();
            quote!(#command_enum::#variant(_) => #name)
        })
        .collect()
}

fn command_codec(aggregate: &Aggregate, rt: &TokenStream) -> TokenStream {
    let Aggregate { command_enum, commands, .. } = aggregate;
    let names: Vec<String> =
        commands.iter().map(|Command { variant, .. }| variant.to_string()).collect();
    let bounds = commands.iter().map(|Command { ty, .. }| {
        // Spanned on the command type: a command that can't be serialised is reported there.
        quote_spanned!(ty.span()=> #ty: #rt::WireCommand<__C>)
    });
    let name_arms = command_name_arms(aggregate);
    let encode_arms = commands.iter().map(|Command { variant, ty, .. }| {
        quote!(#command_enum::#variant(ref command) => <#ty as #rt::WireCommand<__C>>::encode_command(command, codec))
    });
    let decode_arms = commands.iter().zip(&names).map(|(Command { variant, ty, .. }, name)| {
        quote! {
            #name => ::core::result::Result::map(
                <#ty as #rt::WireCommand<__C>>::decode_command(codec, #name, bytes),
                #command_enum::#variant,
            )
        }
    });
    quote! {
        #[automatically_derived]
        impl<__C: #rt::Codec> #rt::CommandCodec<__C> for #command_enum
        where
            #(#bounds,)*
        {
            const NAMES: &'static [&'static ::core::primitive::str] = &[#(#names),*];

            fn command_name(&self) -> &'static ::core::primitive::str {
                match *self {
                    #(#name_arms,)*
                }
            }

            fn encode(
                &self,
                codec: &__C,
            ) -> ::core::result::Result<#rt::Vec<::core::primitive::u8>, #rt::CodecError> {
                match *self {
                    #(#encode_arms,)*
                }
            }

            fn decode(
                codec: &__C,
                name: &::core::primitive::str,
                bytes: &[::core::primitive::u8],
            ) -> ::core::result::Result<Self, #rt::CommandDecodeError> {
                match name {
                    #(#decode_arms,)*
                    _ => ::core::result::Result::Err(#rt::CommandDecodeError::UnknownCommand {
                        name: <#rt::String as ::core::convert::From<&::core::primitive::str>>::from(name),
                        expected: <Self as #rt::CommandCodec<__C>>::NAMES,
                    }),
                }
            }
        }
    }
}

fn event_enum(aggregate: &Aggregate, rt: &TokenStream) -> TokenStream {
    let Aggregate { vis, event_enum, events, .. } = aggregate;
    let self_name = self_name(aggregate);
    let doc = format!(" The events of [`{self_name}`], one variant per `#[apply]` handler.");
    let variants = events.iter().map(|Apply { method, variant, ty, .. }| {
        let doc = format!(" Applied by `{self_name}::{method}`.");
        quote! {
            #[doc = #doc]
            #variant(#ty)
        }
    });
    let conversions = events.iter().map(|Apply { variant, ty, .. }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #event_enum {
                fn from(event: #ty) -> Self {
                    Self::#variant(event)
                }
            }

            #[automatically_derived]
            impl #rt::IntoEvents<#event_enum> for #ty {
                fn into_events(self) -> #rt::Vec<#event_enum> {
                    <#rt::Vec<#event_enum> as ::core::convert::From<[#event_enum; 1]>>::from([
                        #event_enum::#variant(self),
                    ])
                }
            }
        }
    });
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #vis enum #event_enum {
            #(#variants,)*
        }

        #(#conversions)*
    }
}

fn event_set(aggregate: &Aggregate, rt: &TokenStream) -> TokenStream {
    let events: Vec<(&syn::Ident, &syn::Type)> =
        aggregate.events.iter().map(|Apply { variant, ty, .. }| (variant, ty)).collect();
    crate::event_set::expand(&aggregate.event_enum, &events, "an aggregate", rt)
}

fn aggregate_impl(aggregate: &Aggregate, rt: &TokenStream) -> TokenStream {
    let Aggregate {
        self_ty,
        stream,
        snapshot_every,
        snapshot_schema,
        environment,
        error,
        command_enum,
        event_enum,
        commands,
        events,
        ..
    } = aggregate;

    let snapshot_every_value = match snapshot_every {
        Some(every) => {
            let every = Literal::u64_unsuffixed(*every);
            quote!(::core::num::NonZeroU64::new(#every))
        }
        None => quote!(::core::option::Option::None),
    };
    let snapshot_schema = Literal::u32_unsuffixed(*snapshot_schema);
    let environment = match environment {
        Some(environment) => quote!(#environment),
        None => quote!(()),
    };
    let error = match error {
        Some(error) => quote!(#error),
        None => quote!(::core::convert::Infallible),
    };

    let command_name_arms = command_name_arms(aggregate);
    let takes_env = commands.iter().any(|command| command.env.is_some());
    let env_param = if takes_env { quote!(env) } else { quote!(_env) };
    let decide_arms =
        commands.iter().map(|command| decide_arm(command, command_enum, event_enum, rt));
    let apply_arms = events.iter().map(|apply| {
        let Apply { method, variant, .. } = apply;
        if apply.broken {
            // Reported already; the arm only keeps the match complete.
            quote!(#event_enum::#variant(_) => {})
        } else {
            quote!(#event_enum::#variant(ref event) => Self::#method(self, event))
        }
    });

    let snapshots = match snapshot_every {
        // Spanned on the state type: a state that can't be serialised is reported there.
        Some(_) => {
            let encode = quote_spanned! {self_ty.span()=>
                <#self_ty as #rt::SnapshotState>::encode_snapshot::<__C>(self, codec)
            };
            let decode = quote_spanned! {self_ty.span()=>
                <#self_ty as #rt::SnapshotState>::decode_snapshot::<__C>(codec, bytes)
            };
            quote! {
                fn encode_snapshot<__C: #rt::Codec>(
                    &self,
                    codec: &__C,
                ) -> ::core::option::Option<
                    ::core::result::Result<#rt::Vec<::core::primitive::u8>, #rt::CodecError>,
                > {
                    ::core::option::Option::Some(#encode)
                }

                fn decode_snapshot<__C: #rt::Codec>(
                    codec: &__C,
                    bytes: &[::core::primitive::u8],
                ) -> ::core::option::Option<::core::result::Result<Self, #rt::CodecError>> {
                    ::core::option::Option::Some(#decode)
                }
            }
        }
        None => quote! {
            fn encode_snapshot<__C: #rt::Codec>(
                &self,
                _codec: &__C,
            ) -> ::core::option::Option<
                ::core::result::Result<#rt::Vec<::core::primitive::u8>, #rt::CodecError>,
            > {
                ::core::option::Option::None
            }

            fn decode_snapshot<__C: #rt::Codec>(
                _codec: &__C,
                _bytes: &[::core::primitive::u8],
            ) -> ::core::option::Option<::core::result::Result<Self, #rt::CodecError>> {
                ::core::option::Option::None
            }
        },
    };

    quote! {
        #[automatically_derived]
        impl #rt::Aggregate for #self_ty {
            const STREAM: &'static ::core::primitive::str = #stream;
            const SNAPSHOT_EVERY: ::core::option::Option<::core::num::NonZeroU64> =
                #snapshot_every_value;
            const SNAPSHOT_SCHEMA: ::core::primitive::u32 = #snapshot_schema;

            type Command = #command_enum;
            type Event = #event_enum;
            type Error = #error;
            type Environment = #environment;

            fn decide(
                &self,
                command: Self::Command,
                #env_param: &Self::Environment,
            ) -> ::core::result::Result<#rt::Vec<Self::Event>, Self::Error> {
                match command {
                    #(#decide_arms)*
                }
            }

            fn apply(&mut self, event: &Self::Event) {
                match *event {
                    #(#apply_arms,)*
                }
            }

            fn command_name(command: &Self::Command) -> &'static ::core::primitive::str {
                match *command {
                    #(#command_name_arms,)*
                }
            }

            #snapshots
        }
    }
}

/// One arm of `decide`: call the handler, turn its output into events, convert its error.
fn decide_arm(
    command: &Command,
    command_enum: &syn::Ident,
    event_enum: &syn::Ident,
    rt: &TokenStream,
) -> TokenStream {
    let Command { method, variant, env, output, fallible, broken, .. } = command;
    if *broken {
        // Reported already; the arm only keeps the match complete.
        return quote! {
            #command_enum::#variant(_) => ::core::panic!("this command handler has a compile error"),
        };
    }
    // The environment argument carries the span of the handler's parameter type, so a handler
    // whose environment differs from `env = ...` is reported there.
    let env_arg = env.map(|span| quote_spanned!(span=> , env));
    let call = quote!(Self::#method(self, command #env_arg));
    // Spanned on the handler's return type: returning something that isn't an event of this
    // aggregate (an event without `#[apply]`) is reported there.
    let into_events = |events: TokenStream| match output {
        syn::Type::ImplTrait(_) => quote_spanned! {output.span()=>
            #rt::IntoEvents::<#event_enum>::into_events(#events)
        },
        _ => quote_spanned! {output.span()=>
            <#output as #rt::IntoEvents<#event_enum>>::into_events(#events)
        },
    };
    if *fallible {
        let events = into_events(quote!(events));
        quote! {
            #command_enum::#variant(command) => match #call {
                ::core::result::Result::Ok(events) => ::core::result::Result::Ok(#events),
                ::core::result::Result::Err(error) => {
                    ::core::result::Result::Err(::core::convert::From::from(error))
                }
            },
        }
    } else {
        let events = into_events(call);
        quote! {
            #command_enum::#variant(command) => ::core::result::Result::Ok(#events),
        }
    }
}
