//! Tokens for a checked `#[projection]`: the only place this module uses `quote!`.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};

use super::model::{Project, Projection};

pub(super) fn expand(projection: &Projection) -> TokenStream {
    let krate = &projection.krate;
    let rt = quote!(#krate::__private);
    let events = event_enum(projection);
    let pairs: Vec<(&syn::Ident, &syn::Type)> =
        projection.handlers.iter().map(|Project { variant, ty, .. }| (variant, ty)).collect();
    let event_set = crate::event_set::expand(&projection.event_enum, &pairs, "a projection", &rt);
    let projection_impl = projection_impl(projection, &rt);
    quote! {
        #events
        #event_set
        #projection_impl
    }
}

fn self_name(projection: &Projection) -> String {
    quote::ToTokens::to_token_stream(&projection.self_ty).to_string().replace(' ', "")
}

fn event_enum(projection: &Projection) -> TokenStream {
    let Projection { vis, event_enum, handlers, .. } = projection;
    let self_name = self_name(projection);
    let doc = format!(" The events [`{self_name}`] handles, one variant per `#[project]` handler.");
    let variants = handlers.iter().map(|Project { method, variant, ty, .. }| {
        let doc = format!(" Projected by `{self_name}::{method}`.");
        quote! {
            #[doc = #doc]
            #variant(#ty)
        }
    });
    let conversions = handlers.iter().map(|Project { variant, ty, .. }| {
        quote! {
            #[automatically_derived]
            impl ::core::convert::From<#ty> for #event_enum {
                fn from(event: #ty) -> Self {
                    Self::#variant(event)
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

fn projection_impl(projection: &Projection, rt: &TokenStream) -> TokenStream {
    let Projection { self_ty, name, version, store, error, event_enum, handlers, .. } = projection;
    // Without a store (reported), there is no impl to write.
    let Some(store) = store else { return TokenStream::new() };
    let version = Literal::u32_unsuffixed(*version);
    let error = match error {
        Some(error) => quote!(#error),
        None => quote!(::core::convert::Infallible),
    };
    let envelope = if handlers.iter().any(|handler| handler.envelope) {
        quote!(envelope)
    } else {
        quote!(_envelope)
    };
    let arms = handlers.iter().map(|handler| arm(handler, event_enum));
    quote! {
        #[automatically_derived]
        impl #rt::Projection for #self_ty {
            const NAME: &'static ::core::primitive::str = #name;
            const VERSION: ::core::primitive::u32 = #version;

            type Event = #event_enum;
            type Store = #store;
            type Error = #error;

            async fn apply(
                &self,
                batch: &mut <Self::Store as #rt::ReadStore>::Batch,
                event: Self::Event,
                #envelope: &#rt::RecordedEvent,
            ) -> ::core::result::Result<(), Self::Error> {
                match event {
                    #(#arms)*
                }
            }
        }
    }
}

/// One arm of `apply`: call the handler (awaiting it when it is `async`), convert its error.
fn arm(handler: &Project, event_enum: &syn::Ident) -> TokenStream {
    let Project { method, variant, batch, by_ref, envelope, is_async, fallible, broken, .. } =
        handler;
    if *broken {
        // Reported already; the arm only keeps the match complete.
        return quote! {
            #event_enum::#variant(_) => ::core::panic!("this projection handler has a compile error"),
        };
    }
    // Spanned on the handler's batch type: a handler written for another store's batch is
    // reported there.
    let batch_arg = quote_spanned!(*batch=> batch);
    let event_arg = if *by_ref { quote!(&event) } else { quote!(event) };
    let envelope_arg = envelope.then(|| quote!(, envelope));
    let mut call = quote!(Self::#method(self, #batch_arg, #event_arg #envelope_arg));
    if *is_async {
        call = quote!(#call.await);
    }
    if *fallible {
        quote! {
            #event_enum::#variant(event) => ::core::result::Result::map_err(
                #call,
                ::core::convert::From::from,
            ),
        }
    } else {
        quote! {
            #event_enum::#variant(event) => {
                #call;
                ::core::result::Result::Ok(())
            }
        }
    }
}
