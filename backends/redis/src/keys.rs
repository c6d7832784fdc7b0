//! The store's key layout and how positions are written: everything a read model keeps is
//! under `{prefix}:`; the user's keys of version N of its projection as `{prefix}:v{N}:{key}`
//! with their guards in `{prefix}:v{N}:__applied` and `{prefix}:v{N}:__streams`, the store's own
//! under `{prefix}:__`.

use std::sync::Arc;

use composable::stream::Position;

use crate::error::RedisReadError;

/// A validated key prefix: the namespace of one read model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prefix(Arc<str>);

impl Prefix {
    /// Checks `prefix`: 1 to 64 characters of `a-z`, `0-9`, `_`, `.`, `:` and `-`.
    pub(crate) fn new(prefix: &str) -> Result<Self, RedisReadError> {
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.:-".contains(c);
        if (1..=64).contains(&prefix.len()) && prefix.chars().all(allowed) {
            Ok(Self(prefix.into()))
        } else {
            Err(RedisReadError::InvalidPrefix(prefix.to_owned()))
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }

    /// The Redis key of the user's `key` in version `version`: `{prefix}:v{version}:{key}`.
    pub(crate) fn key(&self, version: u32, key: &str) -> Result<String, RedisReadError> {
        check_key(key)?;
        Ok(format!("{}{key}", self.version(version)))
    }

    /// Where version `version`'s keys start: `{prefix}:v{version}:`.
    pub(crate) fn version(&self, version: u32) -> String {
        format!("{}:v{version}:", self.0)
    }

    /// The hash of version `version`'s guards: field = an operation's guard, value = the
    /// position last applied.
    pub(crate) fn guards(&self, version: u32) -> String {
        format!("{}__applied", self.version(version))
    }

    /// The hash of version `version`'s stream guards: field = a stream, value = the version of
    /// it applied ([`StreamGuards`](composable::projection::StreamGuards)).
    pub(crate) fn streams(&self, version: u32) -> String {
        format!("{}__streams", self.version(version))
    }

    /// The version that serves queries.
    pub(crate) fn serving(&self) -> String {
        format!("{}:__serving", self.0)
    }

    /// The projection whose versions the prefix keeps.
    pub(crate) fn owner(&self) -> String {
        format!("{}:__owner", self.0)
    }

    /// The set of the versions that have written here.
    pub(crate) fn versions(&self) -> String {
        format!("{}:__versions", self.0)
    }

    /// Checkpoint `name`'s key.
    pub(crate) fn checkpoint(&self, name: &str) -> Result<String, RedisReadError> {
        checkpoint_name(name)?;
        Ok(format!("{}:__checkpoint:{name}", self.0))
    }

    /// The key of the claim on checkpoint `name`.
    pub(crate) fn claim(&self, name: &str) -> Result<String, RedisReadError> {
        checkpoint_name(name)?;
        Ok(format!("{}:__claim:{name}", self.0))
    }
}

impl Prefix {
    /// The hash of projection `name`'s dead letters: field = event id, value = the letter.
    pub(crate) fn dead_letters(&self, name: &str) -> Result<String, RedisReadError> {
        checkpoint_name(name)?;
        Ok(format!("{}:__dead:{name}", self.0))
    }

