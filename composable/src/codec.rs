//! How event payloads and snapshots become bytes.
//!
//! Every stored payload records the [`Codec::format`] that wrote it, so a row written years ago
//! can be routed to the codec that reads it. [`Bincode`] (bincode 2, serde mode, standard
//! configuration) is the default; [`Json`] sits behind the `json` feature. The format can be
//! swapped without touching any event type: see `docs/adr/0002-codec.md`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::BoxError;

/// Which way a [`CodecError`] happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodecOperation {
    /// Turning a value into bytes.
    Encode,
    /// Turning bytes into a value.
    Decode,
}

/// A payload could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
#[error("{format} could not {} the payload: {source}", match .operation { CodecOperation::Encode => "encode", CodecOperation::Decode => "decode" })]
pub struct CodecError {
    /// The codec's [`Codec::format`].
    pub format: &'static str,
    /// Encode or decode.
    pub operation: CodecOperation,
    /// What the underlying library said.
    #[source]
    pub source: BoxError,
}

impl CodecError {
    /// A decoding failure of `format`.
    pub fn decode(format: &'static str, source: impl Into<BoxError>) -> Self {
        Self { format, operation: CodecOperation::Decode, source: source.into() }
    }

    /// An encoding failure of `format`.
    pub fn encode(format: &'static str, source: impl Into<BoxError>) -> Self {
        Self { format, operation: CodecOperation::Encode, source: source.into() }
    }
}

/// A serialisation format for event payloads and snapshots.
///
/// ```
/// use composable::{Bincode, Codec};
/// let bytes = Bincode.encode(&(1u32, "two"))?;
/// let back: (u32, String) = Bincode.decode(&bytes)?;
/// assert_eq!(back, (1, "two".to_owned()));
/// # Ok::<(), composable::codec::CodecError>(())
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` is not a payload codec",
    note = "use `composable::Bincode` (the default) or `composable::Json` (feature `json`), or implement `composable::Codec`"
)]
pub trait Codec: Clone + Send + Sync + 'static {
    /// The stable name stored with every payload this codec writes, such as `"bincode2"`.
    /// Changing it makes old rows unreadable by this codec, so never change it for a format
    /// whose bytes stay the same.
    fn format(&self) -> &'static str;

    /// Serialises `value`.
    ///
    /// # Errors
    /// When the value cannot be represented in this format.
    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError>;

    /// Deserialises a whole payload; trailing bytes are an error, since they mean the payload
    /// was not written as this type.
    ///
    /// # Errors
    /// When the bytes are not a valid encoding of `T`.
    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError>;
}

/// bincode 2 in serde mode with `bincode::config::standard()` (little endian, varint integers).
/// Compact and fast; the default format.
///
/// bincode's upstream stopped development in 2025; this crate pins the last working 2.x and keeps
/// it behind [`Codec`] so the format can be swapped.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bincode;

impl Bincode {
    /// The format name stored with payloads this codec writes.
    pub const FORMAT: &'static str = "bincode2";
}

impl Codec for Bincode {
    fn format(&self) -> &'static str {
        Self::FORMAT
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        bincode::serde::encode_to_vec(value, bincode::config::standard())
            .map_err(|error| CodecError::encode(Self::FORMAT, error))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        let (value, read) = bincode::serde::decode_from_slice(bytes, bincode::config::standard())
            .map_err(|error| CodecError::decode(Self::FORMAT, error))?;
        if read != bytes.len() {
            return Err(CodecError::decode(
                Self::FORMAT,
                format!("{} trailing bytes after the value", bytes.len() - read),
            ));
        }
        Ok(value)
    }
}

/// JSON through `serde_json`: larger and slower than [`Bincode`], but readable in `psql` and by
/// other languages.
#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Json;

#[cfg(feature = "json")]
impl Json {
    /// The format name stored with payloads this codec writes.
    pub const FORMAT: &'static str = "json";
}

#[cfg(feature = "json")]
impl Codec for Json {
    fn format(&self) -> &'static str {
        Self::FORMAT
    }

    fn encode<T: Serialize + ?Sized>(&self, value: &T) -> Result<Vec<u8>, CodecError> {
        serde_json::to_vec(value).map_err(|error| CodecError::encode(Self::FORMAT, error))
    }

    fn decode<T: DeserializeOwned>(&self, bytes: &[u8]) -> Result<T, CodecError> {
        serde_json::from_slice(bytes).map_err(|error| CodecError::decode(Self::FORMAT, error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        id: u64,
        name: String,
        tags: Vec<String>,
    }

    fn sample() -> Sample {
        Sample { id: 7, name: "seven".into(), tags: vec!["a".into(), "b".into()] }
    }

    #[test]
    fn bincode_round_trips() {
        let bytes = Bincode.encode(&sample()).expect("encode");
        assert_eq!(Bincode.decode::<Sample>(&bytes).expect("decode"), sample());
    }

    #[test]
    fn bincode_rejects_truncated_and_trailing_bytes() {
        let bytes = Bincode.encode(&sample()).expect("encode");
        let truncated = Bincode.decode::<Sample>(&bytes[..bytes.len() - 1]).unwrap_err();
        assert_eq!(truncated.operation, CodecOperation::Decode);
        assert_eq!(truncated.format, "bincode2");
        let mut longer = bytes.clone();
        longer.push(0);
        let trailing = Bincode.decode::<Sample>(&longer).unwrap_err();
        assert!(trailing.to_string().contains("1 trailing bytes"), "{trailing}");
    }

    #[cfg(feature = "json")]
    #[test]
    fn json_round_trips_and_rejects_garbage() {
        let bytes = Json.encode(&sample()).expect("encode");
        assert_eq!(Json.decode::<Sample>(&bytes).expect("decode"), sample());
        let error = Json.decode::<Sample>(b"{\"id\":").unwrap_err();
        assert!(error.to_string().starts_with("json could not decode"), "{error}");
    }
}
