//! Building a [`PostgresEventStore`]: where to connect, how large a pool, which schema.

use std::time::Duration;

use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

use crate::error::PostgresError;
use crate::store::PostgresEventStore;

/// Configures and connects a [`PostgresEventStore`].
///
/// TLS and every other connection setting come from [`PgConnectOptions`], either parsed from
/// the URL (`?sslmode=verify-full&sslrootcert=/path/ca.pem`) or passed whole with
/// [`connect_options`](Self::connect_options).
///
/// ```no_run
/// use std::time::Duration;
/// use composable_postgres::{PgConnectOptions, PgSslMode, PostgresEventStore};
///
/// # async fn run() -> Result<(), composable_postgres::PostgresError> {
/// let options = PgConnectOptions::new()
///     .host("db.internal")
///     .username("app")
///     .database("app")
///     .ssl_mode(PgSslMode::VerifyFull)
///     .ssl_root_cert("/etc/ssl/db-ca.pem");
/// let store = PostgresEventStore::builder()
///     .connect_options(options)
///     .max_connections(32)
///     .acquire_timeout(Duration::from_secs(3))
///     .schema("orders")?
///     .connect()
///     .await?;
/// store.migrate().await?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresEventStoreBuilder {
    options: Option<PgConnectOptions>,
    max_connections: u32,
    min_connections: u32,
    acquire_timeout: Duration,
    check_idle_after: Duration,
    schema: Option<String>,
}

impl Default for PostgresEventStoreBuilder {
    fn default() -> Self {
        Self {
            options: None,
            max_connections: 10,
            min_connections: 0,
            acquire_timeout: Duration::from_secs(10),
            check_idle_after: Duration::from_secs(1),
            schema: None,
        }
    }
}

impl PostgresEventStoreBuilder {
    /// Connects to the database named by `url`
    /// (`postgres://user:password@host:port/database?sslmode=...`).
    ///
    /// # Errors
    /// [`PostgresError::InvalidUrl`] when the URL does not parse.
    pub fn url(mut self, url: &str) -> Result<Self, PostgresError> {
        self.options = Some(url.parse().map_err(PostgresError::InvalidUrl)?);
        Ok(self)
    }

    /// Connects with these options: host, credentials, TLS mode and certificates, and so on.
    #[must_use]
    pub fn connect_options(mut self, options: PgConnectOptions) -> Self {
        self.options = Some(options);
        self
    }

    /// The most connections the pool opens (default 10).
    #[must_use]
    pub fn max_connections(mut self, max: u32) -> Self {
        self.max_connections = max;
        self
    }

    /// The connections the pool keeps open when idle (default 0).
    #[must_use]
    pub fn min_connections(mut self, min: u32) -> Self {
        self.min_connections = min;
        self
    }

    /// How long an operation waits for a connection before it fails with
    /// [`composable::event_store::EventStoreError::Unavailable`] (default 10 s).
    #[must_use]
    pub fn acquire_timeout(mut self, timeout: Duration) -> Self {
        self.acquire_timeout = timeout;
        self
    }

    /// Keeps the store's tables in this schema (through the connections' `search_path`);
    /// [`PostgresEventStore::migrate`] creates it when missing.
    ///
    /// # Errors
    /// [`PostgresError::InvalidSchema`] unless the name is ASCII letters, digits and `_`, not
    /// starting with a digit.
    pub fn schema(mut self, schema: &str) -> Result<Self, PostgresError> {
        let valid =
            schema.chars().next().is_some_and(|first| first.is_ascii_alphabetic() || first == '_')
                && schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(PostgresError::InvalidSchema(schema.to_owned()));
        }
        self.schema = Some(schema.to_owned());
        Ok(self)
    }

    /// A pooled connection idle for at least `idle` is checked with a round trip before it is
    /// handed out (default 1 s; zero checks every one, as sqlx's `test_before_acquire` does).
    ///
    /// A connection that died with a server restart is then noticed and replaced, so the
    /// first operation after a restart does not fail on it. One in use within the last `idle`
    /// is handed out unchecked: checking it too would cost every operation a second round trip
    /// (a busy command service runs several per millisecond), and a restart within that
    /// moment fails one operation as `Unavailable`, which callers retry.
    #[must_use]
    pub fn check_idle_after(mut self, idle: Duration) -> Self {
        self.check_idle_after = idle;
        self
    }

    fn pool_options(&self) -> PgPoolOptions {
        let check_after = self.check_idle_after;
        PgPoolOptions::new()
            .max_connections(self.max_connections)
            .min_connections(self.min_connections)
            .acquire_timeout(self.acquire_timeout)
            .test_before_acquire(false)
            .before_acquire(move |connection, metadata| {
                Box::pin(async move {
                    if metadata.idle_for >= check_after {
                        connection.ping().await?;
                    }
                    Ok(true)
                })
            })
    }

    fn split(self) -> Result<(PgPoolOptions, PgConnectOptions, Self), PostgresError> {
        let mut options = self.options.clone().ok_or(PostgresError::NoConnection)?;
        if let Some(schema) = &self.schema {
            options = options.options([("search_path", schema.as_str())]);
        }
        Ok((self.pool_options(), options, self))
    }

    /// Opens the pool and checks that the database answers.
    ///
    /// # Errors
    /// [`PostgresError::NoConnection`] without a URL or options, [`PostgresError::Connect`]
    /// when the first connection fails.
    pub async fn connect(self) -> Result<PostgresEventStore, PostgresError> {
        let (pool, options, builder) = self.split()?;
        let pool = pool.connect_with(options).await.map_err(PostgresError::Connect)?;
        Ok(PostgresEventStore::with_settings(pool, builder.schema))
    }

    /// Creates the pool without connecting; connections open on first use.
    ///
    /// # Errors
    /// [`PostgresError::NoConnection`] without a URL or options.
    pub fn connect_lazy(self) -> Result<PostgresEventStore, PostgresError> {
        let (pool, options, builder) = self.split()?;
        Ok(PostgresEventStore::with_settings(pool.connect_lazy_with(options), builder.schema))
    }
}
