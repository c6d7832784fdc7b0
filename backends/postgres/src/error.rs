//! How database failures become [`EventStoreError`]s, and the errors of setting a store up.

use composable::event_store::EventStoreError;

/// Setting up a [`crate::PostgresEventStore`] failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PostgresError {
    /// The connection URL could not be parsed.
    #[error("invalid PostgreSQL connection URL: {0}")]
    InvalidUrl(#[source] sqlx::Error),
    /// The builder was given neither a URL nor connect options.
    #[error("no connection given: call `url` or `connect_options` on the builder")]
    NoConnection,
    /// The schema name is not a plain identifier.
    #[error("schema name `{0}` must be a non-empty identifier of letters, digits and `_`")]
    InvalidSchema(String),
    /// The first connection could not be opened.
    #[error("could not connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// Creating the schema or running the migrations failed.
    #[error("could not migrate the event store schema: {0}")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

/// Whether `error` means the database could not be reached or the connection was lost, so the
/// same operation may succeed later.
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(database) => {
            database.code().is_some_and(|code| {
                // 08: connection exception; 53: insufficient resources (too many connections);
                // 57P01-57P03: the server is shutting down, crashed or starting up.
                code.starts_with("08")
                    || code.starts_with("53")
                    || matches!(&*code, "57P01" | "57P02" | "57P03")
            }) || is_serialization_failure(error)
        }
        _ => false,
    }
}

/// Maps a database error met while doing `operation`.
pub(crate) fn store_error(operation: &'static str, error: sqlx::Error) -> EventStoreError {
    if is_transient(&error) {
        EventStoreError::Unavailable { operation, source: Box::new(error) }
    } else {
        EventStoreError::Backend { operation, source: Box::new(error) }
    }
}

/// The name of the unique constraint `error` violated, if it is a unique violation.
pub(crate) fn unique_violation(error: &sqlx::Error) -> Option<&str> {
    match error {
        sqlx::Error::Database(database) if database.code().as_deref() == Some("23505") => {
            Some(database.constraint().unwrap_or(""))
        }
        _ => None,
    }
}

/// Whether `error` is a serialization failure or a deadlock (`40001`, `40P01`): the statement
/// lost a race with another transaction, and sending it again decides it afresh.
pub(crate) fn is_serialization_failure(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(database) => {
            matches!(database.code().as_deref(), Some("40001" | "40P01"))
        }
        _ => false,
    }
}
