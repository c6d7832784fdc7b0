//! The inspection commands on the checkout example's log, parsed as an application's command
//! line would parse them; outputs are snapshot-tested (ids and times masked).

use checkout_saga::board::{CheckoutBoard, OrderLine};
use checkout_saga::{
    Checkout, CheckoutSaga, DECLINED_CARD, Inventory, Order, Payment, PlaceOrder, Restock,
};
use clap::Parser;
use composable::projection::InMemoryDocuments;
use composable::saga::InMemoryTimerStore;
use composable::{InMemoryEventStore, TestClock};
use composable_cli::inspect::{Command, InspectError, Inspector};

/// An application's command line with the inspection commands mounted.
#[derive(Debug, Parser)]
enum Cli {
    #[command(subcommand)]
    Inspect(Command),
}

fn command(args: &str) -> Command {
    let Cli::Inspect(command) =
        Cli::parse_from(["app", "inspect"].into_iter().chain(args.split(' ')));
    command
}

/// Two checkouts: order 1 confirmed, order 2 declined and compensated.
async fn checkouts() -> InMemoryEventStore {
    let store = InMemoryEventStore::new();
    let clock = TestClock::new();
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), clock);
    checkout
        .inventory
        .execute("tea", Restock { quantity: 10, manual: false })
        .await
        .expect("restock");
    for (order, card) in [("1", "tok_visa"), ("2", DECLINED_CARD)] {
        let place = PlaceOrder {
            order_id: order.into(),
            sku: "tea".into(),
            quantity: 2,
            total: 900,
            card: card.into(),
        };
        checkout.orders.execute(order, place).await.expect("placed");
        checkout.saga.run_until_idle().await.expect("the saga ran");
    }
    store
}

fn inspector(store: InMemoryEventStore) -> Inspector<InMemoryEventStore> {
    Inspector::new(store)
        .aggregate::<Order>()
        .aggregate::<Payment>()
        .aggregate::<Inventory>()
        .saga::<CheckoutSaga>()
}

async fn run(args: &str) -> String {
    let inspector = inspector(checkouts().await);
    let mut out = Vec::new();
    if let Err(error) = inspector.run(command(args), &mut out).await {
        panic!("`{args}` failed: {error}");
    }
    String::from_utf8(out).expect("UTF-8 output")
}

async fn fails(args: &str) -> InspectError {
    let inspector = inspector(checkouts().await);
    match inspector.run(command(args), &mut Vec::new()).await {
        Ok(()) => panic!("`{args}` succeeded"),
        Err(error) => error,
    }
}

