//! Shared set-up of the PostgreSQL tests: every test gets a fresh database on the server named
//! by `DATABASE_URL`, with the migrations applied.

#![allow(dead_code, unreachable_pub)]

use std::time::Duration;

use composable_postgres::{PgConnectOptions, PostgresEventStore};
use sqlx::{Connection, PgConnection};

const HOW_TO_START: &str = "start PostgreSQL for these tests with `scripts/test` (it starts \
    and stops a private server), or in this shell with \
    `source scripts/lib/postgres.sh && pg_start`, which exports DATABASE_URL (and PGDATA_DIR \
    for the restart test)";

/// The server the tests run against.
pub fn database_url() -> String {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => url,
        _ => panic!("DATABASE_URL is not set: {HOW_TO_START}"),
    }
}

pub fn admin_options() -> PgConnectOptions {
    let url = database_url();
    url.parse().unwrap_or_else(|error| panic!("DATABASE_URL `{url}` is not a valid URL: {error}"))
}

pub async fn admin_connection() -> PgConnection {
    let options = admin_options();
    match tokio::time::timeout(Duration::from_secs(10), PgConnection::connect_with(&options)).await
    {
        Ok(Ok(connection)) => connection,
        Ok(Err(error)) => panic!(
            "cannot reach PostgreSQL at DATABASE_URL={}: {error}; {HOW_TO_START}",
            database_url()
        ),
        Err(_) => panic!(
            "PostgreSQL at DATABASE_URL={} did not answer within 10 s; {HOW_TO_START}",
            database_url()
        ),
    }
}

/// A database created for one test.
#[derive(Debug)]
pub struct TestDatabase {
    pub name: String,
    pub store: PostgresEventStore,
}

impl TestDatabase {
    /// Options for another connection to this test's database.
    pub fn options(&self) -> PgConnectOptions {
        admin_options().database(&self.name)
    }

    /// A connection of its own to this test's database, outside the store's pool.
    pub async fn connection(&self) -> PgConnection {
        PgConnection::connect_with(&self.options())
            .await
            .unwrap_or_else(|error| panic!("connect to {}: {error}", self.name))
    }

    /// Closes the store's pool and drops the database.
    pub async fn drop_database(self) {
        self.store.pool().close().await;
        let mut admin = admin_connection().await;
        let _ = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
            self.name
        )))
        .execute(&mut admin)
        .await;
    }
}

/// Creates a fresh, migrated database and a store on it.
pub async fn test_database() -> TestDatabase {
    let name = format!("composable_test_{}", uuid::Uuid::now_v7().simple());
    let mut admin = admin_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    drop(admin);
    let store = PostgresEventStore::builder()
        .connect_options(admin_options().database(&name))
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error}"));
    store.migrate().await.unwrap_or_else(|error| panic!("migrate {name}: {error}"));
    TestDatabase { name, store }
}

/// A fresh store, for the conformance suite. Its database is left to the test server, which
/// `pg_stop` removes whole.
pub async fn fresh_store() -> PostgresEventStore {
    test_database().await.store
}

/// Creates a fresh database with only the read side's tables (no event store): a read
/// database of its own, as "true CQRS separation" has it.
pub async fn read_database() -> composable_postgres::PostgresReadStore {
    let name = format!("composable_read_{}", uuid::Uuid::now_v7().simple());
    let mut admin = admin_connection().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
        .execute(&mut admin)
        .await
        .unwrap_or_else(|error| panic!("CREATE DATABASE {name}: {error}"));
    drop(admin);
    let pool = composable_postgres::PgPoolOptions::new()
        .max_connections(8)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(admin_options().database(&name))
        .await
        .unwrap_or_else(|error| panic!("connect to {name}: {error}"));
    let read = composable_postgres::PostgresReadStore::new(pool);
    read.migrate().await.unwrap_or_else(|error| panic!("migrate {name}: {error}"));
    read
}
