//! The in-memory read store: typed documents by collection and key, changed in batches that
//! commit together with the projection's checkpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::{DeadLetter, DocumentStore, ReadStore, Scope, StreamGuards};
use crate::checkpoint::{CheckpointError, CheckpointStore, InMemoryCheckpointStore};
use crate::codec::{Bincode, Codec, CodecError};
use crate::consumer::{Checkpoint, Saved};
use crate::stream::{Position, Version};

/// A document could not be written or read, or a name is not allowed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DocumentError {
    /// A collection name must be 1 to 63 characters of `a-z`, `0-9`, `_`, `.` and `-`.
    #[error("`{0}` is not a collection name: use 1 to 63 characters of a-z, 0-9, `_`, `.` and `-`")]
    InvalidCollection(String),
    /// The value could not be encoded or decoded.
    #[error("document `{collection}/{key}`: {source}")]
    Codec {
        /// Its collection.
        collection: String,
        /// Its key.
        key: String,
        /// What the codec said.
        #[source]
        source: CodecError,
    },
    /// A replay of dead letters found one of them gone: another replay took it, so this one
    /// applied nothing.
    #[error("a dead letter being replayed was taken by another replay: nothing was applied")]
    Replayed,
}

/// A document's collection and key, in a batch (of one version).
type Key = (String, String);

/// Where a document is kept: collection, version, key.
type Stored = (String, u32, String);

#[derive(Debug, Default)]
struct Inner {
    documents: BTreeMap<Stored, Vec<u8>>,
    checkpoints: BTreeMap<String, Position>,
    /// By projection, in log order.
    dead_letters: BTreeMap<String, Vec<DeadLetter>>,
    /// The projection each version of a collection belongs to.
    owners: BTreeMap<(String, u32), &'static str>,
    /// The version of each projection that serves queries.
    active: BTreeMap<&'static str, u32>,
    /// The version of each stream applied, by checkpoint name (a projection's version) and
    /// stream ([`StreamGuards`]).
    streams: BTreeMap<(String, String), Version>,
}

impl Inner {
    /// The version of `collection` queries read: that of its projection's active version.
    fn serving(&self, collection: &str) -> Option<u32> {
        self.owners
            .range((collection.to_owned(), 0)..=(collection.to_owned(), u32::MAX))
            .find(|((_, version), projection)| self.active.get(*projection) == Some(version))
            .map(|((_, version), _)| *version)
    }

    /// The streams of `projection`'s dead letters.
    fn parked_streams(&self, projection: &str) -> BTreeSet<String> {
        let letters = self.dead_letters.get(projection).map(Vec::as_slice).unwrap_or_default();
        letters.iter().map(|letter| letter.event.stream_id.as_str().to_owned()).collect()
    }

    /// Whether a batch of `scope` may apply: not when a newer version is active.
    fn admits(&self, scope: Scope) -> bool {
        self.active.get(scope.projection).is_none_or(|active| *active <= scope.version)
    }

    /// Removes `scope`'s documents, checkpoint and dead letters; with `forget`, also which
    /// collections it wrote.
    fn remove(&mut self, scope: Scope, forget: bool) {
        let collections: Vec<String> = self
            .owners
            .iter()
            .filter(|((_, version), projection)| {
                **projection == scope.projection && *version == scope.version
            })
            .map(|((collection, _), _)| collection.clone())
            .collect();
        self.documents.retain(|(collection, version, _), _| {
            *version != scope.version || !collections.contains(collection)
        });
        if forget {
            for collection in collections {
                self.owners.remove(&(collection, scope.version));
            }
        }
        let name = scope.checkpoint();
        self.checkpoints.remove(&name);
        self.dead_letters.remove(&name);
        self.streams.retain(|(checkpoint, _), _| *checkpoint != name);
    }

    /// Whether every stream `batch` guards is still at the version it read.
    fn guards_hold(&self, batch: &DocumentBatch) -> bool {
        let name = batch.scope.checkpoint();
        batch.guards.iter().all(|(stream, from, _)| {
            self.streams.get(&(name.clone(), stream.clone())).copied() == *from
        })
    }
}

/// Documents in memory, by collection and key: the read store of tests and examples, and the
/// twin of the durable document stores. Clones share the documents.
#[derive(Debug, Clone, Default)]
pub struct InMemoryDocuments {
    inner: Arc<Mutex<Inner>>,
    claims: InMemoryCheckpointStore,
}

/// Checks a collection name: 1 to 63 characters of `a-z`, `0-9`, `_`, `.` and `-`. Every
/// document store calls it before a name reaches its storage (a table row, a key prefix).
///
/// # Errors
/// [`DocumentError::InvalidCollection`].
pub fn collection_name(collection: &str) -> Result<(), DocumentError> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || "_.-".contains(c);
    if (1..=63).contains(&collection.len()) && collection.chars().all(allowed) {
        Ok(())
    } else {
        Err(DocumentError::InvalidCollection(collection.to_owned()))
    }
}