/// Ids and times differ from run to run.
macro_rules! assert_output {
    ($output:expr) => {
        let output = $output;
        insta::with_settings!({ filters => vec![
            (r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}", "[uuid]"),
            (r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", "[time]"),
        ]}, {
            insta::assert_snapshot!(output);
        });
    };
}

#[tokio::test]
async fn replay_shows_each_event_the_change_and_the_final_state() {
    assert_output!(run("replay order-1").await);
}

#[tokio::test]
async fn replay_stops_at_a_version_and_shows_from_another() {
    assert_output!(run("replay inventory-tea --from 2 --to 3").await);
}

#[tokio::test]
async fn replay_of_an_empty_stream_says_so() {
    assert_output!(run("replay order-404").await);
}

#[tokio::test]
async fn events_of_a_category_as_a_table() {
    assert_output!(run("events --category payment").await);
}

#[tokio::test]
async fn events_of_a_stream_as_json_lines() {
    let output = run("events --stream order-2 --json").await;
    for line in output.lines() {
        let value: serde_json::Value = serde_json::from_str(line).expect("one JSON object a line");
        assert_eq!(value["stream"], "order-2");
    }
    assert_output!(output);
}

#[tokio::test]
async fn events_by_name_and_limit() {
    let output = run("events --name order.placed --limit 1").await;
    assert_eq!(output.matches("order.placed").count(), 1, "{output}");
    assert_output!(output);
}

#[tokio::test]
async fn a_completed_saga_instance() {
    assert_output!(run("saga checkout 1").await);
}

#[tokio::test]
async fn a_compensated_saga_instance() {
    assert_output!(run("saga checkout 2").await);
}

#[tokio::test]
async fn a_saga_drawn_with_an_instance() {
    assert_output!(run("diagram checkout 2").await);
}

#[tokio::test]
async fn unknown_names_are_typed_errors_that_say_what_is_known() {
    let error = fails("replay ledger-1").await;
    assert!(matches!(error, InspectError::UnknownCategory { .. }), "{error:?}");
    assert_eq!(
        error.to_string(),
        "no aggregate of category `ledger` is registered (known: `order`, `payment`, \
         `inventory`): register it with `Inspector::aggregate::<A>()`"
    );
    let error = fails("saga shipping 1").await;
    assert!(error.to_string().contains("(known: `checkout`)"), "{error}");
    let error = fails("diagram checkout 404").await;
    assert_eq!(error.to_string(), "saga `checkout` has no instance `404`");
    let error = fails("saga checkout 404").await;
    assert!(matches!(error, InspectError::NoInstance { .. }), "{error:?}");
    let error = fails("replay no-category-here-but-'quotes'").await;
    assert!(matches!(error, InspectError::UnknownCategory { .. } | InspectError::Stream { .. }));
    let error = fails("events --stream -").await;
    assert!(matches!(error, InspectError::Stream { .. }), "{error:?}");
}

#[tokio::test]
async fn projections_status_then_a_rebuild_then_status_again() {
    let board = InMemoryDocuments::new();
    let inspector = inspector(checkouts().await).projection(CheckoutBoard, board.clone());
    let mut before = Vec::new();
    inspector.run(command("projections status"), &mut before).await.expect("status");
    let mut rebuilt = Vec::new();
    inspector
        .run(command("projections rebuild checkout_board"), &mut rebuilt)
        .await
        .expect("rebuilt");
    let mut after = Vec::new();
    inspector.run(command("projections status"), &mut after).await.expect("status");

    let [before, rebuilt, after] =
        [before, rebuilt, after].map(|out| String::from_utf8(out).expect("UTF-8"));
    // The restock, order 1's four events and order 2's two, and the saga's five records.
    assert!(rebuilt.starts_with("rebuilt `checkout_board`: 12 events in "), "{rebuilt}");
    let line: Option<OrderLine> = board.get("orders", "2").expect("readable");
    assert!(line.is_some_and(|line| line.status.starts_with("cancelled")), "the board was rebuilt");
    insta::with_settings!({ filters => vec![(r"\d+\.\ds", "[seconds]")] }, {
        insta::assert_snapshot!(format!("{before}\n{after}"));
    });

    let error = inspector.run(command("projections rebuild ledger"), &mut Vec::new()).await;
    let Err(error) = error else { panic!("an unknown projection was rebuilt") };
    assert!(error.to_string().contains("(known: `checkout_board`)"), "{error}");
}

#[tokio::test]
async fn a_saga_instance_waiting_for_the_warehouse_shows_when_its_timeout_falls_due() {
    // A manually stocked warehouse answers later: the checkout waits after the payment.
    let store = InMemoryEventStore::new();
    let clock = TestClock::new();
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone());
    let restock = Restock { quantity: 5, manual: true };
    checkout.inventory.execute("mate", restock).await.expect("restock");
    let place = PlaceOrder {
        order_id: "3".into(),
        sku: "mate".into(),
        quantity: 1,
        total: 450,
        card: "tok_visa".into(),
    };
    checkout.orders.execute("3", place).await.expect("placed");
    checkout.saga.run_until_idle().await.expect("the saga ran");

    let mut out = Vec::new();
    inspector(store).run(command("saga checkout 3"), &mut out).await.expect("the report");
    let report = String::from_utf8(out).expect("UTF-8");
    assert!(report.contains("status:        running"), "{report}");
    // The warehouse has 30 s from the payment, on the saga's clock, which has not moved.
    let due = composable::Clock::now(&clock) + chrono::Duration::seconds(30);
    let due = due.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    assert!(report.contains(&format!("timeout due at {due}")), "{due} in:\n{report}");
    assert_output!(report);
}