    /// The hash of the streams of projection `name`'s dead letters: field = event id, value =
    /// its stream.
    pub(crate) fn parked_streams(&self, name: &str) -> Result<String, RedisReadError> {
        checkpoint_name(name)?;
        Ok(format!("{}:__parked:{name}", self.0))
    }
}

/// Checks one of the user's keys: not empty, not one of the store's own (`__…`).
pub(crate) fn check_key(key: &str) -> Result<(), RedisReadError> {
    let invalid = |reason| RedisReadError::InvalidKey { key: key.to_owned(), reason };
    if key.is_empty() {
        return Err(invalid("a key must not be empty"));
    }
    if key.starts_with("__") {
        return Err(invalid("keys starting with `__` are the store's own"));
    }
    Ok(())
}

fn checkpoint_name(name: &str) -> Result<(), RedisReadError> {
    if (1..=256).contains(&name.len()) && !name.chars().any(char::is_control) {
        Ok(())
    } else {
        Err(RedisReadError::InvalidName(name.to_owned()))
    }
}

/// The guard of an operation on a whole key (a value, a counter, a deletion).
pub(crate) fn key_guard(key: &str) -> String {
    format!("k:{key}")
}

/// The guard of an operation on one member of a sorted set or one field of a hash. The
/// length of the key keeps `(key, member)` pairs apart whatever characters they hold.
pub(crate) fn member_guard(key: &str, member: &str) -> String {
    format!("m:{}:{key}:{member}", key.len())
}

/// Bytes of an encoded position: two 20-digit parts and a dot.
const ENCODED_LEN: usize = 41;

/// A position as the store keeps it: both parts zero-padded to 20 digits (every `u64` fits),
/// `TTTTTTTTTTTTTTTTTTTT.SSSSSSSSSSSSSSSSSSSS`, so that the text sorts as the position does.
pub(crate) fn encode_position(position: Position) -> String {
    format!("{:020}.{:020}", position.transaction(), position.sequence())
}

/// Reads back what [`encode_position`] wrote; `None` when `text` is not such a position.
pub(crate) fn decode_position(text: &[u8]) -> Option<Position> {
    if text.len() != ENCODED_LEN || text[20] != b'.' {
        return None;
    }
    let (transaction, sequence) = (&text[..20], &text[21..]);
    let number = |digits: &[u8]| -> Option<u64> {
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    Some(Position::new(number(transaction)?, number(sequence)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_sort_as_text_like_positions() {
        let positions = [
            Position::START,
            Position::new(0, 1),
            Position::new(1, 0),
            Position::new(1, u64::MAX),
            Position::new(2, 3),
            Position::new(u64::MAX, 0),
            Position::new(u64::MAX, u64::MAX),
        ];
        for pair in positions.windows(2) {
            assert!(encode_position(pair[0]) < encode_position(pair[1]), "{pair:?}");
        }
        for position in positions {
            let text = encode_position(position);
            assert_eq!(text.len(), ENCODED_LEN);
            assert_eq!(decode_position(text.as_bytes()), Some(position));
        }
    }

    #[test]
    fn corrupt_positions_are_none_not_panics() {
        for bad in [
            &b""[..],
            b"1.2",
            b"99999999999999999999.00000000000000000000", // above u64::MAX
            b"0000000000000000000a.00000000000000000000",
            b"00000000000000000000-00000000000000000000",
            b"+0000000000000000000.00000000000000000000",
            "0000000000000000000\u{e9}.0000000000000000000".as_bytes(),
        ] {
            assert_eq!(decode_position(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn prefixes_and_keys_are_checked() {
        for good in ["a", "leaderboard.v2", "app:reads-1_x", &"p".repeat(64)] {
            assert!(Prefix::new(good).is_ok(), "{good:?}");
        }
        for bad in ["", "Upper", "a b", "a{b}", "x\0", &"p".repeat(65), "é"] {
            assert!(matches!(Prefix::new(bad), Err(RedisReadError::InvalidPrefix(_))), "{bad:?}");
        }
        let prefix = Prefix::new("scores").expect("a valid prefix");
        assert_eq!(prefix.key(1, "ada").expect("a key"), "scores:v1:ada");
        assert_eq!(prefix.key(12, "a:b c").expect("any other key"), "scores:v12:a:b c");
        assert_eq!(prefix.guards(2), "scores:v2:__applied");
        for bad in ["", "__applied", "__checkpoint:x"] {
            assert!(
                matches!(prefix.key(1, bad), Err(RedisReadError::InvalidKey { .. })),
                "{bad:?}"
            );
        }
        assert!(prefix.checkpoint("projection.scores").is_ok());
        assert!(matches!(prefix.checkpoint(""), Err(RedisReadError::InvalidName(_))));
        assert!(matches!(prefix.claim("a\nb"), Err(RedisReadError::InvalidName(_))));
    }

    #[test]
    fn guards_keep_keys_and_members_apart() {
        assert_ne!(member_guard("a:b", "c"), member_guard("a", "b:c"));
        assert_ne!(key_guard("m:1:a:b"), member_guard("a", "b"));
    }
}
