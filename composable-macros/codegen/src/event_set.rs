//! The `EventSet` impl of a generated event enum, shared by `#[aggregate]` and `#[saga]`: the
//! names, versions, encoding, and decoding by stored name and version (older versions upcast).

use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

/// `impl EventSet for #event_enum`, one `(variant, event type)` per variant, plus `const`
/// assertions that no two of the events share a stored name.
pub(crate) fn expand(
    event_enum: &syn::Ident,
    events: &[(&syn::Ident, &syn::Type)],
    owner: &str,
    rt: &TokenStream,
) -> TokenStream {
    let names = events.iter().map(|(_, ty)| quote!(<#ty as #rt::Event>::NAME));
    let name_arms =
        events.iter().map(|(variant, ty)| quote!(Self::#variant(_) => <#ty as #rt::Event>::NAME));
    let version_arms = events
        .iter()
        .map(|(variant, ty)| quote!(Self::#variant(_) => <#ty as #rt::Event>::VERSION));
    let encode_arms = events.iter().map(|(variant, ty)| {
        quote!(Self::#variant(ref event) => #rt::encode_event::<#ty, __C>(codec, event))
    });
    let decoders = events.iter().map(|(variant, ty)| {
        // Spanned on the handler's event type: an older version of an event (or a type that
        // isn't an event) is reported there.
        let decode = quote_spanned! {ty.span()=>
            <#ty as #rt::VersionedEvent>::decode_version::<__C>(codec, version, bytes)
        };
        quote! {
            if name == <#ty as #rt::Event>::NAME {
                return match #decode {
                    ::core::result::Result::Ok(event) => ::core::result::Result::Ok(Self::#variant(event)),
                    ::core::result::Result::Err(error) => ::core::result::Result::Err(error),
                };
            }
        }
    });
    // Two events of one aggregate (or saga) with the same stored name couldn't be told apart on load.
    let unique_names = events.iter().enumerate().flat_map(|(later, b)| {
        events[..later].iter().map(move |a| {
            let (a_ty, b_ty) = (a.1, b.1);
            let message = format!(
                "`{}` and `{}` are stored under the same event name, so stored events couldn't be \
                 told apart: give each event of {owner} its own `name`",
                a.0, b.0,
            );
            quote_spanned! {b_ty.span()=>
                const _: () = ::core::assert!(
                    !#rt::str_eq(<#a_ty as #rt::Event>::NAME, <#b_ty as #rt::Event>::NAME),
                    #message,
                );
            }
        })
    });
    quote! {
        #(#unique_names)*

        #[automatically_derived]
        impl #rt::EventSet for #event_enum {
            const NAMES: &'static [&'static ::core::primitive::str] = &[#(#names),*];

            fn event_name(&self) -> &'static ::core::primitive::str {
                match *self {
                    #(#name_arms,)*
                }
            }

            fn event_version(&self) -> ::core::primitive::u16 {
                match *self {
                    #(#version_arms,)*
                }
            }

            fn encode<__C: #rt::Codec>(
                &self,
                codec: &__C,
            ) -> ::core::result::Result<#rt::Vec<::core::primitive::u8>, #rt::CodecError> {
                match *self {
                    #(#encode_arms,)*
                }
            }

            fn decode<__C: #rt::Codec>(
                codec: &__C,
                name: &::core::primitive::str,
                version: ::core::primitive::u16,
                bytes: &[::core::primitive::u8],
            ) -> ::core::result::Result<Self, #rt::DecodeError> {
                #(#decoders)*
                ::core::result::Result::Err(#rt::DecodeError::UnknownEvent {
                    name: ::core::convert::From::from(name),
                    expected: <Self as #rt::EventSet>::NAMES,
                })
            }
        }
    }
}
