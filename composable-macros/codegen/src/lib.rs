//! The code generation behind `composable-macros`.
//!
//! Each attribute lives in its own module, split by phase: `parse` reads the attribute's
//! arguments and the annotated item (with `darling`), `model` validates them into a typed
//! description, and `expand` turns that description into tokens (the only place `quote!` is
//! used). Everything runs on `proc_macro2`, so the expansions can be called and snapshotted from
//! ordinary tests; `composable-macros` is a thin `proc-macro` shell around these functions.
//!
//! This crate is an implementation detail of `composable`: its API follows whatever the macros
//! need and may change in any release.

mod aggregate;
mod common;
mod event;
mod event_set;
mod handler;
mod projection;
mod saga;

use proc_macro2::TokenStream;

/// Expands `#[aggregate(...)]` on an inherent impl block.
pub fn aggregate(args: TokenStream, item: TokenStream) -> TokenStream {
    aggregate::expand(args, item)
}

/// Expands `#[event(...)]` on a struct or enum.
pub fn event(args: TokenStream, item: TokenStream) -> TokenStream {
    event::expand(args, item)
}

/// Expands `#[saga(...)]` on an inherent impl block.
pub fn saga(args: TokenStream, item: TokenStream) -> TokenStream {
    saga::expand(args, item)
}

/// Expands `#[projection(...)]` on an inherent impl block.
pub fn projection(args: TokenStream, item: TokenStream) -> TokenStream {
    projection::expand(args, item)
}

/// Expands a `#[project]` found outside a `#[projection]` impl block: always an error.
pub fn project(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::outside_aggregate(handler::HandlerKind::Project, args, item)
}

/// Expands a `#[start]`, `#[step]` or `#[compensate]` found outside a `#[saga]` impl block:
/// always an error.
pub fn saga_handler(kind: &str, args: TokenStream, item: TokenStream) -> TokenStream {
    let kind = match kind {
        "start" => handler::HandlerKind::Start,
        "step" => handler::HandlerKind::Step,
        _ => handler::HandlerKind::Compensate,
    };
    handler::outside_aggregate(kind, args, item)
}

/// Expands a `#[command]` found outside an `#[aggregate]` impl block: always an error.
pub fn command(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::outside_aggregate(handler::HandlerKind::Command, args, item)
}

/// Expands an `#[apply]` found outside an `#[aggregate]` impl block: always an error.
pub fn apply(args: TokenStream, item: TokenStream) -> TokenStream {
    handler::outside_aggregate(handler::HandlerKind::Apply, args, item)
}
