//! Paths used by the code `composable-macros` generates. Not public API: anything here may change
//! in any release.

pub use ::core;
pub use ::serde;
pub use ::std::string::String;
pub use ::std::vec::Vec;

pub use crate::aggregate::Aggregate;
pub use crate::codec::{Codec, CodecError};
pub use crate::event::{DecodeError, Event, EventSet, IntoEvents, VersionedEvent, decode_payload};
pub use crate::saga::{Dispatch, IntoDispatches, IntoReaction, Saga, Step as SagaStep};

/// A saga's correlation key, read from an event's field.
#[diagnostic::on_unimplemented(
    message = "a saga key must be displayable, and `{Self}` is not",
    note = "the key names the saga instance's stream (`saga.NAME-KEY`): use a field whose type implements `Display`, such as a `String` or an integer id"
)]
pub trait SagaKey {
    /// The key as text.
    fn saga_key(&self) -> String;
}

impl<T: core::fmt::Display + ?Sized> SagaKey for T {
    fn saga_key(&self) -> String {
        self.to_string()
    }
}

/// Reads a saga's correlation key; generated `Saga::key` calls this.
pub fn saga_key<K: SagaKey + ?Sized>(key: &K) -> String {
    key.saga_key()
}

use core::marker::PhantomData;

/// Encodes an event's payload. Generated code calls this rather than [`Codec::encode`] so that a
/// type that isn't an event is reported once, as "not an event", instead of once per missing
/// serde trait.
pub fn encode_event<E: Event, C: Codec>(codec: &C, event: &E) -> Result<Vec<u8>, CodecError> {
    codec.encode(event)
}

/// `From<Old> for Self`, named after what needs it: the conversion an `upcast = Self` on `Old`
/// runs on every stored `Old` payload. A missing `From` impl is reported with this trait's
/// message rather than a bare "`From` is not implemented".
#[diagnostic::on_unimplemented(
    message = "`{Old}` declares `upcast = {Self}`, but `{Self}` doesn't implement `From<{Old}>`",
    label = "stored `{Old}` payloads are converted to `{Self}` with `From`",
    note = "implement `From<{Old}> for {Self}`: it is the upcaster that turns the old shape into the new one"
)]
pub trait UpcastFrom<Old>: Sized {
    /// Converts an older version into this one.
    fn upcast_from(old: Old) -> Self;
}

impl<Old, New: From<Old>> UpcastFrom<Old> for New {
    fn upcast_from(old: Old) -> Self {
        New::from(old)
    }
}

/// The state of an aggregate that takes snapshots: `snapshot_every` stores it with the codec.
#[diagnostic::on_unimplemented(
    message = "`{Self}` takes snapshots (`snapshot_every`) but can't be serialised",
    label = "needs `serde::Serialize` and `serde::Deserialize`",
    note = "derive `serde::Serialize` and `serde::Deserialize` on `{Self}`, or remove `snapshot_every` from `#[aggregate]`"
)]
pub trait SnapshotState: Sized {
    /// Encodes the state.
    fn encode_snapshot<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError>;
    /// Decodes a state.
    fn decode_snapshot<C: Codec>(codec: &C, bytes: &[u8]) -> Result<Self, CodecError>;
}

impl<T: ::serde::Serialize + ::serde::de::DeserializeOwned> SnapshotState for T {
    fn encode_snapshot<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        codec.encode(self)
    }
    fn decode_snapshot<C: Codec>(codec: &C, bytes: &[u8]) -> Result<Self, CodecError> {
        codec.decode(bytes)
    }
}

/// Decodes the versions of an event older than `Self`.
///
/// `#[event(name = "x", version = 1, upcast = V2)]` on `V1` implements `DecodeOlder for V2`: it
/// decodes version 1 payloads as `V1` (and, through `V1`'s own `DecodeOlder`, anything older)
/// and converts them with `From<V1> for V2`. Coherence makes a second type claiming to upcast
/// into `V2` a compile error.
pub trait DecodeOlder: Sized {
    /// `None` when no upcaster covers `version`.
    fn decode_older<C: Codec>(
        codec: &C,
        version: u16,
        bytes: &[u8],
    ) -> Option<Result<Self, DecodeError>>;
}

/// Probe for "does `T` have older versions?", resolved at compile time by method lookup
/// (autoref specialisation): with both [`ViaDecodeOlder`] and [`NoOlderVersions`] in scope,
/// `(&&OlderVersions::<T>::new()).decode_older(..)` calls `T::decode_older` when `T:
/// DecodeOlder`, and answers `None` otherwise. Only works where `T` is a concrete type, which it
/// always is in generated code.
pub struct OlderVersions<T>(PhantomData<fn() -> T>);

impl<T> core::fmt::Debug for OlderVersions<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("OlderVersions")
    }
}

impl<T> OlderVersions<T> {
    /// The probe.
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        Self(PhantomData)
    }
}

/// The arm of the probe taken when `T: DecodeOlder`.
pub trait ViaDecodeOlder {
    /// The newest event type.
    type Target;
    /// Delegates to [`DecodeOlder::decode_older`].
    fn decode_older<C: Codec>(
        &self,
        codec: &C,
        version: u16,
        bytes: &[u8],
    ) -> Option<Result<Self::Target, DecodeError>>;
}

impl<T: DecodeOlder> ViaDecodeOlder for &OlderVersions<T> {
    type Target = T;
    fn decode_older<C: Codec>(
        &self,
        codec: &C,
        version: u16,
        bytes: &[u8],
    ) -> Option<Result<T, DecodeError>> {
        T::decode_older(codec, version, bytes)
    }
}

/// The arm of the probe taken when `T` has no older versions.
pub trait NoOlderVersions {
    /// The newest event type.
    type Target;
    /// Always `None`.
    fn decode_older<C: Codec>(
        &self,
        codec: &C,
        version: u16,
        bytes: &[u8],
    ) -> Option<Result<Self::Target, DecodeError>>;
}

impl<T> NoOlderVersions for OlderVersions<T> {
    type Target = T;
    fn decode_older<C: Codec>(
        &self,
        _codec: &C,
        _version: u16,
        _bytes: &[u8],
    ) -> Option<Result<T, DecodeError>> {
        None
    }
}

/// `a == b` for string constants, usable in `const` assertions the macros emit (an upcast target
/// must carry the same event name).
pub const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Bincode;

    struct Plain;
    #[derive(Debug, PartialEq)]
    struct WithOlder(u8);

    impl DecodeOlder for WithOlder {
        fn decode_older<C: Codec>(
            _codec: &C,
            version: u16,
            _bytes: &[u8],
        ) -> Option<Result<Self, DecodeError>> {
            (version == 1).then_some(Ok(WithOlder(1)))
        }
    }

    #[test]
    #[allow(clippy::needless_borrow, reason = "the double reference is the probe")]
    fn the_probe_finds_older_versions_only_where_declared() {
        #[allow(unused_imports)]
        use super::{NoOlderVersions as _, ViaDecodeOlder as _};
        let found = (&&OlderVersions::<WithOlder>::new()).decode_older(&Bincode, 1, &[]);
        assert_eq!(found.map(|r| r.ok()), Some(Some(WithOlder(1))));
        let none = (&&OlderVersions::<Plain>::new()).decode_older(&Bincode, 1, &[]);
        assert!(none.is_none());
    }

    #[test]
    fn str_eq_compares_bytes() {
        const { assert!(str_eq("order.placed", "order.placed")) };
        assert!(!str_eq("order.placed", "order.placed2"));
        assert!(!str_eq("a", "b"));
    }
}
