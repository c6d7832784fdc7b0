//! The whole application in memory: an order placed is shipped by the saga, and the board shows
//! it.

use {{app_crate}}::Application;
use {{app_crate}}::board::{ORDERS, OrderLine};
use {{app_crate}}::order::{PlaceOrder, Status};

#[tokio::test]
async fn an_order_placed_is_shipped_and_on_the_board() {
    let Application { orders, board, app } = Application::in_memory().expect("the wiring holds");
    let running = app.start();
    orders
        .execute(
            "o1",
            PlaceOrder {
                order_id: "o1".into(),
                item: "tea".into(),
            },
        )
        .await
        .expect("placed");
    running
        .settle()
        .await
        .expect("the saga and the board caught up");

    assert_eq!(
        orders.load("o1").await.expect("loaded").state.status,
        Status::Shipped
    );
    let line = board.get::<OrderLine>(ORDERS, "o1").expect("readable");
    assert_eq!(
        line,
        Some(OrderLine {
            item: "tea".into(),
            status: "shipped".into()
        })
    );
    running.stop().await.expect("stopped");
}
