//! `SagaTest` on a bank transfer: withdraw from one account, deposit into another, give the money
//! back when the deposit is refused. Refusing one command type (the deposit) while its aggregate
//! accepts the others (the return of the funds) is what the compensation needs to be tested; a
//! deposit that arrives before the withdrawal is left aside instead of completing the transfer.

use composable::saga::{Dispatch, Reaction, SagaStatus};
use composable::testing::SagaTest;
use composable::{aggregate, apply, command, compensate, event, saga, start, step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Account {
    cents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Withdraw {
    pub transfer: String,
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub transfer: String,
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReturnFunds {
    pub transfer: String,
    pub cents: u64,
}

#[event(name = "account.withdrawn", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub transfer: String,
    pub cents: u64,
}

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub transfer: String,
    pub cents: u64,
}

#[aggregate(stream = "account")]
impl Account {
    #[command]
    fn withdraw(&self, command: Withdraw) -> Withdrawn {
        Withdrawn { transfer: command.transfer, cents: command.cents }
    }

    #[command]
    fn deposit(&self, command: Deposit) -> Deposited {
        Deposited { transfer: command.transfer, cents: command.cents }
    }

    #[command]
    fn return_funds(&self, command: ReturnFunds) -> Deposited {
        Deposited { transfer: command.transfer, cents: command.cents }
    }

    #[apply]
    fn withdrawn(&mut self, event: &Withdrawn) {
        self.cents -= event.cents;
    }

    #[apply]
    fn deposited(&mut self, event: &Deposited) {
        self.cents += event.cents;
    }
}

#[event(name = "transfer.requested", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRequested {
    pub transfer: String,
    pub from: String,
    pub to: String,
    pub cents: u64,
}

#[derive(Debug, Default)]
pub struct Transfer {
    id: String,
    from: String,
    to: String,
    cents: u64,
    withdrawn: bool,
}

#[saga(name = "transfer", key = transfer)]
impl Transfer {
    /// Nothing to undo for the request itself: the withdrawal's compensation returns the money.
    #[start(no_compensation)]
    fn requested(&mut self, event: &TransferRequested) -> Dispatch {
        self.id.clone_from(&event.transfer);
        self.from.clone_from(&event.from);
        self.to.clone_from(&event.to);
        self.cents = event.cents;
        Dispatch::to::<Account>(
            &self.from,
            Withdraw { transfer: self.id.clone(), cents: self.cents },
        )
    }

    #[step]
    fn withdrawn(&mut self, _event: &Withdrawn) -> Dispatch {
        self.withdrawn = true;
        Dispatch::to::<Account>(&self.to, Deposit { transfer: self.id.clone(), cents: self.cents })
    }

    /// Steps are not ordered: a deposit can arrive before the withdrawal (another topic on the
    /// bus, a deposit of another amount under the same key). It must not complete the transfer.
    #[step(end)]
    fn deposited(&mut self, event: &Deposited) -> Reaction<()> {
        if !self.withdrawn {
            return Reaction::ignore("a deposit before the withdrawal");
        }
        if event.cents != self.cents {
            return Reaction::ignore(format!(
                "a deposit of {} cents, not {}",
                event.cents, self.cents
            ));
        }
        Reaction::Proceed(())
    }

    #[compensate(withdrawn)]
    fn return_funds(&self) -> Dispatch {
        let funds = ReturnFunds { transfer: self.id.clone(), cents: self.cents };
        Dispatch::to::<Account>(&self.from, funds)
    }
}

fn requested() -> TransferRequested {
    TransferRequested { transfer: "t1".into(), from: "alice".into(), to: "bob".into(), cents: 500 }
}

fn withdrawn() -> Withdrawn {
    Withdrawn { transfer: "t1".into(), cents: 500 }
}

fn deposit() -> Dispatch {
    Dispatch::to::<Account>("bob", Deposit { transfer: "t1".into(), cents: 500 })
}

fn funds_returned() -> Dispatch {
    Dispatch::to::<Account>("alice", ReturnFunds { transfer: "t1".into(), cents: 500 })
}

