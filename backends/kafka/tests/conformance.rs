//! The Kafka bus passes the bus conformance suite that the in-memory bus passes too, against a
//! real broker (`KAFKA_BROKERS`; `scripts/test` starts a private tansu broker).

mod common;

use composable_kafka::CommitMode;

composable_conformance::bus_conformance!(
    |setup: composable_conformance::bus::BusSetup| async move {
        // Synchronous commits: "an acknowledged message does not come again" holds across a member
        // leaving the group only once the commit has reached the broker.
        let config = common::config().redelivery(setup.policy).commit_mode(CommitMode::Sync);
        let bus = common::bus_with(config).await;
        let topics: Vec<&str> = setup.topics.iter().map(String::as_str).collect();
        common::create_topics(&bus, &topics, 1).await;
        bus
    }
);
