//! On PostgreSQL, with the read model in a database of its own: the projection process is
//! killed (SIGKILL) in the middle of catching up, and restarted. At the kill, the read model
//! holds exactly the events up to its checkpoint; after the restart it equals a rebuild from
//! scratch in a third database — nothing lost, nothing applied twice.
//!
//! Needs `DATABASE_URL` (`scripts/test` starts a private PostgreSQL and sets it).

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::{Database, order_processing};
use composable_postgres::PostgresReadStore;
use order_processing::history::{self, OrderRow};
use sqlx::PgConnection;

const CHECKPOINT: &str = "projection.order_history";

/// Starts `order-processing project` writing to `read`, and waits until it says so.
fn project(events: &Database, read: &Database) -> Child {
    let mut child = order_processing(&events.url, &["project"])
        .env("READ_DATABASE_URL", &read.url)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the projection process");
    let stdout = child.stdout.take().expect("piped stdout");
    let first = BufReader::new(stdout).lines().next();
    assert!(
        matches!(&first, Some(Ok(line)) if line == "projecting"),
        "the projection process did not start: {first:?}"
    );
    child
}

/// The checkpoint's `(transaction, position)`, once there is one.
async fn checkpoint(read: &mut PgConnection) -> Option<(i64, i64)> {
    sqlx::query_as("SELECT transaction_id, position FROM projection_checkpoints WHERE name = $1")
        .bind(CHECKPOINT)
        .fetch_optional(read)
        .await
        .expect("read the checkpoint")
}

/// How many events the log holds up to `at` (all of them for `None`).
async fn events_up_to(events: &mut PgConnection, at: Option<(i64, i64)>) -> i64 {
    let (transaction, position) = at.unwrap_or((i64::MAX, i64::MAX));
    sqlx::query_scalar(
        "SELECT count(*) FROM events \
         WHERE (transaction_id::text::bigint, position) <= ($1, $2)",
    )
    .bind(transaction)
    .bind(position)
    .fetch_one(events)
    .await
    .expect("count the events")
}

async fn applied(read: &PostgresReadStore) -> (Vec<OrderRow>, i64) {
    let rows = history::all_orders(read).await.expect("read the history");
    let events = rows.iter().map(|row| row.events).sum();
    (rows, events)
}

/// Waits until the read model in `read` has applied all `total` events.
async fn caught_up(read: &PostgresReadStore, total: i64) {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, events) = applied(read).await;
        if events == total {
            return;
        }
        assert!(Instant::now() < deadline, "only {events} of {total} events applied in 120 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn stop(mut child: Child) {
    child.kill().expect("kill the projection process");
    child.wait().expect("reap the projection process");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_killed_mid_batch_and_restarted_equals_a_rebuild() {
    let events = Database::create().await;
    let read = Database::create().await;
    let rebuilt = Database::create().await;

    for args in [["place", "1", "2500"], ["grow", "9000", "1000"]] {
        let output = order_processing(&events.url, &args).output().expect("write the orders");
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    }
    let mut log = events.connect().await;
    let total = events_up_to(&mut log, None).await;
    assert_eq!(total, 2500 + 1001);

    // Kill it without warning once it has committed a batch, while later batches run.
    let child = project(&events, &read);
    let mut read_connection = read.connect().await;
    let deadline = Instant::now() + Duration::from_secs(60);
    while checkpoint(&mut read_connection).await.is_none() {
        assert!(Instant::now() < deadline, "no batch committed in 60 s");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    stop(child);

    let at_kill = checkpoint(&mut read_connection).await;
    let store = PostgresReadStore::connect(&read.url).await.expect("connect to the read model");
    let (_, applied_at_kill) = applied(&store).await;
    let expected_at_kill = events_up_to(&mut log, at_kill).await;
    assert!(
        expected_at_kill < total,
        "the kill came after the projection finished ({expected_at_kill} of {total}): \
         nothing was interrupted"
    );
    assert_eq!(
        applied_at_kill, expected_at_kill,
        "at the kill the read model holds exactly the events up to its checkpoint"
    );

    // Restarted, it carries on from its checkpoint.
    let child = project(&events, &read);
    caught_up(&store, total).await;
    stop(child);

    // A rebuild from scratch into another database.
    let child = project(&events, &rebuilt);
    let rebuilt_store =
        PostgresReadStore::connect(&rebuilt.url).await.expect("connect to the rebuild");
    caught_up(&rebuilt_store, total).await;
    stop(child);

    let (after_restart, _) = applied(&store).await;
    let (from_scratch, _) = applied(&rebuilt_store).await;
    assert_eq!(after_restart.len(), 2501);
    assert_eq!(after_restart, from_scratch, "the restarted read model equals a rebuild");
    let grown = after_restart.iter().find(|row| row.order_id == "9000").expect("order 9000");
    assert_eq!((grown.items, grown.events), (1001, 1001));

    // `rebuild` empties the read model and applies the log again, in place.
    let output = order_processing(&events.url, &["rebuild"])
        .env("READ_DATABASE_URL", &read.url)
        .output()
        .expect("run the rebuild");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let said = String::from_utf8_lossy(&output.stdout);
    assert!(
        said.starts_with(&format!("rebuilt the order history from {total} events in ")),
        "{said}"
    );
    let (rebuilt_in_place, _) = applied(&store).await;
    assert_eq!(rebuilt_in_place, from_scratch, "rebuilt in place, it equals a rebuild");

    store.pool().close().await;
    rebuilt_store.pool().close().await;
    drop((log, read_connection));
    for database in [events, read, rebuilt] {
        database.drop().await;
    }
}
