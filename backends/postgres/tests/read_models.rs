//! Read models on PostgreSQL: the read store passes the suite the in-memory one passes; a
//! projection writing its own table in a separate read database, hosted on the PostgreSQL
//! event store, counts every event once across a restart and with two processes racing;
//! typed documents; hostile names and keys.

mod common;

use std::sync::Arc;
use std::time::Duration;

use composable::host::App;
use composable::projection::{DocumentError, ReadStore, Scope};

/// The projection the batches here write for.
const SCOPE: Scope = Scope::new("test", 1);
use composable::{AggregateRunner, aggregate, apply, command, event, project, projection};
use composable_postgres::{
    DocumentForm, PostgresBatch, PostgresEventStore, PostgresReadStore, ReadModelError,
};
use serde::{Deserialize, Serialize};

/// Values in the collection `values`.
struct Documents(PostgresReadStore);

impl composable_conformance::read_store::Fixture for Documents {
    type Store = PostgresReadStore;

    fn store(&self) -> &PostgresReadStore {
        &self.0
    }

    async fn write(&self, batch: &mut PostgresBatch, key: &str, value: u64) {
        batch.put("values", key, &value).await.expect("write a document");
    }

    async fn read(&self, key: &str) -> Option<u64> {
        self.0.get("values", key).await.expect("read a document")
    }
}

mod conformance {
    use super::*;

    composable_conformance::read_store_conformance!(|| async {
        Documents(common::read_database().await)
    });
    composable_conformance::stream_guards_conformance!(|| async {
        Documents(common::read_database().await)
    });

    mod checkpoints {
        use super::*;

        composable_conformance::checkpoint_conformance!(|| async {
            common::read_database().await.checkpoints()
        });
    }

    mod jsonb {
        use super::*;

        composable_conformance::read_store_conformance!(|| async {
            Documents(common::read_database().await.with_documents(DocumentForm::Jsonb))
        });
    }
}

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub owner: String,
    pub cents: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub owner: String,
    pub cents: i64,
}

#[derive(Debug, Default)]
pub struct Account;

#[aggregate(stream = "account")]
impl Account {
    #[command]
    fn deposit(&self, command: Deposit) -> Deposited {
        Deposited { owner: command.owner, cents: command.cents }
    }

    #[apply]
    fn deposited(&mut self, _event: &Deposited) {}
}

/// Balances per owner, in the application's own table `balances`.
struct Balances;

#[projection(name = "balances", store = PostgresReadStore)]
impl Balances {
    #[project]
    async fn deposited(
        &self,
        batch: &mut PostgresBatch,
        event: &Deposited,
    ) -> Result<(), ReadModelError> {
        sqlx::query(
            "INSERT INTO balances (owner, cents, deposits) VALUES ($1, $2, 1) \
             ON CONFLICT (owner) DO UPDATE \
             SET cents = balances.cents + EXCLUDED.cents, deposits = balances.deposits + 1",
        )
        .bind(&event.owner)
        .bind(event.cents)
        .execute(batch.connection())
        .await
        .map_err(|source| ReadModelError::Database {
            operation: "update balances",
            transient: false,
            source,
        })?;
        Ok(())
    }
}

/// The application's migration of its read database.
async fn create_balances(read: &PostgresReadStore) {
    sqlx::query(
        "CREATE TABLE balances (owner text PRIMARY KEY, \
         cents bigint NOT NULL CHECK (cents < 1000000), deposits bigint NOT NULL)",
    )
    .execute(read.pool())
    .await
    .expect("create the application's table");
}

async fn balances(read: &PostgresReadStore) -> Vec<(String, i64, i64)> {
    sqlx::query_as("SELECT owner, cents, deposits FROM balances ORDER BY owner")
        .fetch_all(read.pool())
        .await
        .expect("query balances")
}

fn host(
    store: &PostgresEventStore,
    accounts: &Arc<AggregateRunner<Account, PostgresEventStore>>,
    read: &PostgresReadStore,
) -> composable::host::RunningApp<PostgresEventStore> {
    App::in_process("bank", store.clone())
        .aggregate(accounts)
        .projection(Balances, read.clone())
        .claim_ttl(Duration::from_millis(500))
        .build()
        .expect("the wiring is complete")
        .start()
}