/// A document's bytes, as every document store keeps them (with [`Bincode`]).
///
/// # Errors
/// [`DocumentError::Codec`].
pub fn encode_document<T: Serialize + ?Sized>(
    collection: &str,
    key: &str,
    value: &T,
) -> Result<Vec<u8>, DocumentError> {
    Bincode.encode(value).map_err(|source| DocumentError::Codec {
        collection: collection.to_owned(),
        key: key.to_owned(),
        source,
    })
}

/// A document read back from what [`encode_document`] wrote.
///
/// # Errors
/// [`DocumentError::Codec`].
pub fn decode_document<T: DeserializeOwned>(
    collection: &str,
    key: &str,
    bytes: &[u8],
) -> Result<T, DocumentError> {
    Bincode.decode(bytes).map_err(|source| DocumentError::Codec {
        collection: collection.to_owned(),
        key: key.to_owned(),
        source,
    })
}

impl InMemoryDocuments {
    /// No documents.
    pub fn new() -> Self {
        Self::default()
    }

    fn inner(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The document `key` of `collection`, as committed.
    ///
    /// # Errors
    /// A bad collection name, or a value that is not a `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, DocumentError> {
        collection_name(collection)?;
        let bytes = self.committed(collection, key);
        bytes.map(|bytes| decode_document(collection, key, &bytes)).transpose()
    }

    /// The committed bytes of document `key` of `collection`, in the version that serves.
    fn committed(&self, collection: &str, key: &str) -> Option<Vec<u8>> {
        let inner = self.inner();
        let version = inner.serving(collection)?;
        inner.documents.get(&(collection.to_owned(), version, key.to_owned())).cloned()
    }

    /// Whether `collection` has a document `key`.
    ///
    /// # Errors
    /// A bad collection name.
    pub fn exists(&self, collection: &str, key: &str) -> Result<bool, DocumentError> {
        collection_name(collection)?;
        let inner = self.inner();
        Ok(inner.serving(collection).is_some_and(|version| {
            inner.documents.contains_key(&(collection.to_owned(), version, key.to_owned()))
        }))
    }

    /// The documents of `collection` whose keys start with `prefix`, in key order.
    ///
    /// # Errors
    /// A bad collection name, or a value that is not a `T`.
    pub fn list<T: DeserializeOwned>(
        &self,
        collection: &str,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, DocumentError> {
        collection_name(collection)?;
        let inner = self.inner();
        let Some(version) = inner.serving(collection) else {
            return Ok(Vec::new());
        };
        let start = (collection.to_owned(), version, prefix.to_owned());
        inner
            .documents
            .range((Bound::Included(start), Bound::Unbounded))
            .take_while(|((found, at, key), _)| {
                found == collection && *at == version && key.starts_with(prefix)
            })
            .map(|((_, _, key), bytes)| Ok((key.clone(), decode_document(collection, key, bytes)?)))
            .collect()
    }
}

/// The changes of one batch to an [`InMemoryDocuments`]: reads see the batch's own writes
/// over what is committed; nothing is visible to others until the batch commits.
#[derive(Debug)]
pub struct DocumentBatch {
    store: InMemoryDocuments,
    scope: Scope,
    /// The version that served when it began.
    serving: u32,
    /// `None`: deleted in this batch.
    staged: BTreeMap<Key, Option<Vec<u8>>>,
    parked: Vec<DeadLetter>,
    /// The streams with dead letters when it began.
    parked_streams: BTreeSet<String>,
    /// Dead letters replayed in this batch, by projection and event.
    unparked: Vec<(String, Uuid)>,
    /// Streams it moves: from the version read, to the one applied ([`StreamGuards`]).
    guards: Vec<(String, Option<Version>, Version)>,
}

impl DocumentBatch {
    /// The document `key` of `collection`, as this batch sees it.
    ///
    /// # Errors
    /// A bad collection name, or a value that is not a `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, DocumentError> {
        collection_name(collection)?;
        let bytes = self.bytes(collection, key);
        bytes.map(|bytes| decode_document(collection, key, &bytes)).transpose()
    }

    /// The bytes of document `key` of `collection` as the batch sees them: its own writes
    /// over what its version has committed.
    fn bytes(&self, collection: &str, key: &str) -> Option<Vec<u8>> {
        match self.staged.get(&(collection.to_owned(), key.to_owned())) {
            Some(staged) => staged.clone(),
            None => {
                let stored = (collection.to_owned(), self.scope.version, key.to_owned());
                self.store.inner().documents.get(&stored).cloned()
            }
        }
    }

