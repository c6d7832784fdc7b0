//! Runs the counter, fast-forwarding its timer on a test clock so the demo finishes at once.

use std::sync::Arc;
use std::time::Duration;

use composable::{Store, TestClock};
use counter::{Action, CounterReducer, Env, LocalFacts, TICK};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // A test clock lets the demo show ten seconds of ticking instantly.
    let clock = TestClock::new();
    let env = Env { facts: Arc::new(LocalFacts) };
    let store = Store::with_clock(CounterReducer, Default::default(), env, clock.clone());

    store.send(Action::Increment).await;
    store.send(Action::Increment).await;
    println!("after two increments: {}", store.with_state(|s| s.count));

    let _ticking = store.send(Action::StartTimer);
    clock.advance(TICK * 3).await;
    println!("after three ticks:    {}", store.with_state(|s| s.count));
    store.send(Action::StopTimer).await;
    clock.advance(Duration::from_secs(10)).await;
    println!("timer stopped:        {}", store.with_state(|s| s.count));

    store.send(Action::FactRequested).await;
    println!("fact:                 {}", store.with_state(|s| s.fact.clone().unwrap_or_default()));
}