const WAIT: Duration = Duration::from_secs(20);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projection_in_a_separate_database_applies_every_event_once() {
    let events = common::test_database().await;
    let read = common::read_database().await;
    create_balances(&read).await;
    let accounts = Arc::new(AggregateRunner::<Account, _>::new(events.store.clone(), ()));

    let running = host(&events.store, &accounts, &read);
    for (owner, cents) in [("ada", 100), ("bob", 7), ("ada", 20)] {
        accounts.execute(owner, Deposit { owner: owner.into(), cents }).await.unwrap();
    }
    let token = accounts
        .execute("cy", Deposit { owner: "cy".into(), cents: 1 })
        .await
        .unwrap()
        .token
        .unwrap();
    running.service("projection.balances").unwrap().reached(token, WAIT).await.unwrap();
    assert_eq!(
        balances(&read).await,
        [("ada".into(), 120, 2), ("bob".into(), 7, 1), ("cy".into(), 1, 1)]
    );
    running.stop().await.unwrap();

    // Deposits while no projection runs; then two processes at once over the same read
    // database: whichever holds the claim catches up, and nothing is applied twice.
    for cents in 1..=30 {
        accounts.execute("bob", Deposit { owner: "bob".into(), cents }).await.unwrap();
    }
    let last = accounts
        .execute("dee", Deposit { owner: "dee".into(), cents: 9 })
        .await
        .unwrap()
        .token
        .unwrap();
    let first = host(&events.store, &accounts, &read);
    let second = host(&events.store, &accounts, &read);
    let waits = futures::future::select(
        Box::pin(first.service("projection.balances").unwrap().reached(last, WAIT)),
        Box::pin(second.service("projection.balances").unwrap().reached(last, WAIT)),
    );
    match waits.await {
        futures::future::Either::Left((reached, _))
        | futures::future::Either::Right((reached, _)) => {
            reached.expect("one of them caught up");
        }
    }
    assert_eq!(
        balances(&read).await,
        [
            ("ada".into(), 120, 2),
            ("bob".into(), 7 + (1..=30).sum::<i64>(), 31),
            ("cy".into(), 1, 1),
            ("dee".into(), 9, 1),
        ]
    );
    first.stop().await.unwrap();
    second.stop().await.unwrap();
    events.drop_database().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documents_are_typed_listed_by_prefix_and_deleted() {
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Profile {
        name: String,
        visits: u32,
    }

    let read = common::read_database().await;
    let mut batch = read.begin(SCOPE).await.unwrap();
    let hostile = "k'; DROP TABLE read_documents; --\u{1F600}";
    for (key, visits) in [("user:1", 1), ("user:2", 2), ("user:10", 10), ("admin:1", 0)] {
        batch.put("profiles", key, &Profile { name: key.into(), visits }).await.unwrap();
    }
    batch.put("profiles", hostile, &Profile { name: "x".into(), visits: 3 }).await.unwrap();
    assert_eq!(
        batch.get::<Profile>("profiles", "user:2").await.unwrap().map(|p| p.visits),
        Some(2),
        "a batch sees its own writes"
    );
    batch.delete("profiles", "user:2").await.unwrap();
    read.commit_batch(batch).await.unwrap();

    let users: Vec<(String, Profile)> = read.list("profiles", "user:").await.unwrap();
    let keys: Vec<&str> = users.iter().map(|(key, _)| key.as_str()).collect();
    assert_eq!(keys, ["user:1", "user:10"], "byte order, prefix only, deleted gone");
    assert!(read.exists("profiles", hostile).await.unwrap(), "a hostile key is only a key");
    assert!(!read.exists("profiles", "user:2").await.unwrap());
    assert_eq!(read.list::<Profile>("other", "").await.unwrap(), []);

    // Collection names are checked before they reach the database.
    for bad in ["", "Profiles", "a;b", "x\0y", &"c".repeat(64)] {
        assert!(
            matches!(
                read.get::<Profile>(bad, "k").await,
                Err(ReadModelError::Document(DocumentError::InvalidCollection(_)))
            ),
            "{bad:?}"
        );
    }
    // A value of another type is a typed error, not a panic.
    assert!(matches!(
        read.get::<String>("profiles", "user:1").await,
        Err(ReadModelError::Document(DocumentError::Codec { .. }))
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jsonb_documents_are_queryable_with_sql_and_refuse_what_jsonb_cannot_hold() {
    use composable::projection::{Cached, InMemoryCache};

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        customer: String,
        status: String,
        lines: Vec<u32>,
    }
    let order = |customer: &str, status: &str, lines: &[u32]| Order {
        customer: customer.into(),
        status: status.into(),
        lines: lines.to_vec(),
    };

    let read = common::read_database().await.with_documents(DocumentForm::Jsonb);
    let mut batch = read.begin(SCOPE).await.unwrap();
    batch.put("orders", "o-1", &order("ada", "open", &[3, 4])).await.unwrap();
    batch.put("orders", "o-2", &order("bob", "shipped", &[1])).await.unwrap();
    batch.put("orders", "o-3", &order("ada", "open", &[])).await.unwrap();
    // A backslash before `u0000` is text, not NUL: stored and read back as it was.
    batch.put("notes", "escaped", &"a\\u0000b").await.unwrap();
    // What jsonb cannot hold is refused when written, with the document named.
    let nul = batch.put("notes", "nul", &"a\0b").await.unwrap_err();
    assert!(
        matches!(&nul, ReadModelError::Document(DocumentError::Codec { key, .. }) if key == "nul"),
        "{nul}"
    );
    assert!(nul.to_string().contains("NUL"), "{nul}");
    let tuple_keys = std::collections::BTreeMap::from([((1u8, 2u8), 3u8)]);
    assert!(matches!(
        batch.put("notes", "map", &tuple_keys).await,
        Err(ReadModelError::Document(DocumentError::Codec { .. }))
    ));
    assert_eq!(
        batch.get::<Order>("orders", "o-2").await.unwrap(),
        Some(order("bob", "shipped", &[1])),
        "a batch sees its own writes"
    );
    read.commit_batch(batch).await.unwrap();

    assert_eq!(
        read.get::<Order>("orders", "o-1").await.unwrap(),
        Some(order("ada", "open", &[3, 4]))
    );
    assert_eq!(read.get::<String>("notes", "escaped").await.unwrap().as_deref(), Some("a\\u0000b"));
    assert!(!read.exists("notes", "nul").await.unwrap());
    let listed: Vec<(String, Order)> = read.list("orders", "o-").await.unwrap();
    assert_eq!(listed.len(), 3);

    // SQL reads the served documents as JSON.
    let open: Vec<(String, i32)> = sqlx::query_as(
        "SELECT key, jsonb_array_length(doc->'lines') FROM served_documents \
         WHERE collection = 'orders' AND doc->>'status' = 'open' ORDER BY key",
    )
    .fetch_all(read.pool())
    .await
    .unwrap();
    assert_eq!(open, [("o-1".to_owned(), 2), ("o-3".to_owned(), 0)]);

    // A store of the other form names the mismatch instead of misreading the bytes.
    let bytes = PostgresReadStore::new(read.pool().clone());
    assert!(matches!(
        bytes.get::<Order>("orders", "o-1").await,
        Err(ReadModelError::DocumentForm {
            stored: DocumentForm::Jsonb,
            expected: DocumentForm::Bytes,
            ..
        })
    ));

    // A cache in front keeps the JSON and decodes it as the store does.
    let cached = Cached::new(read.clone(), InMemoryCache::new(Duration::from_secs(60)));
    let mut batch = cached.begin(SCOPE).await.unwrap();
    batch.put("orders", "o-4", &order("cy", "open", &[9])).await.unwrap();
    assert_eq!(
        batch.get::<Order>("orders", "o-1").await.unwrap(),
        Some(order("ada", "open", &[3, 4]))
    );
    cached.commit_batch(batch).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            cached.get::<Order>("orders", "o-4").await.unwrap(),
            Some(order("cy", "open", &[9]))
        );
        assert_eq!(
            cached.get::<Order>("orders", "o-2").await.unwrap(),
            Some(order("bob", "shipped", &[1]))
        );
    }
    let stats = cached.stats();
    assert_eq!((stats.hits, stats.misses), (3, 1), "o-4 written through, o-2 filled on its miss");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_that_fails_parks_its_stream_and_spoils_nothing_else() {
    let events = common::test_database().await;
    let read = common::read_database().await;
    create_balances(&read).await;
    let accounts = Arc::new(AggregateRunner::<Account, _>::new(events.store.clone(), ()));
    let running = App::in_process("bank", events.store.clone())
        .aggregate(&accounts)
        .projection_runner(
            composable::projection::ProjectionRunner::new(Balances, read.clone()).attempts(2),
        )
        .build()
        .expect("the wiring is complete")
        .start();
    // In one batch: a deposit the table's CHECK refuses (its statement aborts the transaction),
    // and deposits of other owners around it.
    accounts.execute("ada", Deposit { owner: "ada".into(), cents: 5 }).await.unwrap();
    accounts.execute("zed", Deposit { owner: "zed".into(), cents: 2_000_000 }).await.unwrap();
    accounts.execute("zed", Deposit { owner: "zed".into(), cents: 1 }).await.unwrap();
    let token = accounts
        .execute("bob", Deposit { owner: "bob".into(), cents: 7 })
        .await
        .unwrap()
        .token
        .unwrap();
    running.service("projection.balances").unwrap().reached(token, WAIT).await.unwrap();
    assert_eq!(balances(&read).await, [("ada".into(), 5, 1), ("bob".into(), 7, 1)]);
    let letters = read.dead_letters("projection.balances").await.unwrap();
    assert_eq!(letters.len(), 2, "the refused deposit and the one behind it");
    assert!(letters[0].reason.contains("check constraint"), "{}", letters[0].reason);
    assert_eq!(letters[1].event.stream_id.as_str(), "account-zed");
    running.stop().await.unwrap();
    events.drop_database().await;
}
