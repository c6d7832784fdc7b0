//! Wake-ups through `LISTEN/NOTIFY`: readers of the global log in any process learn of appends
//! without polling.
//!
//! After an append commits, the store bumps a local watch (readers in this process wake at once)
//! and asks a notifier task to send `NOTIFY composable_events` on a pooled connection; a
//! listener task per store (started when the first reader asks) `LISTEN`s on that channel and
//! bumps the same watch. The notifier coalesces: while one `NOTIFY` is in flight, any number of
//! appends ask for one more.
//!
//! The `NOTIFY` is sent after the append's commit, in a transaction of its own, not inside the
//! append: PostgreSQL serialises the commits of every transaction that notifies (it takes a
//! database-wide lock in `PreCommit_Notify` until the commit record is flushed), which would
//! undo group commit for concurrent appends. A notification is only a hint — readers still read
//! gap-safe and poll as a fallback — so one lost with a crash between the commit and the
//! `NOTIFY` only delays a reader until its next poll. `docs/adr/0007-consumers-and-services.md`
//! records the choice.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use composable::backoff::{Backoff, Failures};
use composable::event_store::Appends;
use composable::{Clock, SystemClock};
use sqlx::postgres::{PgListener, PgPool};
use tokio::sync::{Notify, watch};

/// The channel of a store without a schema; with one it is `composable_events_{schema}`, so
/// stores in different schemas of one database do not wake each other.
const CHANNEL: &str = "composable_events";

/// A store's notification state, shared by its clones.
#[derive(Debug)]
pub(crate) struct Notifications {
    channel: String,
    pool: PgPool,
    /// Bumped for every append seen, here or (through the listener) elsewhere.
    appended: watch::Sender<u64>,
    /// Asks the notifier for one more `NOTIFY`; `notify_one` keeps at most one request.
    outgoing: Arc<Notify>,
    /// Dropped with the store: both tasks end.
    alive: watch::Sender<()>,
    notifier_started: AtomicBool,
    listener_started: AtomicBool,
}

impl Notifications {
    pub(crate) fn new(pool: PgPool, schema: Option<&str>) -> Self {
        let channel = match schema {
            // The builder checked that a schema is a plain identifier.
            Some(schema) => format!("{CHANNEL}_{schema}"),
            None => CHANNEL.to_owned(),
        };
        Self {
            channel,
            pool,
            appended: watch::channel(0).0,
            outgoing: Arc::new(Notify::new()),
            alive: watch::channel(()).0,
            notifier_started: AtomicBool::new(false),
            listener_started: AtomicBool::new(false),
        }
    }

    /// An append committed: wake this process's readers, and the others through `NOTIFY`.
    pub(crate) fn appended(&self) {
        self.appended.send_modify(|count| *count = count.wrapping_add(1));
        if !self.notifier_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(notifier(
                self.pool.clone(),
                self.channel.clone(),
                Arc::clone(&self.outgoing),
                self.alive.subscribe(),
            ));
        }
        self.outgoing.notify_one();
    }

    /// Wake-ups for a reader; the first call starts listening.
    pub(crate) fn subscribe(&self) -> Appends {
        if !self.listener_started.swap(true, Ordering::AcqRel) {
            tokio::spawn(listener(
                self.pool.clone(),
                self.channel.clone(),
                self.appended.clone(),
                self.alive.subscribe(),
            ));
        }
        composable::backend::appends(self.appended.subscribe())
    }
}

/// Completes once the store (every clone of it) is gone.
async fn store_gone(alive: &mut watch::Receiver<()>) {
    while alive.changed().await.is_ok() {}
}

/// Sends one `NOTIFY` per request, until the store is gone or its pool closed.
async fn notifier(
    pool: PgPool,
    channel: String,
    outgoing: Arc<Notify>,
    mut alive: watch::Receiver<()>,
) {
    loop {
        tokio::select! {
            () = outgoing.notified() => {}
            () = store_gone(&mut alive) => return,
        }
        if pool.is_closed() {
            return;
        }
        if let Err(error) =
            sqlx::query("SELECT pg_notify($1, '')").bind(&channel).execute(&pool).await
        {
            // Readers fall back to polling; the next append tries again.
            tracing::debug!(%channel, %error, "sending NOTIFY failed");
        }
    }
}

/// Listens on `channel` and bumps `appended` for every notification, reconnecting with a
/// back-off; every (re)connection counts as a wake-up too, since notifications may have been
/// missed while not listening.
async fn listener(
    pool: PgPool,
    channel: String,
    appended: watch::Sender<u64>,
    mut alive: watch::Receiver<()>,
) {
    let mut failures = Failures::new(
        Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_secs(5)),
    );
    while !pool.is_closed() {
        let error = tokio::select! {
            error = listen(&pool, &channel, &appended, &mut failures) => error,
            () = store_gone(&mut alive) => return,
        };
        let wait = failures.failed().unwrap_or(Duration::ZERO);
        tracing::debug!(%channel, %error, retry_in = ?wait, "LISTEN failed; readers poll meanwhile");
        tokio::select! {
            () = SystemClock.sleep(wait) => {}
            () = store_gone(&mut alive) => return,
        }
    }
}

/// Listens until the connection fails for good; the error.
async fn listen(
    pool: &PgPool,
    channel: &str,
    appended: &watch::Sender<u64>,
    failures: &mut Failures,
) -> sqlx::Error {
    let bump = || appended.send_modify(|count| *count = count.wrapping_add(1));
    let mut listener = match PgListener::connect_with(pool).await {
        Ok(listener) => listener,
        Err(error) => return error,
    };
    if let Err(error) = listener.listen(channel).await {
        return error;
    }
    bump();
    failures.succeeded();
    loop {
        // `None`: the connection dropped, and the next call reconnects and listens again.
        if let Err(error) = listener.try_recv().await {
            return error;
        }
        bump();
    }
}
