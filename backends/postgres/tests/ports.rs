//! The `timers` table and the `checkpoints` table pass the suites the in-memory twins pass:
//! claims lease due timers in due order, skip what another runner holds, and never offer a fired
//! or cancelled timer again; checkpoints load what was saved, by name.

mod common;

use composable_postgres::{PostgresCheckpointStore, PostgresTimerStore};

composable_conformance::timer_conformance!(|| async {
    let database = common::test_database().await;
    PostgresTimerStore::new(database.store.pool().clone())
});

mod checkpoints {
    use super::*;

    composable_conformance::checkpoint_conformance!(|| async {
        let database = common::test_database().await;
        PostgresCheckpointStore::new(database.store.pool().clone())
    });
}
