//! Saga timers on PostgreSQL: the `timers` table, claimed with `FOR UPDATE SKIP LOCKED` under a
//! lease, so that several runners share the due timers without firing one twice at once.
//!
//! A timer fires *once* because firing is idempotent, not because the claim is perfect: the saga
//! records the timer's id in the instance's stream before the timer is marked fired, and ignores
//! a timer it has recorded. A runner that dies between the two leaves the timer leased; once the
//! lease runs out, another runner claims it, finds it recorded, and marks it fired.

use std::time::Duration;

use chrono::{DateTime, Utc};
use composable::saga::{Timer, TimerError, TimerStore};
use sqlx::Row;
use sqlx::postgres::{PgPool, PgRow};
use uuid::Uuid;

use crate::error::is_transient;

const CLAIM: &str = "UPDATE timers SET leased_until = $3 \
     WHERE timer_id IN ( \
         SELECT timer_id FROM timers \
         WHERE saga = $1 AND fired_at IS NULL AND due_at <= $2 \
           AND (leased_until IS NULL OR leased_until <= $2) \
         ORDER BY due_at, timer_id LIMIT $4 \
         FOR UPDATE SKIP LOCKED) \
     RETURNING timer_id, saga, saga_key, step, correlation_id, due_at";

/// A [`TimerStore`] on PostgreSQL, in the database (and schema) of the event store. Run
/// [`PostgresEventStore::migrate`](crate::PostgresEventStore::migrate) first: it creates the
/// `timers` table.
///
/// ```no_run
/// use composable_postgres::{PostgresEventStore, PostgresTimerStore};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let store = PostgresEventStore::connect("postgres://postgres@127.0.0.1:5432/app").await?;
/// store.migrate().await?;
/// let timers = PostgresTimerStore::new(store.pool().clone());
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
pub struct PostgresTimerStore {
    pool: PgPool,
}

impl PostgresTimerStore {
    /// Timers in the database `pool` connects to.
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }

    /// The connection pool.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn timer_error(operation: &'static str, error: sqlx::Error) -> TimerError {
    if is_transient(&error) {
        TimerError::Unavailable { operation, source: Box::new(error) }
    } else {
        TimerError::Backend { operation, source: Box::new(error) }
    }
}

fn timer(row: &PgRow) -> Result<Timer, TimerError> {
    let id: Uuid = row.try_get(0).map_err(|error| timer_error("read a timer", error))?;
    let corrupt = |error: sqlx::Error| TimerError::Corrupt { id, reason: error.to_string() };
    Ok(Timer {
        id,
        saga: row.try_get(1).map_err(corrupt)?,
        key: row.try_get(2).map_err(corrupt)?,
        step: row.try_get(3).map_err(corrupt)?,
        correlation_id: row.try_get(4).map_err(corrupt)?,
        due_at: row.try_get(5).map_err(corrupt)?,
    })
}

impl TimerStore for PostgresTimerStore {
    async fn schedule(&self, timer: Timer) -> Result<(), TimerError> {
        // A repeated id is the same timer scheduled again by a retried step: nothing changes.
        sqlx::query(
            "INSERT INTO timers (timer_id, saga, saga_key, step, correlation_id, due_at) \
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (timer_id) DO NOTHING",
        )
        .bind(timer.id)
        .bind(&timer.saga)
        .bind(&timer.key)
        .bind(&timer.step)
        .bind(timer.correlation_id)
        .bind(timer.due_at)
        .execute(&self.pool)
        .await
        .map_err(|error| timer_error("schedule a timer", error))?;
        Ok(())
    }

    async fn cancel(&self, id: Uuid) -> Result<(), TimerError> {
        sqlx::query("DELETE FROM timers WHERE timer_id = $1")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|error| timer_error("cancel a timer", error))?;
        Ok(())
    }

    async fn claim_due(
        &self,
        saga: &str,
        now: DateTime<Utc>,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<Timer>, TimerError> {
        let lease = chrono::Duration::from_std(lease).unwrap_or(chrono::Duration::MAX);
        let until = now.checked_add_signed(lease).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let rows = sqlx::query(CLAIM)
            .bind(saga)
            .bind(now)
            .bind(until)
            .bind(i64::try_from(limit).unwrap_or(i64::MAX))
            .fetch_all(&self.pool)
            .await
            .map_err(|error| timer_error("claim due timers", error))?;
        let mut timers = rows.iter().map(timer).collect::<Result<Vec<_>, _>>()?;
        // RETURNING keeps no order.
        timers.sort_by_key(|timer| (timer.due_at, timer.id));
        Ok(timers)
    }

    async fn complete(&self, id: Uuid) -> Result<(), TimerError> {
        sqlx::query("UPDATE timers SET fired_at = now() WHERE timer_id = $1 AND fired_at IS NULL")
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(|error| timer_error("mark a timer fired", error))?;
        Ok(())
    }
}
