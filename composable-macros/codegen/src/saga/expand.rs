//! Tokens for a checked `#[saga]`: the only place this module uses `quote!`.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::model::{Saga, Step};

pub(super) fn expand(saga: &Saga) -> TokenStream {
    let krate = &saga.krate;
    let rt = quote!(#krate::__private);
    let event_enum = event_enum(saga, &rt);
    let saga_impl = saga_impl(saga, &rt);
    quote! {
        #event_enum
        #saga_impl
    }
}

fn event_enum(saga: &Saga, rt: &TokenStream) -> TokenStream {
    let Saga { vis, event_enum, steps, .. } = saga;
    let self_name = quote::ToTokens::to_token_stream(&saga.self_ty).to_string().replace(' ', "");
    let doc = format!(" The events [`{self_name}`] handles, one variant per step.");
    let variants = steps.iter().map(|Step { method, variant, ty, .. }| {
        let doc = format!(" Handled by `{self_name}::{method}`.");
        quote! {
            #[doc = #doc]
            #variant(#ty)
        }
    });
    let froms = steps.iter().map(|Step { variant, ty, .. }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #event_enum {
                fn from(event: #ty) -> Self {
                    Self::#variant(event)
                }
            }
        }
    });
    let events: Vec<(&syn::Ident, &syn::Type)> =
        steps.iter().map(|Step { variant, ty, .. }| (variant, ty)).collect();
    let event_set = crate::event_set::expand(event_enum, &events, "a saga", rt);
    quote! {
        #[doc = #doc]
        #[derive(::core::fmt::Debug, ::core::clone::Clone, ::core::cmp::PartialEq)]
        #vis enum #event_enum {
            #(#variants,)*
        }

        #(#froms)*

        #event_set
    }
}

