//! Places two orders through the application host and prints the order board: in memory, or,
//! built with the `services` feature and given `DATABASE_URL` and `KAFKA_BROKERS`, on
//! PostgreSQL and Kafka.

use std::time::Duration;

use {{app_crate}}::Application;
use {{app_crate}}::board::{ORDERS, OrderLine};
use {{app_crate}}::order::PlaceOrder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    #[cfg(feature = "services")]
    if let (Ok(database_url), Ok(brokers)) =
        (std::env::var("DATABASE_URL"), std::env::var("KAFKA_BROKERS"))
    {
        return {{app_crate}}::services::run(&database_url, &brokers).await;
    }
    let Application { orders, board, app } = Application::in_memory()?;
    let running = app.start();
    let board_service = running
        .service("projection.order_board")
        .ok_or("the board is hosted")?;
    for (order_id, item) in [("o1", "tea"), ("o2", "coffee")] {
        let place = PlaceOrder {
            order_id: order_id.into(),
            item: item.into(),
        };
        let placed = orders.execute(order_id, place).await?;
        // A query that must see the command waits until the board has read its last event.
        if let Some(token) = placed.token {
            board_service.reached(token, Duration::from_secs(5)).await?;
        }
    }
    running.settle().await?;
    for (order_id, line) in board.list::<OrderLine>(ORDERS, "")? {
        println!("order {order_id}: {} ({})", line.item, line.status);
    }
    running.stop().await?;
    Ok(())
}
