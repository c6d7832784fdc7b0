//! A store that races the runner once: a conflict on demand.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use composable::testing::HookedStore;
use composable::{
    Bincode, EventMetadata, EventStore, ExpectedVersion, InMemoryEventStore, NewEvent,
};

use super::account::{AccountEvent, Deposited};

/// A store that lets one foreign append in right before the runner's first append, so the
/// runner's decision is always stale once. [`HookedStore::inner`] is where both go.
pub(crate) type RacingStore = HookedStore<InMemoryEventStore>;

/// A racing store, empty.
pub(crate) fn racing() -> RacingStore {
    let inner = InMemoryEventStore::new();
    let raced = Arc::new(AtomicBool::new(false));
    let rivals = inner.clone();
    HookedStore::new(inner).before_append(move |stream, _| {
        let first = !raced.swap(true, Ordering::SeqCst);
        let (rivals, stream) = (rivals.clone(), stream.clone());
        async move {
            if first {
                let rival = NewEvent::encode(
                    &AccountEvent::Deposited(Deposited { amount: 100 }),
                    &Bincode,
                    EventMetadata::new_flow(chrono::Utc::now()),
                )
                .expect("encode");
                rivals.append(&stream, ExpectedVersion::Any, vec![rival]).await?;
            }
            Ok(())
        }
    })
}
