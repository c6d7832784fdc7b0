//! The store survives a PostgreSQL restart: the same instance, on the same pool, appends and
//! reads again once the server is back, and fails with `Unavailable` (never a panic) meanwhile.
//!
//! Its own test binary, because restarting the server breaks every other test's connections.

#![allow(clippy::unwrap_used)] // test helpers: a failure is the test failing

mod common;

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use composable::event_store::EventStoreError;
use composable::{EventStore, ExpectedVersion, StreamId, Version};
use composable_conformance::event_store::new_events;
use futures::TryStreamExt;

fn restart_server() {
    let data = std::env::var("PGDATA_DIR").unwrap_or_else(|_| {
        panic!(
            "PGDATA_DIR is not set: the restart test restarts the server it runs against. Start \
             PostgreSQL with `scripts/test`, or `source scripts/lib/postgres.sh && pg_start`, \
             which export DATABASE_URL and PGDATA_DIR"
        )
    });
    let log = PathBuf::from(&data)
        .parent()
        .map(|dir| dir.join("postgres.log"))
        .unwrap_or_else(|| PathBuf::from("/tmp/postgres-restart.log"));
    let pg_ctl_args =
        ["-D", data.as_str(), "-l", log.to_str().unwrap(), "-w", "restart", "-m", "fast"];
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
        .unwrap_or(false);
    let mut command = if is_root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--", "pg_ctl"]);
        command
    } else {
        Command::new("pg_ctl")
    };
    let status = command
        .args(pg_ctl_args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .unwrap_or_else(|error| panic!("run pg_ctl restart: {error}"));
    assert!(status.success(), "pg_ctl restart failed: {status}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_store_keeps_working_across_a_server_restart() {
    let db = common::test_database().await;
    let store = &db.store;
    let s = StreamId::new("restart", 1).unwrap();
    store.append(&s, ExpectedVersion::NoStream, new_events(0, 2)).await.unwrap();
    // A writer keeps appending through the restart: while the server is down every failure
    // must be a typed `Unavailable`.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let hammer = {
        let (store, stop) = (store.clone(), std::sync::Arc::clone(&stop));
        tokio::spawn(async move {
            let s = StreamId::new("restart", 2).unwrap();
            let (mut ok, mut unavailable) = (0u32, 0u32);
            let mut tag = 100;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                tag += 1;
                match store.append(&s, ExpectedVersion::Any, new_events(tag, 1)).await {
                    Ok(_) => ok += 1,
                    Err(EventStoreError::Unavailable { .. }) => unavailable += 1,
                    Err(other) => panic!("a writer during the restart got {other}"),
                }
            }
            (ok, unavailable)
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    tokio::task::spawn_blocking(restart_server).await.unwrap();

    let deadline = Instant::now() + Duration::from_secs(30);
    let mut transient_failures = 0;
    let batch = new_events(2, 2);
    let appended = loop {
        match store.append(&s, ExpectedVersion::Exact(Version(2)), batch.clone()).await {
            Ok(result) => break result,
            Err(error @ EventStoreError::Unavailable { .. }) => {
                transient_failures += 1;
                assert!(Instant::now() < deadline, "still unavailable after 30 s: {error}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(other) => panic!("expected success or Unavailable after a restart, got {other}"),
        }
    };
    assert_eq!(appended.last_version, Version(4));
    let events: Vec<_> = store.read_stream(&s, Version::ZERO).try_collect().await.unwrap();
    assert_eq!(events.len(), 4);
    assert!(transient_failures < 50, "{transient_failures} failures before the pool reconnected");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, unavailable) = hammer.await.unwrap();
    assert!(ok > 0, "the concurrent writer appended nothing");
    eprintln!(
        "after the restart: {transient_failures} transient failures before the first append; \
         concurrent writer: {ok} appends, {unavailable} Unavailable"
    );
    db.drop_database().await;
}
