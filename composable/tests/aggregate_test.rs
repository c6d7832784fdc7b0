//! given / when / then: what passes, and the message of each failure.

mod support;

use composable::testing::AggregateTest;
use support::account::*;

fn message_of(test: impl FnOnce() + std::panic::UnwindSafe) -> String {
    let payload = std::panic::catch_unwind(test).expect_err("the check must fail");
    payload.downcast_ref::<String>().cloned().expect("a formatted panic message")
}

#[test]
fn past_events_shape_the_decision() {
    let state = AggregateTest::<Account>::new(())
        .given([Deposited { amount: 10 }])
        .when(AccountCommand::Withdraw(4))
        .then([Withdrawn { amount: 4 }]);
    assert_eq!(state, Account { balance: 6, movements: 2 });
}

#[test]
fn rejections_are_checked_by_value_or_by_pattern() {
    AggregateTest::<Account>::new(())
        .given([Deposited { amount: 1 }])
        .when(AccountCommand::Withdraw(2))
        .then_error(AccountError::InsufficientFunds { balance: 1, requested: 2 });
    AggregateTest::<Account>::new(())
        .when(AccountCommand::Withdraw(2))
        .then_error_matches(|e| matches!(e, AccountError::InsufficientFunds { .. }));
    AggregateTest::<Account>::new(()).when(AccountCommand::Deposit(0)).then_nothing();
}

#[test]
fn other_events_fail_with_a_diff() {
    let message = message_of(|| {
        AggregateTest::<Account>::new(())
            .given([Deposited { amount: 10 }])
            .when(AccountCommand::Withdraw(4))
            .then([Withdrawn { amount: 5 }]);
    });
    assert!(
        message.starts_with("the command produced other events (- expected, + actual):"),
        "{message}"
    );
    assert!(message.contains("-             amount: 5,"), "{message}");
    assert!(message.contains("+             amount: 4,"), "{message}");
}

#[test]
fn an_unexpected_rejection_names_the_error() {
    let message = message_of(|| {
        AggregateTest::<Account>::new(())
            .when(AccountCommand::Withdraw(4))
            .then([Withdrawn { amount: 4 }]);
    });
    assert!(
        message.starts_with("the command was rejected with InsufficientFunds { balance: 0, requested: 4 } (insufficient funds: balance 0, requested 4)"),
        "{message}"
    );
}

#[test]
fn an_unexpected_success_names_the_events() {
    let message = message_of(|| {
        AggregateTest::<Account>::new(())
            .when(AccountCommand::Deposit(3))
            .then_error(AccountError::InsufficientFunds { balance: 0, requested: 3 });
    });
    assert!(message.starts_with("the command succeeded with ["), "{message}");
    assert!(
        message.contains("but was expected to be rejected with InsufficientFunds"),
        "{message}"
    );
}
