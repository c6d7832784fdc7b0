//! The checkout board, the read model of the orders and the stock: hosted beside the aggregates,
//! it agrees with them after checkouts that succeed and fail, a query waiting for a command's
//! token sees the command; and the demo prints it after the scenarios.

use std::process::Command;
use std::time::Duration;

use checkout_saga::board::{self, CheckoutBoard, OrderLine, StockLevel};
use checkout_saga::{Checkout, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::host::App;
use composable::projection::InMemoryDocuments;
use composable::saga::InMemoryTimerStore;
use composable::{EventStore, InMemoryEventStore, TestClock};

const WAIT: Duration = Duration::from_secs(5);

fn place(order_id: &str, sku: &str, card: &str) -> PlaceOrder {
    PlaceOrder {
        order_id: order_id.into(),
        sku: sku.into(),
        quantity: 2,
        total: 900,
        card: card.into(),
    }
}

#[tokio::test]
async fn the_board_agrees_with_the_aggregates_after_each_checkout() {
    let store = InMemoryEventStore::new();
    let clock = TestClock::new();
    let checkout = Checkout::new(store.clone(), InMemoryTimerStore::new(), clock.clone());
    let read = InMemoryDocuments::new();
    let running = App::in_process("back-office", store.clone())
        .aggregate(&checkout.orders)
        .aggregate(&checkout.inventory)
        .projection(CheckoutBoard, read.clone())
        .build()
        .expect("the board's events are emitted by registered aggregates")
        .start();
    let board = running.service("projection.checkout_board").expect("the board runs");

    // A query right after a command waits for its token, and sees it.
    let restocked = checkout.inventory.execute("tea", Restock { quantity: 5, manual: false });
    let token = restocked.await.unwrap().token.unwrap();
    board.reached(token, WAIT).await.unwrap();
    let level = read.get::<StockLevel>(board::STOCK, "tea").unwrap();
    assert_eq!(level, Some(StockLevel { available: 5, reserved: 0 }));

    for (order_id, card) in [("1", "tok_visa"), ("2", DECLINED_CARD), ("3", "tok_visa")] {
        checkout.orders.execute(order_id, place(order_id, "tea", card)).await.unwrap();
        checkout.saga.run_until_idle().await.unwrap();
    }
    let head = composable::consistency::ReadToken::new(store.head().await.unwrap());
    board.reached(head, WAIT).await.unwrap();

    for order_id in ["1", "2", "3"] {
        let order = checkout.orders.load(order_id).await.unwrap().state;
        let line = read.get::<OrderLine>(board::ORDERS, order_id).unwrap().expect("a line");
        let expected = match order.status {
            OrderStatus::Confirmed => "confirmed",
            OrderStatus::Cancelled => "cancelled",
            OrderStatus::Placed | OrderStatus::New => "placed",
        };
        assert!(line.status.starts_with(expected), "order {order_id}: {line:?} vs {order:?}");
    }
    let stock = checkout.inventory.load("tea").await.unwrap().state;
    let level = read.get::<StockLevel>(board::STOCK, "tea").unwrap().expect("a level");
    assert_eq!(level.available, stock.available);
    assert_eq!(level.reserved, stock.reserved.values().sum::<u32>());
    assert_eq!((level.available, level.reserved), (1, 4), "two checkouts of 2 reserved");
    running.stop().await.unwrap();
}

#[test]
fn the_demo_prints_the_board_after_the_scenarios() {
    let output = Command::new(env!("CARGO_BIN_EXE_checkout-saga"))
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .output()
        .expect("run the demo");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let printed = String::from_utf8_lossy(&output.stdout);
    let board = printed.split("== the checkout board").nth(1).expect("the board is printed");
    for line in [
        "order 1001: 2 x tea, 9.00, confirmed",
        "order 1002: 2 x coffee, 9.00, cancelled: payment failed",
        "order 1003: 2 x cocoa, 9.00, cancelled: checkout failed; refunded",
        "order 1004: 2 x chai, 9.00, cancelled: checkout failed; refunded",
        "stock tea: 8 available, 2 reserved",
        "stock chai: 10 available, 0 reserved",
    ] {
        assert!(board.contains(line), "missing `{line}` in:{board}");
    }
}
