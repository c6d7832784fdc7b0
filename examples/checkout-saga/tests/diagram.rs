//! The checkout's diagram: the one in the README is the one `#[saga]` generates, and an
//! instance's path drawn over it is snapshot-tested for each way a checkout can stand.

use std::time::Duration;

use checkout_saga::{CheckoutSaga, Inventory, OrderPlaced, PaymentCaptured, StockReserved};
use composable::saga::{Diagram, SagaStatus};
use composable::testing::SagaTest;

fn placed() -> OrderPlaced {
    OrderPlaced {
        order_id: "o1".into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    }
}

fn captured() -> PaymentCaptured {
    PaymentCaptured { order_id: "o1".into(), amount: 900 }
}

/// The first ```` ```mermaid ```` block of the README.
fn readme_diagram() -> String {
    let readme = include_str!("../README.md");
    let Some((_, after)) = readme.split_once("```mermaid\n") else {
        panic!("the README has no mermaid block");
    };
    let Some((block, _)) = after.split_once("```") else {
        panic!("the README's mermaid block is not closed");
    };
    block.to_owned()
}

#[test]
fn the_readme_shows_the_diagram_the_saga_generates() {
    let generated = Diagram::of::<CheckoutSaga>().to_string();
    assert_eq!(
        readme_diagram(),
        generated,
        "the README's diagram is out of date; replace its mermaid block with:\n{generated}"
    );
}

#[test]
fn the_definition() {
    insta::assert_snapshot!(Diagram::of::<CheckoutSaga>().to_string());
}

async fn drawn(test: &SagaTest<CheckoutSaga>) -> String {
    let Ok(Some(summary)) = test.runner().load("o1").await else {
        panic!("instance o1 did not start");
    };
    Diagram::of::<CheckoutSaga>().with_instance(&summary).to_string()
}

#[tokio::test]
async fn a_checkout_waiting_for_its_stock() {
    let mut test = SagaTest::<CheckoutSaga>::new();
    test.given(placed()).await;
    test.given(captured()).await;
    assert_eq!(test.status("o1").await, Some(SagaStatus::Running));
    insta::assert_snapshot!(drawn(&test).await);
}

#[tokio::test]
async fn a_completed_checkout() {
    let mut test = SagaTest::<CheckoutSaga>::new();
    test.given(placed()).await;
    test.given(captured()).await;
    test.given(StockReserved { order_id: "o1".into(), quantity: 2 }).await;
    assert_eq!(test.status("o1").await, Some(SagaStatus::Completed));
    insta::assert_snapshot!(drawn(&test).await);
}

#[tokio::test]
async fn a_checkout_whose_warehouse_was_late() {
    let mut test = SagaTest::<CheckoutSaga>::new();
    test.given(placed()).await;
    test.given(captured()).await;
    test.advance(Duration::from_secs(31)).await;
    assert_eq!(test.status("o1").await, Some(SagaStatus::Compensated));
    insta::assert_snapshot!(drawn(&test).await);
}

#[tokio::test]
async fn a_checkout_whose_reservation_was_refused() {
    let mut test = SagaTest::<CheckoutSaga>::new();
    test.reject::<Inventory>("out of stock");
    test.given(placed()).await;
    test.given(captured()).await;
    assert_eq!(test.status("o1").await, Some(SagaStatus::Compensated));
    insta::assert_snapshot!(drawn(&test).await);
}
