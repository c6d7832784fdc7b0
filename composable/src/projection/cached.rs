//! A cache in front of a document store: queries read the cache first and fill it from the
//! store on a miss (cache-aside); a batch's documents go to the cache once the store has
//! committed them (write-through).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use serde::Serialize;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::memory::{decode_document, encode_document};
use super::{DeadLetter, DocumentError, ReadStore, Scope, StreamGuards, collection_name};
use crate::consumer::{Checkpoint, Saved};
use crate::envelope::RecordedEvent;
use crate::stream::Version;

/// A read store of typed documents (encoded bytes by collection and key): what a [`Cached`]
/// store sits in front of. The in-memory [`InMemoryDocuments`](super::InMemoryDocuments) and
/// the PostgreSQL read store are document stores.
///
/// The bytes it moves are in its own encoding — bincode ([`encode_document`]) unless it says
/// otherwise through [`encode`](Self::encode) and [`decode`](Self::decode), as a PostgreSQL
/// store of JSONB documents does — so a cache in front of it keeps them as they are and
/// decodes them as it would.
pub trait DocumentStore: ReadStore {
    /// `value` as this store keeps document `key` of `collection`: bincode by default.
    ///
    /// # Errors
    /// [`DocumentError::Codec`].
    fn encode<T: Serialize + ?Sized>(
        &self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<Vec<u8>, DocumentError> {
        encode_document(collection, key, value)
    }

    /// Document `key` of `collection` from the bytes [`encode`](Self::encode) wrote.
    ///
    /// # Errors
    /// [`DocumentError::Codec`].
    fn decode<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
        bytes: &[u8],
    ) -> Result<T, DocumentError> {
        decode_document(collection, key, bytes)
    }