    /// Writes `value` as document `key` of `collection`.
    ///
    /// # Errors
    /// A bad collection name, or a value the codec cannot encode.
    pub fn put<T: Serialize>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<(), DocumentError> {
        collection_name(collection)?;
        let bytes = encode_document(collection, key, value)?;
        self.staged.insert((collection.to_owned(), key.to_owned()), Some(bytes));
        Ok(())
    }

    /// Deletes document `key` of `collection` (nothing when there is none).
    ///
    /// # Errors
    /// A bad collection name.
    pub fn delete(&mut self, collection: &str, key: &str) -> Result<(), DocumentError> {
        collection_name(collection)?;
        self.staged.insert((collection.to_owned(), key.to_owned()), None);
        Ok(())
    }

    /// Applies the batch, unless a dead letter it replays is gone (another replay took it):
    /// then nothing, and `false`.
    fn apply_to(self, inner: &mut Inner) -> bool {
        let present = |(projection, id): &(String, Uuid)| {
            inner
                .dead_letters
                .get(projection)
                .is_some_and(|letters| letters.iter().any(|letter| letter.event.event_id == *id))
        };
        if !self.unparked.iter().all(present) {
            return false;
        }
        for (projection, id) in &self.unparked {
            if let Some(letters) = inner.dead_letters.get_mut(projection) {
                letters.retain(|letter| letter.event.event_id != *id);
            }
        }
        inner.dead_letters.retain(|_, letters| !letters.is_empty());
        for letter in self.parked {
            let letters = inner.dead_letters.entry(letter.projection.clone()).or_default();
            letters.push(letter);
            letters.sort_by_key(|letter| letter.event.position);
        }
        let name = self.scope.checkpoint();
        for (stream, _, to) in self.guards {
            inner.streams.insert((name.clone(), stream), to);
        }
        let version = self.scope.version;
        for ((collection, key), value) in self.staged {
            inner.owners.entry((collection.clone(), version)).or_insert(self.scope.projection);
            match value {
                Some(bytes) => inner.documents.insert((collection, version, key), bytes),
                None => inner.documents.remove(&(collection, version, key)),
            };
        }
        true
    }
}

impl ReadStore for InMemoryDocuments {
    type Batch = DocumentBatch;
    type Error = DocumentError;
    type Checkpoints = DocumentCheckpoints;

    /// Only a replay that lost its race may pass (the batch is built again); a bad name or a
    /// document that does not encode will not.
    fn is_transient(error: &DocumentError) -> bool {
        matches!(error, DocumentError::Replayed)
    }

    async fn begin(&self, scope: Scope) -> Result<DocumentBatch, DocumentError> {
        let mut inner = self.inner();
        let active = *inner.active.entry(scope.projection).or_insert(scope.version);
        let parked_streams = inner.parked_streams(&scope.checkpoint());
        drop(inner);
        Ok(DocumentBatch {
            store: self.clone(),
            scope,
            serving: active,
            staged: BTreeMap::new(),
            parked: Vec::new(),
            parked_streams,
            unparked: Vec::new(),
            guards: Vec::new(),
        })
    }

    async fn commit(
        &self,
        batch: DocumentBatch,
        at: Checkpoint<'_>,
    ) -> Result<Saved, DocumentError> {
        let mut inner = self.inner();
        if !inner.admits(batch.scope) {
            return Ok(Saved::Retired);
        }
        let current = inner.checkpoints.get(at.name).copied().unwrap_or(Position::START);
        if current != at.after || !inner.guards_hold(&batch) {
            return Ok(Saved::Moved);
        }
        if !batch.apply_to(&mut inner) {
            return Err(DocumentError::Replayed);
        }
        inner.checkpoints.insert(at.name.to_owned(), at.to);
        Ok(Saved::ByHandler)
    }

    async fn commit_batch(&self, batch: DocumentBatch) -> Result<Saved, DocumentError> {
        let mut inner = self.inner();
        if !inner.admits(batch.scope) {
            return Ok(Saved::Retired);
        }
        if !inner.guards_hold(&batch) {
            return Ok(Saved::Moved);
        }
        if batch.apply_to(&mut inner) {
            Ok(Saved::ByConsumer)
        } else {
            Err(DocumentError::Replayed)
        }
    }

    fn serving(batch: &DocumentBatch) -> u32 {
        batch.serving
    }

    fn parked(batch: &DocumentBatch) -> &BTreeSet<String> {
        &batch.parked_streams
    }

    async fn active_version(&self, projection: &'static str) -> Result<Option<u32>, DocumentError> {
        Ok(self.inner().active.get(projection).copied())
    }

