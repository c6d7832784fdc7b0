//! A validated `#[event]`: what the expansion may rely on.

use super::parse::EventInput;
use crate::common::{self, Errors};

/// One event type, checked.
#[derive(Debug)]
pub(super) struct Event {
    /// `::composable` or the `crate = path` given.
    pub(super) krate: syn::Path,
    pub(super) ident: syn::Ident,
    /// The stored name, as a literal (its span is the user's).
    pub(super) name: syn::LitStr,
    pub(super) version: u16,
    /// The next newer version, for an older version of the event.
    pub(super) upcast: Option<syn::Path>,
}

impl Event {
    /// Checks `input`, pushing every problem to `errors`. Returns `None` only when the impls
    /// would fail to compile anyway (no serde derives, generics), so that one mistake gives one
    /// error; otherwise the impls are generated even next to errors, so that uses of the type
    /// elsewhere don't cascade.
    pub(super) fn build(input: EventInput, errors: &mut Errors) -> Option<Self> {
        let EventInput { args, item } = input;
        let mut complete = true;

        if args.name.value().trim().is_empty() {
            errors.spanned(
                &args.name,
                "an event needs a non-empty name, stored with every payload: \
                 `name = \"order.placed\"`",
            );
        }

        let version = match args.version.base10_parse::<u16>() {
            Ok(0) => {
                errors.spanned(&args.version,
                    "event versions start at 1: write `version = 1` for the first shape of an event",
                );
                0
            }
            Ok(version) => version,
            Err(_) => {
                errors.spanned(&args.version, "an event version is a whole number from 1 to 65535");
                0
            }
        };

        if !item.generics.params.is_empty() || item.generics.where_clause.is_some() {
            errors.spanned(
                &item.generics,
                "an event type can't be generic: a stored payload must name one concrete type; \
                 remove the generic parameters",
            );
            complete = false;
        }

        let derived = common::derived_traits(&item.attrs);
        let missing: Vec<&str> = ["Serialize", "Deserialize"]
            .into_iter()
            .filter(|name| !derived.iter().any(|path| common::names_trait(path, name)))
            .collect();
        if !missing.is_empty() {
            let derive =
                missing.iter().map(|name| format!("serde::{name}")).collect::<Vec<_>>().join(", ");
            errors.spanned(
                &item.ident,
                format!(
                    "`{}` is stored with a serde codec but doesn't derive {}: add \
                     `#[derive({derive})]` below `#[event(...)]`",
                    item.ident,
                    missing
                        .iter()
                        .map(|name| format!("`{name}`"))
                        .collect::<Vec<_>>()
                        .join(" and "),
                ),
            );
            complete = false;
        }

        complete.then(|| Event {
            krate: common::crate_path(args.krate),
            ident: item.ident,
            name: args.name,
            version,
            upcast: args.upcast,
        })
    }
}
