use std::sync::Arc;

use composable::testing::TestStore;
use counter::{Action, Counter, CounterReducer, Env, LocalFacts, TICK};

fn store() -> TestStore<CounterReducer> {
    TestStore::new(CounterReducer, Counter::default(), Env { facts: Arc::new(LocalFacts) })
}

#[tokio::test]
async fn increments_and_decrements() {
    let mut store = store();
    store.send(Action::Increment, |s| s.count = 1).await;
    store.send(Action::Decrement, |s| s.count = 0).await;
    store.finish().await;
}

#[tokio::test]
async fn the_timer_ticks_until_stopped() {
    let mut store = store();
    store.send(Action::StartTimer, |s| s.timer_running = true).await;
    store.advance(TICK).await;
    store.receive(Action::Tick, |s| s.count = 1).await;
    store.advance(TICK).await;
    store.receive(Action::Tick, |s| s.count = 2).await;
    store.send(Action::StopTimer, |s| s.timer_running = false).await;
    store.advance(TICK * 10).await;
    store.finish().await;
}

#[tokio::test]
async fn starting_twice_runs_one_timer() {
    let mut store = store();
    store.send(Action::StartTimer, |s| s.timer_running = true).await;
    store.send(Action::StartTimer, |_| {}).await;
    store.advance(TICK).await;
    store.receive(Action::Tick, |s| s.count = 1).await;
    store.send(Action::StopTimer, |s| s.timer_running = false).await;
    store.finish().await;
}

#[tokio::test]
async fn facts_arrive_through_the_environment() {
    let mut store = store();
    store.send(Action::Increment, |s| s.count = 1).await;
    store.send(Action::FactRequested, |_| {}).await;
    store
        .receive(Action::FactLoaded("1 is odd".into()), |s| s.fact = Some("1 is odd".into()))
        .await;
    store.finish().await;
}
