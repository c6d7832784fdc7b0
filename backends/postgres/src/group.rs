//! Group commit: one-event appends to different streams that arrive together are written by one
//! statement, each with its own expected-version check.
//!
//! An append of one event at an exact version (or to a new stream) is handed to a few writer
//! tasks instead of taking a connection itself. A writer takes every append waiting (up to
//! [`MAX_GROUP`]) and inserts them with one `INSERT … SELECT FROM unnest(…) ON CONFLICT DO
//! NOTHING`, one transaction: each row is written only where its stream is at the version it
//! expects, and a row whose version or event id is taken is passed over, not an error. So an
//! append that conflicts is refused alone, and its caller goes on as for a refusal of its own
//! statement (`PostgresEventStore::append` finds out why). A group of one is the single-event
//! statement. When the group's statement fails as a whole, each append in it is sent again on
//! its own, so one bad append cannot fail the others.
//!
//! The events of a group share a transaction, numbered by their place in the group: a stream's
//! events stay in version order in the global log, and the log stays gap-safe, as for any
//! append (`docs/adr/0001-postgres-event-store.md`). Rows are inserted in the order of their
//! streams, whatever the order of the group, so two groups waiting on each other's rows always
//! wait in the same order and cannot deadlock.

use std::sync::Arc;

use composable::NewEvent;
use sqlx::Row;
use sqlx::postgres::PgPool;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::rows::{EventColumns, Xid8};

/// The most appends one statement writes.
pub(crate) const MAX_GROUP: usize = 64;

/// Writer tasks, so that this many group statements can be in flight at once.
const WRITERS: usize = 4;

/// The group statement: `$1` streams, `$2` expected versions (each ≥ 0), then the events'
/// columns. Returns the place in the group of each row written, with its transaction.
const APPEND_GROUP: &str = "INSERT INTO events (position, stream_id, stream_version, event_id, \
                               event_name, event_version, payload_format, payload, \
                               correlation_id, causation_id, occurred_at_ns, traceparent) \
     SELECT g.ord, g.stream_id, g.expected + 1, g.event_id, g.event_name, g.event_version, \
            g.payload_format, g.payload, g.correlation_id, g.causation_id, g.occurred_at_ns, \
            g.traceparent \
       FROM unnest($1::text[], $2::int8[], $3::uuid[], $4::text[], $5::int4[], $6::text[], \
                   $7::bytea[], $8::uuid[], $9::uuid[], $10::int8[], $11::text[]) \
            WITH ORDINALITY AS g(stream_id, expected, event_id, event_name, event_version, \
                                 payload_format, payload, correlation_id, causation_id, \
                                 occurred_at_ns, traceparent, ord) \
      WHERE g.expected = 0 \
         OR EXISTS (SELECT FROM events e \
                     WHERE e.stream_id = g.stream_id AND e.stream_version = g.expected) \
     ORDER BY g.stream_id, g.expected \
     ON CONFLICT DO NOTHING \
     RETURNING position, transaction_id";

/// One append waiting for its group.
struct Grouped {
    stream: String,
    /// The version the event goes after: 0 for a new stream.
    expected: i64,
    event: NewEvent,
    reply: oneshot::Sender<Outcome>,
}

/// What became of an append sent with a group.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// Written by transaction `writer`, as event `position` of it.
    Written { writer: u64, position: u64 },
    /// Passed over: the stream was not at the expected version, or the version or the event
    /// id was taken. The caller finds out which, as for its own statement.
    Refused,
    /// The group could not be written, or the writers are gone: send it on its own.
    Alone,
}

/// The queue the writer tasks take groups from; they stop when every sender is gone.
#[derive(Debug, Clone)]
pub(crate) struct GroupCommit {
    queue: mpsc::UnboundedSender<Grouped>,
}

impl GroupCommit {
    /// Starts the writer tasks on the current tokio runtime.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (queue, waiting) = mpsc::unbounded_channel();
        let waiting = Arc::new(Mutex::new(waiting));
        for _ in 0..WRITERS {
            tokio::spawn(write_groups(pool.clone(), waiting.clone()));
        }
        Self { queue }
    }

    /// Sends `event`, for `stream` after version `expected` (0 for a new stream), with the
    /// next group and waits for its outcome.
    pub(crate) async fn append(&self, stream: &str, expected: i64, event: NewEvent) -> Outcome {
        let (reply, outcome) = oneshot::channel();
        let grouped = Grouped { stream: stream.to_owned(), expected, event, reply };
        if self.queue.send(grouped).is_err() {
            return Outcome::Alone;
        }
        outcome.await.unwrap_or(Outcome::Alone)
    }
}

async fn write_groups(pool: PgPool, waiting: Arc<Mutex<mpsc::UnboundedReceiver<Grouped>>>) {
    loop {
        let mut group = Vec::new();
        {
            let mut waiting = waiting.lock().await;
            match waiting.recv().await {
                Some(first) => group.push(first),
                None => return,
            }
            while group.len() < MAX_GROUP {
                match waiting.try_recv() {
                    Ok(next) => group.push(next),
                    Err(_) => break,
                }
            }
        }
        write(&pool, group).await;
    }
}

/// Writes `group` with one statement and answers each of its appends.
async fn write(pool: &PgPool, group: Vec<Grouped>) {
    if group.len() == 1 {
        // Alone, the single-event statement of the caller is the cheaper one.
        for grouped in group {
            let _ = grouped.reply.send(Outcome::Alone);
        }
        return;
    }
    let streams: Vec<&str> = group.iter().map(|g| g.stream.as_str()).collect();
    let expected: Vec<i64> = group.iter().map(|g| g.expected).collect();
    let Ok(columns) = EventColumns::of(group.iter().map(|g| &g.event)) else {
        // A time out of range, which the append checked before grouping (`EventColumns::of`
        // there too): sent alone, it reports its own error.
        for grouped in group {
            let _ = grouped.reply.send(Outcome::Alone);
        }
        return;
    };
    let written = columns
        .bind_arrays(sqlx::query(APPEND_GROUP).bind(&streams).bind(&expected))
        .fetch_all(pool)
        .await;
    let mut outcomes: Vec<Outcome> = group.iter().map(|_| Outcome::Refused).collect();
    match written {
        Ok(rows) => {
            for row in rows {
                let read = row
                    .try_get::<i64, _>(0)
                    .and_then(|position| Ok((position, row.try_get::<Xid8, _>(1)?)));
                let Ok((position, Xid8(writer))) = read else {
                    // A row written but unreadable: its append finds out what it wrote.
                    outcomes = group.iter().map(|_| Outcome::Alone).collect();
                    break;
                };
                let place = usize::try_from(position - 1).ok().filter(|&place| place < group.len());
                let (Some(place), Ok(position)) = (place, u64::try_from(position)) else {
                    outcomes = group.iter().map(|_| Outcome::Alone).collect();
                    break;
                };
                outcomes[place] = Outcome::Written { writer, position };
            }
        }
        Err(error) => {
            tracing::debug!(%error, appends = group.len(), "a group append failed; sending each alone");
            outcomes = group.iter().map(|_| Outcome::Alone).collect();
        }
    }
    for (grouped, outcome) in group.into_iter().zip(outcomes) {
        let _ = grouped.reply.send(outcome);
    }
}
