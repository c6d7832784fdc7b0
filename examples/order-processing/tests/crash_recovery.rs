//! On PostgreSQL: a process adding items to one order is killed mid-run; a new process rebuilds
//! the order from its latest snapshot and the events after it, and finds every committed event.
//!
//! Needs `DATABASE_URL` (`scripts/test` starts a private PostgreSQL and sets it).

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;
use std::time::Duration;

mod common;

use common::{Database, order_processing};

/// `1 Placed items=K total=T vV snapshot=S` → (K, T, V, S).
fn parse_show(line: &str) -> (u64, u64, u64, Option<u64>) {
    let field = |prefix: &str| {
        line.split_whitespace()
            .find_map(|word| word.strip_prefix(prefix))
            .unwrap_or_else(|| panic!("no `{prefix}` in {line:?}"))
            .to_owned()
    };
    let number = |prefix: &str| field(prefix).parse::<u64>().expect("a number");
    let snapshot = field("snapshot=");
    let snapshot = (snapshot != "none").then(|| snapshot.parse().expect("a version"));
    (number("items="), number("total="), number("v"), snapshot)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_process_loses_no_committed_event() {
    let database = Database::create().await;

    let mut child = order_processing(&database.url, &["grow", "1", "1000000"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child process");
    let stdout = child.stdout.take().expect("piped stdout");
    let (versions, arrived) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let version = line.rsplit_once(" v").and_then(|(_, v)| v.parse::<u64>().ok());
            if versions.send(version).is_err() {
                break;
            }
        }
    });
    // Let it commit past two snapshots (every 100 events), then kill it without warning.
    let reported = loop {
        match arrived.recv_timeout(Duration::from_secs(120)) {
            Ok(Some(version)) if version >= 250 => break version,
            Ok(_) => {}
            Err(error) => panic!("the child stopped reporting progress: {error}"),
        }
    };
    child.kill().expect("kill the child");
    child.wait().expect("reap the child");

    let output = order_processing(&database.url, &["show", "1"]).output().expect("run show");
    assert!(output.status.success(), "show failed: {}", String::from_utf8_lossy(&output.stderr));
    let line = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let (items, total, version, snapshot) = parse_show(&line);

    assert!(version >= reported, "{line}: the killed process had reported committing v{reported}");
    assert_eq!(items, version, "{line}: one item per event (the placed one, then one per add)");
    assert_eq!(total, 450 + (version - 1) * 300, "{line}: the total folds every event");
    let snapshot = snapshot.unwrap_or_else(|| panic!("{line}: the load starts from a snapshot"));
    assert!(snapshot % 100 == 0 && snapshot >= 200 && snapshot <= version, "{line}");

    database.drop().await;
}
