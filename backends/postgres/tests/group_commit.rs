//! Group commit: one-event appends that arrive together share a statement and a transaction,
//! and each keeps its own expected-version check — a conflict refuses only its own append.

#![allow(clippy::unwrap_used)] // a test: a failure is the test failing

mod common;

use std::collections::HashMap;

use composable::event_store::EventStoreError;
use composable::testing::read_all_to_head;
use composable::{EventStore, ExpectedVersion, Position, StreamId, Version};
use composable_conformance::event_store::{new_event, new_events};
use futures::TryStreamExt;

const STREAMS: u32 = 48;

fn stream(round: u32, index: u32) -> StreamId {
    StreamId::new("grouped", format!("{round}x{index}")).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_arriving_together_share_a_transaction_and_a_conflict_refuses_only_its_own() {
    let db = common::test_database().await;
    let store = &db.store;
    let mut grouped = false;
    // Until a burst is grouped (on a busy machine the appends may not overlap at first).
    for round in 0..10 {
        for index in 0..STREAMS {
            store
                .append(&stream(round, index), ExpectedVersion::NoStream, new_events(index, 1))
                .await
                .unwrap();
        }
        let appends = (0..STREAMS).map(|index| {
            let store = store.clone();
            // Every fourth append expects a version its stream is not at.
            let expected = if index % 4 == 3 { Version(5) } else { Version(1) };
            tokio::spawn(async move {
                let s = stream(round, index);
                let result = store
                    .append(&s, ExpectedVersion::Exact(expected), vec![new_event(100 + index)])
                    .await;
                (index, result)
            })
        });
        let mut transactions: HashMap<u64, u32> = HashMap::new();
        for append in futures::future::join_all(appends).await {
            let (index, result) = append.unwrap();
            if index % 4 == 3 {
                assert!(
                    matches!(result, Err(EventStoreError::Conflict { actual: Version(1), .. })),
                    "append {index} expected version 5: {result:?}"
                );
                continue;
            }
            let appended = result.unwrap_or_else(|error| panic!("append {index}: {error}"));
            assert_eq!((appended.first_version, appended.last_version), (Version(2), Version(2)));
            *transactions.entry(appended.last_position.transaction()).or_default() += 1;
        }
        // Every append that was accepted is stored once, where its result said.
        for index in 0..STREAMS {
            let events: Vec<_> = store
                .read_stream(&stream(round, index), Version::ZERO)
                .try_collect()
                .await
                .unwrap();
            let expected = if index % 4 == 3 { 1 } else { 2 };
            assert_eq!(events.len(), expected, "stream {index}");
            if expected == 2 {
                assert_eq!(events[1].payload, new_event(100 + index).payload);
            }
        }
        if transactions.values().any(|&events| events > 1) {
            grouped = true;
            break;
        }
    }
    assert!(grouped, "no two appends of a burst of {STREAMS} shared a transaction in 10 bursts");
    // The global log holds every event once, in order.
    let log = read_all_to_head(store, Position::START).await;
    let mut positions: Vec<Position> = log.iter().map(|event| event.position).collect();
    let count = positions.len();
    positions.dedup();
    assert_eq!(positions.len(), count);
    db.drop_database().await;
}