fn saga_impl(saga: &Saga, rt: &TokenStream) -> TokenStream {
    let Saga { self_ty, name, event_enum, steps, compensations, targets, .. } = saga;

    // What the diagram shows of each step: its event, the aggregates its handlers dispatch to
    // (indices into `DISPATCHES`, so an aggregate is checked once), its timeout handler and its
    // compensation.
    let dispatches_of = |method: &syn::Ident| {
        let indices = targets.of(method).iter().map(|index| Literal::usize_unsuffixed(*index));
        quote!(&[#(<Self as #rt::Saga>::DISPATCHES[#indices]),*])
    };
    let action = |method: Option<&syn::Ident>| match method {
        Some(method) => {
            let name = method.to_string();
            let dispatches = dispatches_of(method);
            quote! {
                ::core::option::Option::Some(#rt::SagaAction { name: #name, dispatches: #dispatches })
            }
        }
        None => quote!(::core::option::Option::None),
    };
    let step_infos = steps.iter().enumerate().map(|(index, step)| {
        let name = step.method.to_string();
        let (start, end) = (step.start, step.end);
        let event = Literal::usize_unsuffixed(index);
        let timeout = match step.timeout_ms {
            Some(ms) => {
                let ms = Literal::u64_unsuffixed(ms);
                quote!(::core::option::Option::Some(::core::time::Duration::from_millis(#ms)))
            }
            None => quote!(::core::option::Option::None),
        };
        let dispatches = dispatches_of(&step.method);
        let reads_envelope = step.envelope;
        let on_timeout = action(step.on_timeout.as_ref());
        let compensation = action(
            compensations
                .iter()
                .find(|compensation| compensation.step == index)
                .map(|compensation| &compensation.method),
        );
        quote! {
            #rt::SagaStep {
                name: #name,
                event: <#event_enum as #rt::EventSet>::NAMES[#event],
                start: #start,
                end: #end,
                timeout: #timeout,
                reads_envelope: #reads_envelope,
                dispatches: #dispatches,
                on_timeout: #on_timeout,
                compensation: #compensation,
            }
        }
    });
    let step_arms = steps.iter().enumerate().map(|(index, Step { variant, .. })| {
        let index = Literal::usize_unsuffixed(index);
        quote!(#event_enum::#variant(_) => #index)
    });
    let key_arms = steps.iter().map(|Step { variant, key, .. }| match key {
        // Spanned on the key: a missing field, or one that isn't `Display`, is reported there.
        Some(key) => {
            let read = quote_spanned!(key.span()=> #rt::saga_key(&event.#key));
            quote!(#event_enum::#variant(ref event) => #read)
        }
        // Reported already; the arm only keeps the match complete.
        None => quote!(#event_enum::#variant(_) => #rt::String::new()),
    });
    let handle_arms = steps.iter().map(|step| {
        let Step { method, variant, output, broken, envelope, .. } = step;
        if *broken {
            return quote! {
                #event_enum::#variant(_) => ::core::panic!("this saga step has a compile error"),
            };
        }
        let call = if *envelope {
            quote!(Self::#method(self, event, envelope))
        } else {
            quote!(Self::#method(self, event))
        };
        // Spanned on the return type: a type that isn't a reaction is reported there.
        let react = match output {
            Some(output) => quote_spanned! {output.span()=>
                <#output as #rt::IntoReaction>::into_reaction(#call)
            },
            None => quote!(#rt::IntoReaction::into_reaction(#call)),
        };
        if *envelope {
            let missing = format!("step `{method}` reads its event's envelope, and none was given");
            quote! {
                #event_enum::#variant(ref event) => match envelope {
                    ::core::option::Option::Some(envelope) => #react,
                    ::core::option::Option::None => ::core::result::Result::Err(#rt::String::from(#missing)),
                },
            }
        } else {
            quote!(#event_enum::#variant(ref event) => #react,)
        }
    });
    let reads_envelope = steps.iter().any(|step| step.envelope);
    let envelope_param = if reads_envelope { quote!(envelope) } else { quote!(_envelope) };
    let compensate_arms = compensations.iter().map(|compensation| {
        let (method, index) = (&compensation.method, Literal::usize_unsuffixed(compensation.step));
        let call = quote!(Self::#method(self));
        let dispatches = match &compensation.output {
            Some(output) => quote_spanned! {output.span()=>
                <#output as #rt::IntoDispatches>::into_dispatches(#call)
            },
            None => quote!(#rt::IntoDispatches::into_dispatches(#call)),
        };
        quote!(#index => #dispatches,)
    });
    let timeout_arms = steps.iter().enumerate().filter_map(|(index, step)| {
        let on_timeout = step.on_timeout.as_ref()?;
        let index = Literal::usize_unsuffixed(index);
        let call = quote_spanned!(on_timeout.span()=> Self::#on_timeout(self));
        Some(quote!(#index => #rt::IntoDispatches::into_dispatches(#call),))
    });
    let step_param = if compensations.is_empty() { quote!(_step) } else { quote!(step) };
    let timeout_param = if steps.iter().any(|step| step.on_timeout.is_some()) {
        quote!(step)
    } else {
        quote!(_step)
    };
    let compensate_body = if compensations.is_empty() {
        quote!(#rt::Vec::new())
    } else {
        quote! {
            match step {
                #(#compensate_arms)*
                _ => #rt::Vec::new(),
            }
        }
    };
    let timeout_body = if steps.iter().any(|step| step.on_timeout.is_some()) {
        quote! {
            match step {
                #(#timeout_arms)*
                _ => #rt::Vec::new(),
            }
        }
    } else {
        quote!(#rt::Vec::new())
    };

    // Spanned on each type: one that is no aggregate is reported where it is named.
    let targets =
        targets.types.iter().map(|ty| quote_spanned!(ty.span()=> <#ty as #rt::Aggregate>::STREAM));

    quote! {
        #[automatically_derived]
        impl #rt::Saga for #self_ty {
            const NAME: &'static ::core::primitive::str = #name;
            const STEPS: &'static [#rt::SagaStep] = &[#(#step_infos),*];
            const DISPATCHES: &'static [&'static ::core::primitive::str] = &[#(#targets),*];

            type Event = #event_enum;

            fn step(event: &Self::Event) -> ::core::primitive::usize {
                match *event {
                    #(#step_arms,)*
                }
            }

            fn key(event: &Self::Event) -> #rt::String {
                match *event {
                    #(#key_arms,)*
                }
            }

            fn handle(
                &mut self,
                event: &Self::Event,
                #envelope_param: ::core::option::Option<&#rt::RecordedEvent>,
            ) -> ::core::result::Result<#rt::SagaReaction, #rt::String> {
                match *event {
                    #(#handle_arms)*
                }
            }

            fn compensate(&self, #step_param: ::core::primitive::usize) -> #rt::Vec<#rt::Dispatch> {
                #compensate_body
            }

            fn timed_out(&mut self, #timeout_param: ::core::primitive::usize) -> #rt::Vec<#rt::Dispatch> {
                #timeout_body
            }
        }
    }
}
