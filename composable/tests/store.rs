//! The store's guarantees: ordering, effects, cancellation scoping, panics, concurrency.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use composable::reducer::reducer_fn;
use composable::{Effect, Reducer, Store, TestClock};

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Push(&'static str),
    Chain(u8),
    Run,
    Delayed,
    Start(&'static str),
    Stop(&'static str),
    StartThenStop,
    Panic,
    EffectPanics,
}

struct Env {
    ran: Arc<AtomicUsize>,
    started: Arc<AtomicBool>,
}

fn env() -> Env {
    Env { ran: Arc::new(AtomicUsize::new(0)), started: Arc::new(AtomicBool::new(false)) }
}

fn reducer() -> impl Reducer<State = Vec<String>, Action = Action, Environment = Env> {
    reducer_fn(|log: &mut Vec<String>, action: Action, env: &Env| match action {
        Action::Push(item) => {
            log.push(item.to_owned());
            Effect::none()
        }
        Action::Chain(0) => Effect::none(),
        Action::Chain(n) => {
            log.push(format!("chain {n}"));
            Effect::merge([Effect::send(Action::Push("sent")), Effect::send(Action::Chain(n - 1))])
        }
        Action::Run => {
            let ran = Arc::clone(&env.ran);
            Effect::run(move |send| async move {
                ran.fetch_add(1, Ordering::SeqCst);
                send.send(Action::Push("from run"));
            })
        }
        Action::Delayed => Effect::delay(Duration::from_secs(5), Action::Push("delayed")),
        Action::Start(id) => {
            Effect::delay(Duration::from_secs(1), Action::Push("tick")).cancellable(id)
        }
        Action::Stop(id) => Effect::cancel(id),
        Action::StartThenStop => {
            let started = Arc::clone(&env.started);
            Effect::merge([
                Effect::run(move |_| async move { started.store(true, Ordering::SeqCst) })
                    .cancellable("job"),
                Effect::cancel("job"),
            ])
        }
        Action::Panic => panic!("reducer bug"),
        Action::EffectPanics => Effect::run(|_| async { panic!("effect bug") }),
    })
}

#[tokio::test]
async fn fed_back_actions_are_processed_in_order_before_send_returns() {
    let store = Store::new(reducer(), Vec::new(), env());
    let handle = store.send(Action::Chain(2));
    assert!(handle.is_finished(), "synchronous feedback starts no task");
    assert_eq!(store.state(), ["chain 2", "sent", "chain 1", "sent"]);
}

#[tokio::test]
async fn awaiting_a_send_waits_for_its_effects_and_their_feedback() {
    let env = env();
    let ran = Arc::clone(&env.ran);
    let store = Store::new(reducer(), Vec::new(), env);
    store.send(Action::Run).await;
    assert_eq!(ran.load(Ordering::SeqCst), 1);
    assert_eq!(store.state(), ["from run"]);
    assert_eq!(store.running_effects(), 0);
}

#[tokio::test]
async fn delays_run_on_the_store_clock() {
    let clock = TestClock::new();
    let store = Store::with_clock(reducer(), Vec::new(), env(), clock.clone());
    let handle = store.send(Action::Delayed);
    clock.advance(Duration::from_secs(4)).await;
    assert!(store.with_state(Vec::is_empty));
    assert!(!handle.is_finished());
    clock.advance(Duration::from_secs(1)).await;
    handle.await;
    assert_eq!(store.state(), ["delayed"]);
}

#[tokio::test]
async fn cancellation_ids_are_scoped_to_one_store() {
    let clock = TestClock::new();
    let first = Store::with_clock(reducer(), Vec::new(), env(), clock.clone());
    let second = Store::with_clock(reducer(), Vec::new(), env(), clock.clone());
    let _ = first.send(Action::Start("timer"));
    let _ = second.send(Action::Start("timer"));
    let _ = first.send(Action::Stop("timer"));
    clock.advance(Duration::from_secs(1)).await;
    first.idle().await;
    second.idle().await;
    assert!(first.with_state(Vec::is_empty), "the first store's timer was cancelled");
    assert_eq!(second.state(), ["tick"], "the second store's timer with the same id ran");
}

#[tokio::test]
async fn an_effect_cancelled_before_it_started_never_runs() {
    let env = env();
    let started = Arc::clone(&env.started);
    let store = Store::new(reducer(), Vec::new(), env);
    store.send(Action::StartThenStop).await;
    assert!(!started.load(Ordering::SeqCst));
}

#[tokio::test]
async fn panics_in_reducers_and_effects_are_contained() {
    let store = Store::new(reducer(), Vec::new(), env());
    let _ = store.send(Action::Panic);
    store.send(Action::EffectPanics).await;
    store.send(Action::Push("still working")).await;
    assert_eq!(store.state(), ["still working"]);
    assert_eq!(store.running_effects(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_senders_lose_nothing() {
    let counter = reducer_fn(|count: &mut u64, by: u64, _: &()| {
        *count += by;
        if by > 1 { Effect::send(1) } else { Effect::none() }
    });
    let store = Store::new(counter, 0, ());
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            tokio::spawn(async move {
                for _ in 0..500 {
                    store.send(2).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("sender task");
    }
    assert_eq!(store.with_state(|count| *count), 8 * 500 * 3);
}

#[tokio::test]
async fn concat_runs_effects_one_after_another() {
    let clock = TestClock::new();
    let sequence = reducer_fn(|log: &mut Vec<u32>, action: u32, _: &()| {
        log.push(action);
        if action == 0 {
            Effect::concat([
                Effect::delay(Duration::from_secs(2), 1),
                Effect::delay(Duration::from_secs(1), 2),
            ])
        } else {
            Effect::none()
        }
    });
    let store = Store::with_clock(sequence, Vec::new(), (), clock.clone());
    let handle = store.send(0);
    clock.advance(Duration::from_secs(2)).await;
    assert_eq!(store.state(), [0, 1], "the second delay starts only after the first finished");
    clock.advance(Duration::from_secs(1)).await;
    handle.await;
    assert_eq!(store.state(), [0, 1, 2]);
}
