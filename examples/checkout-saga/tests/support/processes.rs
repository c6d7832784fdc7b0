//! `checkout-service` processes on a database and topic prefix of their own.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use composable_postgres::{PgConnectOptions, PostgresEventStore};
use sqlx::{Connection, Executor, PgConnection};

pub const HOW_TO_START: &str = "run `scripts/test` (it starts a private PostgreSQL and a tansu \
    broker), or in this shell `source scripts/lib/common.sh && source scripts/lib/postgres.sh && \
    source scripts/lib/kafka.sh && pg_start && kafka_start`, which export DATABASE_URL and \
    KAFKA_BROKERS";

/// How long a killed process's claim on the relay's or the saga's work holds up the next one.
pub const CLAIM_TTL_MS: u64 = 2_000;

/// The environment variable `name`, or a panic that says how to start the services.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

/// A database created for one test, its store migrated, and a topic prefix of its own.
pub struct Deployment {
    pub store: PostgresEventStore,
    pub database_url: String,
    pub prefix: String,
    name: String,
    admin: PgConnection,
}

impl Deployment {
    pub async fn new(label: &str) -> Self {
        let options: PgConnectOptions = env("DATABASE_URL").parse().expect("a valid DATABASE_URL");
        let mut admin = PgConnection::connect_with(&options)
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
        let id = uuid::Uuid::now_v7().simple().to_string();
        let name = format!("checkout_{label}_{id}");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("a database");
        let store = PostgresEventStore::builder()
            .connect_options(options.clone().database(&name))
            .max_connections(4)
            .connect()
            .await
            .expect("the test database");
        store.migrate().await.expect("migrations");
        let database_url = format!(
            "{}/{name}",
            env("DATABASE_URL").rsplit_once('/').expect("a URL with a database").0
        );
        Self { store, database_url, prefix: format!("{label}{id}."), name, admin }
    }

    /// A `checkout-service --role {roles}` process on this deployment, with `envs` set too.
    pub fn start(&self, roles: &'static str, envs: &[(&str, String)]) -> Process {
        let child = Command::new(env!("CARGO_BIN_EXE_checkout-service"))
            .args(["--role", roles])
            .env("DATABASE_URL", &self.database_url)
            .env("KAFKA_BROKERS", env("KAFKA_BROKERS"))
            .env("CHECKOUT_TOPIC_PREFIX", &self.prefix)
            .env("CHECKOUT_CLAIM_TTL_MS", CLAIM_TTL_MS.to_string())
            .envs(envs.iter().map(|(name, value)| (name, value)))
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start checkout-service --role {roles}: {error}"));
        Process { child, roles }
    }

    /// Closes the store and drops the database.
    pub async fn drop_database(mut self) {
        self.store.pool().close().await;
        let _ = self
            .admin
            .execute(sqlx::AssertSqlSafe(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            )))
            .await;
    }
}

/// One `checkout-service` process, killed when dropped.
pub struct Process {
    child: Child,
    roles: &'static str,
}

impl Process {
    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {}", self.child.id());
    }

    /// SIGKILL: no chance to finish anything.
    pub fn kill(mut self) {
        self.signal("KILL");
        let _ = self.child.wait();
    }

    /// SIGTERM, then the exit status, within 30 s.
    pub fn terminate(mut self) {
        self.signal("TERM");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                assert!(status.success(), "--role {} exited with {status} on SIGTERM", self.roles);
                return;
            }
            assert!(Instant::now() < deadline, "--role {} did not stop on SIGTERM", self.roles);
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