#[tokio::test]
async fn a_refused_deposit_returns_the_funds_through_the_same_aggregate() {
    let mut test = SagaTest::<Transfer>::new();
    test.reject_if::<Account>(
        |command| matches!(command, AccountCommand::Deposit(_)),
        "bob's account is closed",
    );

    test.given(requested()).await;
    test.then_dispatched([Dispatch::to::<Account>(
        "alice",
        Withdraw { transfer: "t1".into(), cents: 500 },
    )]);

    let progress = test.given(withdrawn()).await.expect("the instance is running");
    // The deposit went out and was refused; the return of the funds, a command of the same
    // aggregate, was accepted.
    assert!(progress.failure.is_some_and(|failure| failure.contains("bob's account is closed")));
    assert_eq!(progress.refused_compensations, []);
    test.then_dispatched([deposit(), funds_returned()]);
    assert_eq!(test.status("t1").await, Some(SagaStatus::Compensated));
}

#[tokio::test]
async fn a_predicate_can_refuse_by_the_command_fields() {
    let mut test = SagaTest::<Transfer>::new();
    // Only deposits into bob's account above 100 cents are refused: the predicate sees the
    // command, so it can choose by what the command carries.
    test.reject_if::<Account>(
        |command| matches!(command, AccountCommand::Deposit(deposit) if deposit.cents > 100),
        "over the limit",
    );

    test.given(requested()).await;
    test.take_dispatched();
    test.given(withdrawn()).await;
    test.then_dispatched([deposit(), funds_returned()]);
    assert_eq!(test.status("t1").await, Some(SagaStatus::Compensated));
}

#[tokio::test]
async fn accepting_again_lifts_every_refusal_of_the_aggregate() {
    let mut test = SagaTest::<Transfer>::new();
    test.reject::<Account>("closed");
    test.reject_if::<Account>(|command| matches!(command, AccountCommand::Deposit(_)), "closed");
    test.accept::<Account>();

    test.given(requested()).await;
    test.take_dispatched();
    test.given(withdrawn()).await;
    test.then_dispatched([deposit()]);
    test.given(Deposited { transfer: "t1".into(), cents: 500 }).await;
    test.then_nothing_dispatched();
    assert_eq!(test.status("t1").await, Some(SagaStatus::Completed));
}

#[tokio::test]
async fn a_later_refusal_overrides_an_earlier_one() {
    let mut test = SagaTest::<Transfer>::new();
    test.reject_if::<Account>(|command| matches!(command, AccountCommand::Deposit(_)), "first");
    test.reject_if::<Account>(|command| matches!(command, AccountCommand::Deposit(_)), "second");

    test.given(requested()).await;
    let progress = test.given(withdrawn()).await.expect("the instance is running");
    let failure = progress.failure.expect("the deposit was refused");
    assert!(failure.contains("second"), "the latest refusal answers: {failure}");
    assert_eq!(progress.compensations, [funds_returned()]);
}

#[tokio::test]
async fn an_event_left_aside_neither_completes_nor_fails_the_instance() {
    let mut test = SagaTest::<Transfer>::new();
    test.given(requested()).await;
    test.take_dispatched();
    let before = test.runner().load("t1").await.ok().flatten().map(|summary| summary.version);

    // Before the withdrawal, and then of another amount: both left aside, nothing recorded.
    let early = Deposited { transfer: "t1".into(), cents: 500 };
    assert_eq!(test.given(early.clone()).await, None, "a deposit before the withdrawal");
    let after = test.runner().load("t1").await.ok().flatten().map(|summary| summary.version);
    assert_eq!(after, before, "nothing was recorded");
    assert_eq!(test.status("t1").await, Some(SagaStatus::Running));

    test.given(withdrawn()).await;
    test.then_dispatched([deposit()]);
    assert_eq!(test.given(Deposited { transfer: "t1".into(), cents: 7 }).await, None);
    assert_eq!(test.status("t1").await, Some(SagaStatus::Running));

    // The same deposit given now, after the withdrawal, completes the transfer: what was left
    // aside was not recorded as processed, so nothing stands in its way.
    let progress = test.given(early).await.expect("the deposit completes the transfer");
    assert_eq!(progress.status, SagaStatus::Completed);
    test.then_nothing_dispatched();
}
