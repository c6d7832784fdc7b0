//! What the tests that run `checkout-service` as a real process share: the process, a database
//! of their own, and scraping its metrics. They need `DATABASE_URL` and `KAFKA_BROKERS` and fail
//! with how to start them when either is missing.

// Each suite that has the support module uses some of it.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
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

/// The variable `name`, which must be set: the test fails saying how to start the services.
pub fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

/// A database of the test's own on the server of `DATABASE_URL`, with the event store's tables;
/// [`drop`](Self::drop) it at the end.
pub struct Database {
    pub store: PostgresEventStore,
    /// Its URL, for the processes.
    pub url: String,
    /// A prefix of its own for the topics and consumer groups (`CHECKOUT_TOPIC_PREFIX`).
    pub prefix: String,
    name: String,
    admin: PgConnection,
}

impl Database {
    /// A new database `{prefix}_{unique}`.
    pub async fn create(prefix: &str) -> Self {
        let admin_options: PgConnectOptions =
            env("DATABASE_URL").parse().expect("a valid DATABASE_URL");
        let mut admin = PgConnection::connect_with(&admin_options)
            .await
            .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
        let id = uuid::Uuid::now_v7().simple();
        let name = format!("{prefix}_{id}");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .expect("a database");
        let store = PostgresEventStore::builder()
            .connect_options(admin_options.clone().database(&name))
            .max_connections(4)
            .connect()
            .await
            .expect("the test database");
        store.migrate().await.expect("migrations");
        let url = format!(
            "{}/{name}",
            env("DATABASE_URL").rsplit_once('/').expect("a URL with a database").0
        );
        Self { store, url, prefix: format!("t{id}."), name, admin }
    }

    /// Closes the pool and drops the database.
    pub async fn drop(mut self) {
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

/// One `checkout-service` process.
pub struct Process {
    child: Child,
    roles: &'static str,
}

impl Process {
    pub fn start(database_url: &str, prefix: &str, roles: &'static str) -> Self {
        Self::serving_metrics(database_url, prefix, roles, None)
    }

    /// As [`start`](Self::start), serving its metrics on `metrics` when given.
    pub fn serving_metrics(
        database_url: &str,
        prefix: &str,
        roles: &'static str,
        metrics: Option<SocketAddr>,
    ) -> Self {
        let metrics = metrics.map(|address| ("CHECKOUT_METRICS_ADDR", address.to_string()));
        Self::with_env(database_url, prefix, roles, metrics.as_slice())
    }

    /// As [`start`](Self::start), with the variables `envs` set too.
    pub fn with_env(
        database_url: &str,
        prefix: &str,
        roles: &'static str,
        envs: &[(&str, String)],
    ) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_checkout-service"))
            .envs(envs.iter().map(|(name, value)| (name, value)))
            .args(["--role", roles])
            .env("DATABASE_URL", database_url)
            .env("KAFKA_BROKERS", env("KAFKA_BROKERS"))
            .env("CHECKOUT_TOPIC_PREFIX", prefix)
            .env("CHECKOUT_CLAIM_TTL_MS", CLAIM_TTL_MS.to_string())
            .stdin(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("start checkout-service --role {roles}: {error}"));
        Self { child, roles }
    }

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

    /// SIGTERM, then the exit status, within 30 s: how long it took to exit.
    pub fn terminate(mut self) -> Duration {
        self.signal("TERM");
        let sent = Instant::now();
        let deadline = sent + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for the process") {
                assert!(status.success(), "--role {} exited with {status} on SIGTERM", self.roles);
                return sent.elapsed();
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

/// A loopback address with a port free now.
pub fn free_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free port");
    listener.local_addr().expect("its address")
}

/// What a process answers to `GET {path}`: the whole response, status line first.
pub fn get(address: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes(),
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    Ok(text)
}

/// What a process serves at `http://{address}{path}`, once it answers 200 (within `within`).
pub fn get_ok(address: SocketAddr, path: &str, within: Duration) -> String {
    let deadline = Instant::now() + within;
    loop {
        match get(address, path) {
            Ok(text) if text.starts_with("HTTP/1.1 200") => return text,
            other => assert!(Instant::now() < deadline, "no 200 at {address}{path}: {other:?}"),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The text a process serves at `http://{address}/metrics`, once it answers (within 30 s).
pub fn scrape(address: SocketAddr) -> String {
    get_ok(address, "/metrics", Duration::from_secs(30))
}
