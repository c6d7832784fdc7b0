//! Adds a few todos, completes some, and prints the list once the debounced sort ran.

use composable::{Store, TestClock};
use todo::{Action, SORT_DELAY, TodoAction, todos};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A test clock makes the one-second debounce instant; a real app uses the system clock.
    let clock = TestClock::new();
    let store = Store::with_clock(todos(), Default::default(), (), clock.clone());
    for text in ["buy milk", "write docs", "ship it"] {
        store.send(Action::Add(text.into())).await;
    }
    let _ = store.send(Action::Row(0, TodoAction::Toggle));
    let _ = store.send(Action::Row(1, TodoAction::Toggle));
    clock.advance(SORT_DELAY).await;
    store.idle().await;
    store.with_state(|todos| {
        for id in &todos.order {
            if let Some(todo) = todos.rows.get(id) {
                println!("[{}] {}", if todo.done { "x" } else { " " }, todo.text);
            }
        }
    });
}