    async fn activate(&self, scope: Scope) -> Result<Option<u32>, DocumentError> {
        let mut inner = self.inner();
        let replaced = inner.active.get(scope.projection).copied();
        if replaced.is_some_and(|active| active > scope.version) {
            return Ok(replaced);
        }
        inner.active.insert(scope.projection, scope.version);
        let older: BTreeSet<u32> = inner
            .owners
            .iter()
            .filter(|((_, version), projection)| {
                **projection == scope.projection && *version < scope.version
            })
            .map(|((_, version), _)| *version)
            .chain(
                inner
                    .checkpoints
                    .keys()
                    .chain(inner.dead_letters.keys())
                    .chain(inner.streams.keys().map(|(name, _)| name))
                    .filter_map(|name| {
                        Scope::version_in(scope.projection, name)
                            .filter(|version| *version < scope.version)
                    }),
            )
            .collect();
        for version in older {
            inner.remove(Scope::new(scope.projection, version), true);
        }
        Ok(replaced.filter(|active| *active != scope.version))
    }

    async fn clear(&self, scope: Scope) -> Result<(), DocumentError> {
        self.inner().remove(scope, false);
        Ok(())
    }

    fn checkpoints(&self) -> DocumentCheckpoints {
        DocumentCheckpoints(self.clone())
    }

    async fn park(batch: &mut DocumentBatch, letter: DeadLetter) -> Result<(), DocumentError> {
        batch.parked.push(letter);
        Ok(())
    }

    async fn unpark(
        batch: &mut DocumentBatch,
        projection: &str,
        event_id: Uuid,
    ) -> Result<bool, DocumentError> {
        let present =
            batch.store.inner().dead_letters.get(projection).is_some_and(|letters| {
                letters.iter().any(|letter| letter.event.event_id == event_id)
            });
        if present {
            batch.unparked.push((projection.to_owned(), event_id));
        }
        Ok(present)
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, DocumentError> {
        Ok(self.inner().dead_letters.get(projection).cloned().unwrap_or_default())
    }

    async fn parked_streams(&self, projection: &str) -> Result<BTreeSet<String>, DocumentError> {
        Ok(self.inner().parked_streams(projection))
    }
}

impl StreamGuards for InMemoryDocuments {
    async fn applied(
        batch: &mut DocumentBatch,
        streams: &[&str],
    ) -> Result<BTreeMap<String, Version>, DocumentError> {
        let name = batch.scope.checkpoint();
        let inner = batch.store.inner();
        Ok(streams
            .iter()
            .filter_map(|stream| {
                let applied = inner.streams.get(&(name.clone(), (*stream).to_owned()))?;
                Some(((*stream).to_owned(), *applied))
            })
            .collect())
    }

    fn guard(batch: &mut DocumentBatch, stream: &str, from: Option<Version>, to: Version) {
        batch.guards.push((stream.to_owned(), from, to));
    }
}

/// The checkpoints an [`InMemoryDocuments`] keeps beside its documents, as a consumer reads them.
/// Saving goes through [`ReadStore::commit`], with the batch; a plain
/// [`save`](CheckpointStore::save) moves the checkpoint alone (a rebuild starting over, say).
#[derive(Debug, Clone)]
pub struct DocumentCheckpoints(InMemoryDocuments);

impl CheckpointStore for DocumentCheckpoints {
    async fn load(&self, name: &str) -> Result<Position, CheckpointError> {
        Ok(self.0.inner().checkpoints.get(name).copied().unwrap_or(Position::START))
    }

    async fn save(&self, name: &str, position: Position) -> Result<(), CheckpointError> {
        self.0.inner().checkpoints.insert(name.to_owned(), position);
        Ok(())
    }

    async fn claim(
        &self,
        name: &str,
        holder: Uuid,
        ttl: Duration,
    ) -> Result<bool, CheckpointError> {
        self.0.claims.claim(name, holder, ttl).await
    }

    async fn release(&self, name: &str, holder: Uuid) -> Result<(), CheckpointError> {
        self.0.claims.release(name, holder).await
    }
}

impl DocumentStore for InMemoryDocuments {
    async fn load(&self, collection: &str, key: &str) -> Result<Option<Vec<u8>>, DocumentError> {
        collection_name(collection)?;
        Ok(self.committed(collection, key))
    }

    async fn read(
        batch: &mut DocumentBatch,
        collection: &str,
        key: &str,
    ) -> Result<Option<Vec<u8>>, DocumentError> {
        collection_name(collection)?;
        Ok(batch.bytes(collection, key))
    }

    async fn write(
        batch: &mut DocumentBatch,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), DocumentError> {
        collection_name(collection)?;
        batch.staged.insert((collection.to_owned(), key.to_owned()), value);
        Ok(())
    }
}
