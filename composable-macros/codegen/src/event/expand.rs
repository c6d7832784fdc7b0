//! Tokens for a checked `#[event]`: the only place this module uses `quote!`.

use proc_macro2::{Literal, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;

use super::model::Event;

pub(super) fn expand(event: &Event) -> TokenStream {
    let Event { krate, ident, name, version, upcast } = event;
    let rt = quote!(#krate::__private);
    let version = Literal::u16_unsuffixed(*version);

    let event_impl = quote! {
        #[automatically_derived]
        impl #rt::Event for #ident {
            const NAME: &'static ::core::primitive::str = #name;
            const VERSION: ::core::primitive::u16 = #version;
        }
    };

    let decoding = match upcast {
        None => newest(event, &rt),
        Some(newer) => older(event, newer, &rt),
    };

    quote! {
        #event_impl
        #decoding
    }
}

/// The newest version decodes its own payloads, refuses future ones, and asks the chain of
/// older versions (if any declared `upcast = Self`) for the rest.
fn newest(event: &Event, rt: &TokenStream) -> TokenStream {
    let ident = &event.ident;
    quote! {
        #[automatically_derived]
        impl #rt::VersionedEvent for #ident {
            fn decode_version<__C: #rt::Codec>(
                codec: &__C,
                version: ::core::primitive::u16,
                bytes: &[::core::primitive::u8],
            ) -> ::core::result::Result<Self, #rt::DecodeError> {
                let newest = <Self as #rt::Event>::VERSION;
                if version == newest {
                    return #rt::decode_payload::<Self, __C>(codec, bytes);
                }
                if version > newest {
                    return ::core::result::Result::Err(#rt::DecodeError::FutureVersion {
                        name: <Self as #rt::Event>::NAME,
                        version,
                        newest,
                    });
                }
                #[allow(unused_imports)]
                use #rt::{NoOlderVersions as _, ViaDecodeOlder as _};
                match (&&#rt::OlderVersions::<Self>::new()).decode_older(codec, version, bytes) {
                    ::core::option::Option::Some(decoded) => decoded,
                    ::core::option::Option::None => {
                        ::core::result::Result::Err(#rt::DecodeError::UnknownVersion {
                            name: <Self as #rt::Event>::NAME,
                            version,
                            newest,
                        })
                    }
                }
            }
        }
    }
}

/// An older version teaches its newer version to decode it: `DecodeOlder for Newer` decodes
/// this version's payloads and converts them with `From`, and passes anything older down the
/// chain (to whatever declared `upcast = Self`), converting the result the same way.
fn older(event: &Event, newer: &syn::Path, rt: &TokenStream) -> TokenStream {
    let ident = &event.ident;
    let span = newer.span();
    let name = &event.name;
    let version = event.version;
    let expected = u32::from(version) + 1;
    let gap_message = format!(
        "`upcast` must name the next version of this event: the target must be \
         `#[event(name = {}, version = {expected})]`, one more than this type's version {version}",
        name.token(),
    );
    let name_message = format!(
        "`upcast` must name a version of the same event: the target's `name` must be {}",
        name.token(),
    );
    // Spanned on the `upcast` path, so the failures point at it.
    let checks = quote_spanned! {span=>
        const _: () = ::core::assert!(
            <#newer as #rt::Event>::VERSION as ::core::primitive::u32
                == <#ident as #rt::Event>::VERSION as ::core::primitive::u32 + 1,
            #gap_message,
        );
        const _: () = ::core::assert!(
            #rt::str_eq(<#newer as #rt::Event>::NAME, <#ident as #rt::Event>::NAME),
            #name_message,
        );
    };
    let convert = |old: TokenStream| {
        quote_spanned! {span=> <#newer as #rt::UpcastFrom<#ident>>::upcast_from(#old) }
    };
    let convert_own = convert(quote!(own));
    let convert_older = convert(quote!(older));
    // Two older versions upcasting into one type conflict here, reported on their `upcast`.
    let header = quote_spanned! {span=>
        #[automatically_derived]
        impl #rt::DecodeOlder for #newer
    };
    quote! {
        #checks

        #header {
            fn decode_older<__C: #rt::Codec>(
                codec: &__C,
                version: ::core::primitive::u16,
                bytes: &[::core::primitive::u8],
            ) -> ::core::option::Option<::core::result::Result<Self, #rt::DecodeError>> {
                if version == <#ident as #rt::Event>::VERSION {
                    return ::core::option::Option::Some(
                        match #rt::decode_payload::<#ident, __C>(codec, bytes) {
                            ::core::result::Result::Ok(own) => ::core::result::Result::Ok(#convert_own),
                            ::core::result::Result::Err(error) => ::core::result::Result::Err(error),
                        },
                    );
                }
                #[allow(unused_imports)]
                use #rt::{NoOlderVersions as _, ViaDecodeOlder as _};
                match (&&#rt::OlderVersions::<#ident>::new()).decode_older(codec, version, bytes) {
                    ::core::option::Option::Some(::core::result::Result::Ok(older)) => {
                        ::core::option::Option::Some(::core::result::Result::Ok(#convert_older))
                    }
                    ::core::option::Option::Some(::core::result::Result::Err(error)) => {
                        ::core::option::Option::Some(::core::result::Result::Err(error))
                    }
                    ::core::option::Option::None => ::core::option::Option::None,
                }
            }
        }
    }
}