    /// The committed bytes of document `key` of `collection`, in the version that serves.
    fn load(
        &self,
        collection: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;

    /// The bytes of document `key` of `collection` as `batch` sees them (its own writes too).
    fn read(
        batch: &mut Self::Batch,
        collection: &str,
        key: &str,
    ) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;

    /// Writes (`Some`) or deletes (`None`) document `key` of `collection` in `batch`.
    fn write(
        batch: &mut Self::Batch,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A cache of encoded documents by key: Redis ([`RedisCache`] in `composable-redis`), or
/// [`InMemoryCache`]. Every entry has the cache's time to live, so whatever a failure leaves
/// stale in it goes away on its own.
///
/// [`RedisCache`]: https://docs.rs/composable-redis
pub trait DocumentCache: Clone + Send + Sync + 'static {
    /// Why the cache failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// The entry `key`, if cached.
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Vec<u8>>, Self::Error>> + Send;

    /// Caches `value` under `key` unless an entry is there already (a fill after a miss must
    /// not overwrite what a commit wrote meanwhile).
    fn fill(&self, key: &str, value: &[u8])
    -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Caches each entry, replacing what was there.
    fn put_all(
        &self,
        entries: &[(String, Vec<u8>)],
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Removes the entries `keys`.
    fn remove_all(&self, keys: &[String]) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Removes every entry.
    fn clear(&self) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// The cache key of document `key` of `collection`: collections have no `/`, so it is one
/// document's.
fn cache_key(collection: &str, key: &str) -> String {
    format!("{collection}/{key}")
}

/// Why a [`Cached`] store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CachedError<S: std::error::Error + 'static, C: std::error::Error + 'static> {
    /// The store behind the cache failed.
    #[error(transparent)]
    Store(S),
    /// The cache failed where it could not be passed over (removing what a batch is about to
    /// change, or clearing it for a new version).
    #[error("the cache failed: {0}")]
    Cache(#[source] C),
    /// A bad collection name, or a document that would not encode or decode.
    #[error(transparent)]
    Document(#[from] DocumentError),
}

/// How often queries found their document in the cache.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Read from the cache.
    pub hits: u64,
    /// Read from the store (and then cached, when found).
    pub misses: u64,
}

/// A document store `S` with a cache `C` in front: the store stays the source of truth — it
/// commits the batch with the projection's checkpoint — and the cache holds copies.
///
/// - Reads ([`get`](Self::get)) try the cache, and on a miss read the store and fill the cache
///   (only where nothing was cached meanwhile). [`stats`](Self::stats) counts hits and misses.
/// - A batch removes the documents it changes from the cache before the store commits it, and
///   caches their new values once it has: a read sees the old value or the new one, and a
///   failure leaves a document absent from the cache (read from the store next time), never
///   older than the store. What is left stale by a failure after the commit lasts at most the
///   cache's time to live.
/// - Only batches of the version that serves are cached: a new version building beside it
///   is not. A new version taking over, or a version cleared for a rebuild, clears the cache.
///   (A batch of the old version that another process commits at the very moment of a switch
///   may leave a document of the old version cached: for the time to live at most.)
///
/// A cache failure on a read is passed over (the store answers); one while committing fails
/// the batch, which is retried.
#[derive(Debug, Clone)]
pub struct Cached<S, C> {
    store: S,
    cache: C,
    stats: Arc<Counters>,
    /// Held shared by a commit and its write-through, and exclusively while the cache is
    /// cleared: in this process, no write-through of an old version lands after a switch.
    switching: Arc<tokio::sync::RwLock<()>>,
}

#[derive(Debug, Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
}

impl<S: DocumentStore, C: DocumentCache> Cached<S, C> {
    /// `store` behind `cache`.
    pub fn new(store: S, cache: C) -> Self {
        Self { store, cache, stats: Arc::default(), switching: Arc::default() }
    }

    /// The store behind the cache.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The cache.
    pub fn cache(&self) -> &C {
        &self.cache
    }

    /// Hits and misses of [`get`](Self::get) so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.stats.hits.load(Ordering::Relaxed),
            misses: self.stats.misses.load(Ordering::Relaxed),
        }
    }

    /// The document `key` of `collection`, from the cache or else the store.
    ///
    /// # Errors
    /// A bad collection name, a value that is not a `T`, or the store.
    pub async fn get<T: DeserializeOwned>(
        &self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, CachedError<S::Error, C::Error>> {
        collection_name(collection)?;
        let cached_key = cache_key(collection, key);
        match self.cache.get(&cached_key).await {
            Ok(Some(bytes)) => {
                self.stats.hits.fetch_add(1, Ordering::Relaxed);
                return Ok(Some(self.store.decode(collection, key, &bytes)?));
            }
            Ok(None) => {}
            Err(error) => {
                tracing::warn!(%error, collection, key, "the cache failed: reading the store");
            }
        }
        self.stats.misses.fetch_add(1, Ordering::Relaxed);
        let Some(bytes) = self.store.load(collection, key).await.map_err(CachedError::Store)?
        else {
            return Ok(None);
        };
        if let Err(error) = self.cache.fill(&cached_key, &bytes).await {
            tracing::warn!(%error, collection, key, "could not fill the cache");
        }
        Ok(Some(self.store.decode(collection, key, &bytes)?))
    }

    /// Removes what `batch` changes from the cache, commits it with `commit`, and caches the
    /// new values once committed.
    async fn committing(
        &self,
        batch: CachedBatch<S, C>,
        commit: impl AsyncFnOnce(S::Batch) -> Result<Saved, S::Error>,
    ) -> Result<Saved, CachedError<S::Error, C::Error>> {
        let CachedBatch { inner, version, written, .. } = batch;
        // A version building beside the serving one is not what queries read: not cached.
        let serving = S::serving(&inner) == version;
        let _switching = self.switching.read().await;
        let keys: Vec<String> = written.keys().map(|(c, k)| cache_key(c, k)).collect();
        if serving && !keys.is_empty() {
            self.cache.remove_all(&keys).await.map_err(CachedError::Cache)?;
        }
        let saved = commit(inner).await.map_err(CachedError::Store)?;
        if serving && matches!(saved, Saved::ByHandler | Saved::ByConsumer) {
            let entries: Vec<(String, Vec<u8>)> = written
                .into_iter()
                .filter_map(|((c, k), value)| Some((cache_key(&c, &k), value?)))
                .collect();
            if !entries.is_empty()
                && let Err(error) = self.cache.put_all(&entries).await
            {
                // They were removed before the commit: the store answers until refilled.
                tracing::warn!(%error, "could not cache a committed batch");
            }
        }
        Ok(saved)
    }
}

/// A batch of a [`Cached`] store: the store's batch, and the documents it wrote.
pub struct CachedBatch<S: DocumentStore, C> {
    inner: S::Batch,
    /// The store, for its encoding.
    store: S,
    /// The version it writes.
    version: u32,
    /// `None`: deleted.
    written: BTreeMap<(String, String), Option<Vec<u8>>>,
    cache: PhantomData<fn() -> C>,
}

impl<S: DocumentStore, C> fmt::Debug for CachedBatch<S, C>
where
    S::Batch: fmt::Debug,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CachedBatch")
            .field("inner", &self.inner)
            .field("written", &self.written.len())
            .finish()
    }
}

