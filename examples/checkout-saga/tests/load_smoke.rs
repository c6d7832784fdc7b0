//! A few seconds of the load generator (`checkout_saga::load`) at a small rate: it starts the
//! hosted checkout as six `checkout-service` processes (command service ×2, saga ×2, relay,
//! board) on a database and topic prefix of its own, with metrics and traces on, kills one
//! process of each role with SIGKILL during the run and starts it again, and audits the result:
//! every order completed or compensated, money and stock balanced, nothing lost, nothing
//! applied twice, the board in agreement. The latencies were recorded, and the lags sampled.
//!
//! Needs `DATABASE_URL` and `KAFKA_BROKERS` (`scripts/test` starts a private PostgreSQL and a
//! tansu broker and sets both). The full run is a benchmark: see `docs/performance.md`.

use checkout_saga::load::{self, Options};

const HOW_TO_START: &str = "run `scripts/test` (it starts a private PostgreSQL and a tansu \
    broker), or in this shell `source scripts/lib/common.sh && source scripts/lib/postgres.sh && \
    source scripts/lib/kafka.sh && pg_start && kafka_start`, which export DATABASE_URL and \
    KAFKA_BROKERS";

fn require(name: &str) {
    let set = std::env::var(name).is_ok_and(|value| !value.is_empty());
    assert!(set, "{name} is not set: {HOW_TO_START}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_short_load_with_a_kill_of_each_role_passes_its_audit() {
    require("DATABASE_URL");
    require("KAFKA_BROKERS");
    let options = Options::from_args([
        "checkout-load",
        "--spawn",
        "--kill",
        "--rate",
        "8",
        "--duration",
        "12",
        "--service-bin",
        env!("CARGO_BIN_EXE_checkout-service"),
        "--raw-clients",
        "2",
        "--raw-secs",
        "1",
        "--drain-secs",
        "60",
        // A loaded machine (and debug builds) may start a task late now and then, and a killed
        // saga's claim and restart cost seconds: the smoke checks the audit.
        "--max-lateness-ms",
        "1000",
        // A command in flight to the killed command service is sent again only after the
        // saga's 30 s reply timeout, which the saga's lag then includes.
        "--max-lag-secs",
        "60",
    ])
    .expect("the options");
    let report = load::run(&options)
        .await
        .unwrap_or_else(|error| panic!("the load could not run: {error}; {HOW_TO_START}"));
    println!("{report}");
    assert!(report.passed(), "the load failed:\n{report}");
    assert_eq!(report.orders, 96, "every order was placed");
    assert_eq!(report.latency.count, report.orders, "a latency for every checkout:\n{report}");
    assert!(report.latency.p50 > 0.0 && report.latency.max >= report.latency.p99);
    assert!(report.plain > 0 && report.plain_latency.count == report.plain);
    assert_eq!(report.kills.len(), 4, "one kill per role:\n{report}");
    assert!(report.kills.iter().all(|kill| kill.contains("restarted")), "{report}");
    for consumer in ["checkout.relay", "board"] {
        assert!(
            report.lags.iter().any(|lag| lag.series.contains(consumer)),
            "no lag sampled for {consumer}:\n{report}"
        );
    }
    assert!(report.spans.is_some_and(|spans| spans > 0), "no traces exported:\n{report}");
    assert!(report.raw_ceiling.is_some_and(|(rate, _)| rate > 0.0));
}
