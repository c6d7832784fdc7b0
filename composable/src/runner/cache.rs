//! The hot-aggregate cache: the state after the last command on a stream, kept so that the next
//! command on it is decided without loading the stream.
//!
//! Nothing here is trusted to be current. A command decided on a cached state is appended
//! expecting the cached version, so a stream that moved on (another process, another runner)
//! refuses the append and the runner loads and decides again; see `AggregateRunner::attempt`.

use std::fmt;
use std::num::NonZeroUsize;
use std::sync::{Mutex, PoisonError};

use hashlink::LruCache;

use crate::stream::{StreamId, Version};

/// Aggregate states by stream, least recently used dropped first, at most `capacity` of them.
pub(super) struct StateCache<A> {
    entries: Mutex<LruCache<StreamId, (A, Version)>>,
    capacity: NonZeroUsize,
    /// `A: Clone`, captured where the cache was switched on, so that the runner needs no such
    /// bound without one.
    clone: fn(&A) -> A,
}

impl<A> fmt::Debug for StateCache<A> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StateCache").field("capacity", &self.capacity).finish_non_exhaustive()
    }
}

impl<A: Clone> StateCache<A> {
    pub(super) fn new(capacity: NonZeroUsize) -> Self {
        Self { entries: Mutex::new(LruCache::new(capacity.get())), capacity, clone: A::clone }
    }
}

impl<A> StateCache<A> {
    pub(super) fn capacity(&self) -> NonZeroUsize {
        self.capacity
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, LruCache<StreamId, (A, Version)>> {
        // A panic while the lock was held cannot leave an entry half-written: every use below
        // is one call on the map.
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A copy of the state cached for `stream` and its version.
    pub(super) fn get(&self, stream: &StreamId) -> Option<(A, Version)> {
        let mut entries = self.entries();
        let (state, version) = entries.get(stream)?;
        Some(((self.clone)(state), *version))
    }

    /// Keeps `state` at `version` for `stream`, unless a later version is cached already (a
    /// concurrent command of this runner got there after this one).
    pub(super) fn put(&self, stream: &StreamId, state: &A, version: Version) {
        let mut entries = self.entries();
        if entries.peek(stream).is_some_and(|(_, cached)| *cached > version) {
            return;
        }
        entries.insert(stream.clone(), ((self.clone)(state), version));
    }

    /// Drops what is cached for `stream` at `version`: the store showed it is not current. A
    /// later version cached meanwhile stays.
    pub(super) fn forget(&self, stream: &StreamId, version: Version) {
        let mut entries = self.entries();
        if entries.peek(stream).is_some_and(|(_, cached)| *cached <= version) {
            entries.remove(stream);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.entries().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(id: u32) -> StreamId {
        StreamId::new("cached", id).unwrap_or_else(|error| panic!("{error}"))
    }

    #[test]
    fn the_least_recently_used_stream_goes_first() {
        let cache = StateCache::<u32>::new(NonZeroUsize::MIN.saturating_add(1));
        cache.put(&stream(1), &10, Version(1));
        cache.put(&stream(2), &20, Version(1));
        assert_eq!(cache.get(&stream(1)), Some((10, Version(1))), "1 is now the most recent");
        cache.put(&stream(3), &30, Version(1));
        assert_eq!(cache.get(&stream(2)), None, "2 was the least recently used");
        assert_eq!(cache.get(&stream(1)), Some((10, Version(1))));
        assert_eq!(cache.len(), 2);
    }

    #[test]
    fn an_older_version_never_replaces_a_newer_one() {
        let cache = StateCache::<u32>::new(NonZeroUsize::MIN);
        cache.put(&stream(1), &5, Version(5));
        cache.put(&stream(1), &4, Version(4));
        assert_eq!(cache.get(&stream(1)), Some((5, Version(5))));
        cache.forget(&stream(1), Version(4));
        assert_eq!(cache.get(&stream(1)), Some((5, Version(5))), "a later state stays");
        cache.forget(&stream(1), Version(5));
        assert_eq!(cache.get(&stream(1)), None);
    }
}