impl<S: DocumentStore, C: DocumentCache> CachedBatch<S, C> {
    /// The store's own batch (on PostgreSQL, its transaction for the handler's own SQL).
    /// Documents written there bypass the cache: write them through this batch.
    pub fn inner(&mut self) -> &mut S::Batch {
        &mut self.inner
    }

    /// The document `key` of `collection`, as this batch sees it.
    ///
    /// # Errors
    /// A bad collection name, a value that is not a `T`, or the store.
    pub async fn get<T: DeserializeOwned>(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<Option<T>, CachedError<S::Error, C::Error>> {
        collection_name(collection)?;
        let bytes = match self.written.get(&(collection.to_owned(), key.to_owned())) {
            Some(written) => written.clone(),
            None => S::read(&mut self.inner, collection, key).await.map_err(CachedError::Store)?,
        };
        Ok(bytes.map(|bytes| self.store.decode(collection, key, &bytes)).transpose()?)
    }

    /// Writes `value` as document `key` of `collection`.
    ///
    /// # Errors
    /// A bad collection name, a value that does not encode, or the store.
    pub async fn put<T: Serialize>(
        &mut self,
        collection: &str,
        key: &str,
        value: &T,
    ) -> Result<(), CachedError<S::Error, C::Error>> {
        collection_name(collection)?;
        let bytes = self.store.encode(collection, key, value)?;
        self.write(collection, key, Some(bytes)).await
    }

    /// Deletes document `key` of `collection` (nothing when there is none).
    ///
    /// # Errors
    /// A bad collection name, or the store.
    pub async fn delete(
        &mut self,
        collection: &str,
        key: &str,
    ) -> Result<(), CachedError<S::Error, C::Error>> {
        collection_name(collection)?;
        self.write(collection, key, None).await
    }

    async fn write(
        &mut self,
        collection: &str,
        key: &str,
        value: Option<Vec<u8>>,
    ) -> Result<(), CachedError<S::Error, C::Error>> {
        S::write(&mut self.inner, collection, key, value.clone())
            .await
            .map_err(CachedError::Store)?;
        self.written.insert((collection.to_owned(), key.to_owned()), value);
        Ok(())
    }
}

impl<S: DocumentStore, C: DocumentCache> ReadStore for Cached<S, C> {
    type Batch = CachedBatch<S, C>;
    type Error = CachedError<S::Error, C::Error>;
    type Checkpoints = S::Checkpoints;

    /// As the store says; the cache's own failures may pass.
    fn is_transient(error: &Self::Error) -> bool {
        match error {
            CachedError::Store(error) => S::is_transient(error),
            CachedError::Cache(_) => true,
            CachedError::Document(_) => false,
        }
    }

    async fn begin(&self, scope: Scope) -> Result<Self::Batch, Self::Error> {
        let inner = self.store.begin(scope).await.map_err(CachedError::Store)?;
        Ok(CachedBatch {
            inner,
            store: self.store.clone(),
            version: scope.version,
            written: BTreeMap::new(),
            cache: PhantomData,
        })
    }

    fn applying(batch: &mut Self::Batch, event: &RecordedEvent) {
        S::applying(&mut batch.inner, event);
    }

    fn serving(batch: &Self::Batch) -> u32 {
        S::serving(&batch.inner)
    }

    fn parked(batch: &Self::Batch) -> &BTreeSet<String> {
        S::parked(&batch.inner)
    }

    async fn active_version(&self, projection: &'static str) -> Result<Option<u32>, Self::Error> {
        self.store.active_version(projection).await.map_err(CachedError::Store)
    }

    /// Switches the store, then clears the cache: what it holds is the old version's.
    async fn activate(&self, scope: Scope) -> Result<Option<u32>, Self::Error> {
        let replaced = self.store.activate(scope).await.map_err(CachedError::Store)?;
        let _switching = self.switching.write().await;
        self.cache.clear().await.map_err(CachedError::Cache)?;
        Ok(replaced)
    }

