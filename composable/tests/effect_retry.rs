//! An effect retried with a back-off: it waits between attempts on the store's clock, feeds
//! back its success, or, once its attempts are spent, the failure with its last error — an
//! action the reducer handles like any other.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use composable::backoff::Backoff;
use composable::effect::Exhausted;
use composable::reducer::reducer_fn;
use composable::testing::TestStore;
use composable::{Effect, Reducer};

#[derive(Debug, Clone, PartialEq)]
enum Action {
    Charge,
    Charged { attempt: u32 },
    Failed { reason: String, attempts: u32 },
}

#[derive(Debug, Clone, Default, PartialEq)]
struct Payment {
    outcome: Option<String>,
}

/// A gateway whose first `failures` calls fail.
#[derive(Debug, Clone)]
struct Gateway {
    failures: u32,
    calls: Arc<AtomicU32>,
}

impl Gateway {
    fn failing(failures: u32) -> Self {
        Self { failures, calls: Arc::new(AtomicU32::new(0)) }
    }

    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn payments() -> impl Reducer<State = Payment, Action = Action, Environment = Gateway> {
    reducer_fn(|state: &mut Payment, action: Action, gateway: &Gateway| match action {
        Action::Charge => {
            let gateway = gateway.clone();
            Effect::retry(
                Backoff::STANDARD,
                move || {
                    let call = gateway.calls.fetch_add(1, Ordering::SeqCst) + 1;
                    let failures = gateway.failures;
                    async move {
                        if call <= failures {
                            Err(format!("gateway down at call {call}"))
                        } else {
                            Ok(Action::Charged { attempt: call })
                        }
                    }
                },
                |failed: Exhausted<String>| Action::Failed {
                    reason: failed.error,
                    attempts: failed.attempts,
                },
            )
        }
        Action::Charged { attempt } => {
            state.outcome = Some(format!("charged at attempt {attempt}"));
            Effect::none()
        }
        Action::Failed { reason, attempts } => {
            state.outcome = Some(format!("gave up after {attempts}: {reason}"));
            Effect::none()
        }
    })
}

#[tokio::test]
async fn a_failing_effect_is_tried_again_after_each_wait_until_it_succeeds() {
    let gateway = Gateway::failing(2);
    let mut store = TestStore::new(payments(), Payment::default(), gateway.clone());
    store.send(Action::Charge, |_| {}).await;
    assert_eq!(gateway.calls(), 1);
    // The second attempt waits one second on the store's clock, the third two more.
    store.advance(Duration::from_millis(999)).await;
    assert_eq!(gateway.calls(), 1, "no attempt before its wait is over");
    store.advance(Duration::from_millis(1)).await;
    assert_eq!(gateway.calls(), 2);
    store.advance(Duration::from_secs(2)).await;
    store
        .receive(Action::Charged { attempt: 3 }, |state| {
            state.outcome = Some("charged at attempt 3".into());
        })
        .await;
    assert_eq!(gateway.calls(), 3);
    store.finish().await;
}

#[tokio::test]
async fn an_effect_out_of_attempts_feeds_back_its_last_error() {
    let gateway = Gateway::failing(u32::MAX);
    let mut store = TestStore::new(payments(), Payment::default(), gateway.clone());
    store.send(Action::Charge, |_| {}).await;
    for wait in [1, 2, 4, 8] {
        store.advance(Duration::from_secs(wait)).await;
    }
    store
        .receive(Action::Failed { reason: "gateway down at call 5".into(), attempts: 5 }, |state| {
            state.outcome = Some("gave up after 5: gateway down at call 5".into())
        })
        .await;
    store.advance(Duration::from_secs(60)).await;
    assert_eq!(gateway.calls(), 5, "no sixth attempt");
    store.finish().await;
}

#[derive(Debug, Clone, PartialEq)]
enum Checkout {
    Payment(Action),
    Abandon,
}

/// A parent holding the payment: its effects are mapped into the parent's actions and can be
/// cancelled by the parent.
fn checkout() -> impl Reducer<State = Payment, Action = Checkout, Environment = Gateway> {
    let payments = payments();
    reducer_fn(move |state: &mut Payment, action: Checkout, gateway: &Gateway| match action {
        Checkout::Payment(action) => {
            payments.reduce(state, action, gateway).map(Checkout::Payment).cancellable("charge")
        }
        Checkout::Abandon => Effect::cancel("charge"),
    })
}

#[tokio::test]
async fn a_retried_effect_maps_into_a_parent_and_cancelling_it_stops_the_attempts() {
    let gateway = Gateway::failing(u32::MAX);
    let mut store = TestStore::new(checkout(), Payment::default(), gateway.clone());
    store.send(Checkout::Payment(Action::Charge), |_| {}).await;
    store.advance(Duration::from_secs(1)).await;
    assert_eq!(gateway.calls(), 2);
    store.send(Checkout::Abandon, |_| {}).await;
    store.advance(Duration::from_secs(60)).await;
    assert_eq!(gateway.calls(), 2, "a cancelled retry makes no further attempt");
    store.finish().await;
}

#[test]
fn a_retry_says_what_it_is() {
    let effect: Effect<Action> =
        Effect::retry(Backoff::NONE, || async { Ok::<_, ()>(Action::Charge) }, |_| Action::Charge);
    assert_eq!(format!("{effect:?}"), "Effect::retry(..)");
}

/// An effect calling another system through a circuit breaker the environment holds: once the
/// breaker opens, the remaining attempts are refused without reaching the gateway.
#[tokio::test]
async fn an_effect_behind_a_circuit_breaker_stops_calling_a_system_that_is_down() {
    use composable::TestClock;
    use composable::breaker::{BreakerPolicy, BreakerState, CircuitBreaker};

    #[derive(Debug, Clone)]
    struct Guarded {
        gateway: Gateway,
        breaker: CircuitBreaker,
    }

    let clock = TestClock::new();
    let breaker = CircuitBreaker::new("gateway", BreakerPolicy::default().window(2))
        .with_clock(clock.clone());
    let env = Guarded { gateway: Gateway::failing(u32::MAX), breaker: breaker.clone() };
    let charge = reducer_fn(|state: &mut Payment, action: Action, env: &Guarded| match action {
        Action::Charge => {
            let env = env.clone();
            Effect::retry(
                Backoff::STANDARD,
                move || {
                    let env = env.clone();
                    async move {
                        let call = env.breaker.call(async {
                            env.gateway.calls.fetch_add(1, Ordering::SeqCst);
                            Err::<Action, _>("gateway down")
                        });
                        call.await.map_err(|error| error.to_string())
                    }
                },
                |failed: Exhausted<String>| Action::Failed {
                    reason: failed.error,
                    attempts: failed.attempts,
                },
            )
        }
        Action::Failed { reason, attempts } => {
            state.outcome = Some(format!("gave up after {attempts}: {reason}"));
            Effect::none()
        }
        Action::Charged { .. } => Effect::none(),
    });
    let mut store = TestStore::with_clock(charge, Payment::default(), env.clone(), clock.clone());
    store.send(Action::Charge, |_| {}).await;
    for wait in [1, 2, 4, 8] {
        store.advance(Duration::from_secs(wait)).await;
    }
    let reason = "circuit breaker `gateway` is open: the call was not made; try again in 16s";
    store
        .receive(Action::Failed { reason: reason.into(), attempts: 5 }, |state| {
            state.outcome = Some(format!("gave up after 5: {reason}"));
        })
        .await;
    assert_eq!(env.gateway.calls(), 2, "the breaker opened after two failed calls");
    assert_eq!(breaker.state(), BreakerState::Open);
    store.finish().await;
}
