//! What the PostgreSQL tests of the example share: the binary, a fresh database per test.

#![allow(dead_code, unreachable_pub)]

use std::process::{Command, Stdio};

use sqlx::{Connection, Executor, PgConnection};

pub const BINARY: &str = env!("CARGO_BIN_EXE_order-processing");

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").ok().filter(|url| !url.is_empty()).unwrap_or_else(|| {
        panic!(
            "DATABASE_URL is not set: run `scripts/test` (it starts a private PostgreSQL), or \
             `source scripts/lib/postgres.sh && pg_start` in this shell first"
        )
    })
}

/// A fresh database on the test server, dropped at the end.
pub struct Database {
    admin: PgConnection,
    pub name: String,
    pub url: String,
}

impl Database {
    pub async fn create() -> Self {
        let admin_url = database_url();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL at {admin_url}: {error}"));
        let name = format!("orders_crash_{}", uuid::Uuid::now_v7().simple());
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("create database");
        let (base, _) = admin_url.rsplit_once('/').expect("a database URL ends in /name");
        let url = format!("{base}/{name}");
        Self { admin, name, url }
    }

    /// A connection of its own.
    pub async fn connect(&self) -> PgConnection {
        PgConnection::connect(&self.url).await.expect("connect to the test database")
    }

    pub async fn drop(mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        self.admin.execute(sqlx::AssertSqlSafe(sql)).await.expect("drop database");
    }
}

/// The example's binary on the event store at `url`.
pub fn order_processing(url: &str, args: &[&str]) -> Command {
    let mut command = Command::new(BINARY);
    command.args(args).env("DATABASE_URL", url).stdin(Stdio::null());
    command
}