    async fn clear(&self, scope: Scope) -> Result<(), Self::Error> {
        self.store.clear(scope).await.map_err(CachedError::Store)?;
        let _switching = self.switching.write().await;
        self.cache.clear().await.map_err(CachedError::Cache)
    }

    async fn commit(&self, batch: Self::Batch, at: Checkpoint<'_>) -> Result<Saved, Self::Error> {
        self.committing(batch, async |inner| self.store.commit(inner, at).await).await
    }

    async fn commit_batch(&self, batch: Self::Batch) -> Result<Saved, Self::Error> {
        self.committing(batch, async |inner| self.store.commit_batch(inner).await).await
    }

    fn checkpoints(&self) -> Self::Checkpoints {
        self.store.checkpoints()
    }

    async fn park(batch: &mut Self::Batch, letter: DeadLetter) -> Result<(), Self::Error> {
        S::park(&mut batch.inner, letter).await.map_err(CachedError::Store)
    }

    async fn unpark(
        batch: &mut Self::Batch,
        projection: &str,
        event_id: Uuid,
    ) -> Result<bool, Self::Error> {
        S::unpark(&mut batch.inner, projection, event_id).await.map_err(CachedError::Store)
    }

    async fn dead_letters(&self, projection: &str) -> Result<Vec<DeadLetter>, Self::Error> {
        self.store.dead_letters(projection).await.map_err(CachedError::Store)
    }

    async fn parked_streams(&self, projection: &str) -> Result<BTreeSet<String>, Self::Error> {
        self.store.parked_streams(projection).await.map_err(CachedError::Store)
    }
}

/// A cache over a store that guards streams guards them too: its batch is the store's.
impl<S: DocumentStore + StreamGuards, C: DocumentCache> StreamGuards for Cached<S, C> {
    async fn applied(
        batch: &mut Self::Batch,
        streams: &[&str],
    ) -> Result<BTreeMap<String, Version>, Self::Error> {
        S::applied(&mut batch.inner, streams).await.map_err(CachedError::Store)
    }

    fn guard(batch: &mut Self::Batch, stream: &str, from: Option<Version>, to: Version) {
        S::guard(&mut batch.inner, stream, from, to);
    }
}

/// Cached values by key, each with the instant it expires.
type Entries = BTreeMap<String, (Vec<u8>, Instant)>;

/// A cache in memory, with a time to live: the twin of a Redis cache in tests.
#[derive(Debug, Clone)]
pub struct InMemoryCache {
    entries: Arc<Mutex<Entries>>,
    ttl: Duration,
}

impl InMemoryCache {
    /// Entries that live for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self { entries: Arc::default(), ttl }
    }

    fn entries(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many entries it holds (expired ones included until touched).
    pub fn len(&self) -> usize {
        self.entries().len()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }
}

impl DocumentCache for InMemoryCache {
    type Error = std::convert::Infallible;

    async fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Self::Error> {
        let mut entries = self.entries();
        match entries.get(key) {
            Some((value, until)) if *until > Instant::now() => Ok(Some(value.clone())),
            Some(_) => {
                entries.remove(key);
                Ok(None)
            }
            None => Ok(None),
        }
    }

    async fn fill(&self, key: &str, value: &[u8]) -> Result<(), Self::Error> {
        let until = Instant::now() + self.ttl;
        let mut entries = self.entries();
        let live = entries.get(key).is_some_and(|(_, at)| *at > Instant::now());
        if !live {
            entries.insert(key.to_owned(), (value.to_vec(), until));
        }
        Ok(())
    }

    async fn put_all(&self, put: &[(String, Vec<u8>)]) -> Result<(), Self::Error> {
        let until = Instant::now() + self.ttl;
        let mut entries = self.entries();
        for (key, value) in put {
            entries.insert(key.clone(), (value.clone(), until));
        }
        Ok(())
    }

    async fn remove_all(&self, keys: &[String]) -> Result<(), Self::Error> {
        let mut entries = self.entries();
        for key in keys {
            entries.remove(key);
        }
        Ok(())
    }

    async fn clear(&self) -> Result<(), Self::Error> {
        self.entries().clear();
        Ok(())
    }
}
