//! The test store: what passes, and each way it fails, with the message a user sees.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::time::Duration;

use composable::reducer::reducer_fn;
use composable::testing::{Exhaustivity, TestStore};
use composable::{Effect, Reducer};
use futures::FutureExt;

#[derive(Debug, Clone, PartialEq, Default)]
struct Search {
    query: String,
    results: Vec<String>,
    searches: u32,
}

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Type(String),
    Search,
    Results(Vec<String>),
    ClearLater,
    Clear,
    Cancel,
}

fn search() -> impl Reducer<State = Search, Action = Action, Environment = ()> {
    reducer_fn(|state: &mut Search, action: Action, _: &()| match action {
        Action::Type(query) => {
            state.query = query;
            Effect::none()
        }
        Action::Search => {
            state.searches += 1;
            let query = state.query.clone();
            Effect::future(async move { Action::Results(vec![format!("{query} 1")]) })
        }
        Action::Results(results) => {
            state.results = results;
            Effect::none()
        }
        Action::ClearLater => {
            Effect::delay(Duration::from_secs(10), Action::Clear).cancellable("clear")
        }
        Action::Clear => {
            state.results.clear();
            Effect::none()
        }
        Action::Cancel => Effect::cancel("clear"),
    })
}

/// Runs `test` and returns the message it panicked with.
async fn failure_of(test: impl Future<Output = ()>) -> String {
    let payload =
        AssertUnwindSafe(test).catch_unwind().await.expect_err("the test store must fail");
    payload
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
        .expect("a string panic message")
}

#[tokio::test]
async fn an_exhaustive_test_states_every_change_and_every_received_action() {
    let mut store = TestStore::new(search(), Search::default(), ());
    store.send(Action::Type("rust".into()), |s| s.query = "rust".into()).await;
    store.send(Action::Search, |s| s.searches = 1).await;
    store
        .receive(Action::Results(vec!["rust 1".into()]), |s| s.results = vec!["rust 1".into()])
        .await;
    store.send(Action::ClearLater, |_| {}).await;
    store.advance(Duration::from_secs(9)).await;
    store.advance(Duration::from_secs(1)).await;
    store.receive(Action::Clear, |s| s.results.clear()).await;
    store.finish().await;
}

#[tokio::test]
async fn a_cancelled_delay_never_fires() {
    let mut store = TestStore::new(search(), Search::default(), ());
    store.send(Action::ClearLater, |_| {}).await;
    assert_eq!(store.running_effects(), 1);
    store.send(Action::Cancel, |_| {}).await;
    store.advance(Duration::from_secs(60)).await;
    store.finish().await;
}

#[tokio::test]
async fn fails_on_an_unexpected_state_change_with_a_diff() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::Type("rust".into()), |s| s.query = "rusty".into()).await;
    })
    .await;
    assert!(
        message.starts_with(
            "state after sending Type(\"rust\") does not match the expectation (- expected, + actual):"
        ),
        "{message}"
    );
    assert!(message.contains("-     query: \"rusty\","), "{message}");
    assert!(message.contains("+     query: \"rust\","), "{message}");
}

#[tokio::test]
async fn fails_on_an_action_that_was_fed_back_but_never_received() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::Search, |s| s.searches = 1).await;
        store.finish().await;
    })
    .await;
    assert_eq!(
        message,
        "1 action(s) fed back by effects were never received; assert them with `receive`:\n    Results([\" 1\"])\n"
    );
}

#[tokio::test]
async fn fails_when_sending_before_receiving_fed_back_actions() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::Search, |s| s.searches = 1).await;
        store.send(Action::Clear, |_| {}).await;
    })
    .await;
    assert!(
        message
            .starts_with("must receive the 1 action(s) fed back by effects before sending Clear"),
        "{message}"
    );
}

#[tokio::test]
async fn fails_on_effects_still_running_at_the_end() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::ClearLater, |_| {}).await;
        store.finish().await;
    })
    .await;
    assert_eq!(
        message,
        "1 effect(s) are still running at the end of the test; advance the clock, receive their actions, cancel them, or call `skip_in_flight_effects`"
    );
}

#[tokio::test]
async fn dropping_an_unfinished_store_runs_the_same_checks() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::ClearLater, |_| {}).await;
    })
    .await;
    assert!(message.contains("effect(s) are still running at the end of the test"), "{message}");
}

#[tokio::test]
async fn fails_on_receiving_a_different_action() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ());
        store.send(Action::Search, |s| s.searches = 1).await;
        store.receive(Action::Clear, |_| {}).await;
    })
    .await;
    assert!(
        message.starts_with("received an unexpected action (- expected, + received):"),
        "{message}"
    );
    assert!(message.contains("- Clear"), "{message}");
    assert!(message.contains("+ Results("), "{message}");
}

#[tokio::test]
async fn fails_when_nothing_arrives_and_points_at_a_pending_delay() {
    let message = failure_of(async {
        let mut store = TestStore::new(search(), Search::default(), ())
            .receive_timeout(Duration::from_millis(20));
        store.send(Action::ClearLater, |_| {}).await;
        store.receive(Action::Clear, |_| {}).await;
    })
    .await;
    assert_eq!(
        message,
        "expected to receive Clear, but no action was fed back within 20ms; a delay is pending on the test clock: advance it first"
    );
}

#[tokio::test]
async fn non_exhaustive_mode_asserts_only_what_it_states() {
    let mut store = TestStore::new(search(), Search::default(), ()).exhaustivity(Exhaustivity::Off);
    store.send(Action::Type("tea".into()), |_| {}).await;
    store.send(Action::Search, |s| s.searches = 1).await;
    store.send(Action::ClearLater, |_| {}).await;
    // The Results action was skipped (and applied) when the next action was sent.
    assert_eq!(store.state().results, ["tea 1"]);
    // The pending delay is cancelled by `finish` instead of failing the test.
    store.finish().await;
}

#[tokio::test]
async fn non_exhaustive_mode_still_fails_on_a_wrong_stated_value() {
    let message = failure_of(async {
        let mut store =
            TestStore::new(search(), Search::default(), ()).exhaustivity(Exhaustivity::Off);
        store.send(Action::Search, |s| s.searches = 2).await;
    })
    .await;
    assert!(message.contains("-     searches: 2,"), "{message}");
    assert!(message.contains("+     searches: 1,"), "{message}");
}

#[tokio::test]
async fn the_timeline_records_every_action_and_the_state_after_it() {
    let mut store = TestStore::new(search(), Search::default(), ());
    store.send(Action::Type("rust".into()), |s| s.query = "rust".into()).await;
    store.send(Action::Search, |s| s.searches = 1).await;
    store
        .receive(Action::Results(vec!["rust 1".into()]), |s| s.results = vec!["rust 1".into()])
        .await;
    insta::assert_snapshot!(store.timeline());
    store.finish().await;
}

#[tokio::test]
async fn a_skipped_action_is_on_the_timeline_too() {
    let mut store = TestStore::new(search(), Search::default(), ()).exhaustivity(Exhaustivity::Off);
    store.send(Action::Search, |_| {}).await;
    store.send(Action::Type("tokio".into()), |s| s.query = "tokio".into()).await;
    // The search's results arrived meanwhile and were skipped before the second send.
    let timeline = store.timeline().to_owned();
    assert!(timeline.contains("skipping Results([\" 1\"])"), "{timeline}");
    store.finish().await;
}
