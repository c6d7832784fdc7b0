//! The generated aggregate against a hand-written equivalent, and commands through the runner
//! on the in-memory store against raw appends of the same events, in the same run.
//!
//! `cargo bench -p composable --bench aggregate`

use std::hint::black_box;

use composable::event::EventSet;
use composable::{
    Aggregate, AggregateRunner, Bincode, EventMetadata, EventStore, ExpectedVersion,
    InMemoryEventStore, NewEvent, StreamId,
};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// The hand-written aggregate: enums, `Aggregate` and `EventSet` written out by hand.
#[path = "../tests/support/account.rs"]
#[allow(dead_code, unreachable_pub)]
mod hand;

/// The same aggregate, written with the macros.
mod generated {
    use composable::{aggregate, apply, command, event};
    use serde::{Deserialize, Serialize};

    #[event(name = "account.deposited", version = 1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Deposited {
        pub(crate) amount: u64,
    }

    #[event(name = "account.withdrawn", version = 1)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Withdrawn {
        pub(crate) amount: u64,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Deposit(pub(crate) u64);

    #[derive(Debug, Clone, PartialEq)]
    pub(crate) struct Withdraw(pub(crate) u64);

    #[derive(Debug, PartialEq, thiserror::Error)]
    pub(crate) enum AccountError {
        #[error("insufficient funds: balance {balance}, requested {requested}")]
        InsufficientFunds { balance: u64, requested: u64 },
    }

    #[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
    pub(crate) struct Account {
        pub(crate) balance: u64,
        pub(crate) movements: u64,
    }

    #[aggregate(stream = "account", snapshot_every = 3, snapshot_schema = 2)]
    impl Account {
        #[command]
        fn deposit(&self, cmd: Deposit) -> Result<Vec<AccountEvent>, AccountError> {
            Ok(if cmd.0 == 0 { vec![] } else { vec![Deposited { amount: cmd.0 }.into()] })
        }

        #[command]
        fn withdraw(&self, cmd: Withdraw) -> Result<Withdrawn, AccountError> {
            if cmd.0 > self.balance {
                return Err(AccountError::InsufficientFunds {
                    balance: self.balance,
                    requested: cmd.0,
                });
            }
            Ok(Withdrawn { amount: cmd.0 })
        }

        #[apply]
        fn deposited(&mut self, event: &Deposited) {
            self.movements += 1;
            self.balance += event.amount;
        }

        #[apply]
        fn withdrawn(&mut self, event: &Withdrawn) {
            self.movements += 1;
            self.balance -= event.amount;
        }
    }
}

fn decide_and_apply<A: Aggregate<Environment = ()>>(state: &mut A, command: A::Command) {
    if let Ok(events) = state.decide(command, black_box(&())) {
        for event in &events {
            state.apply(event);
        }
    }
}

fn generated_vs_hand_written(c: &mut Criterion) {
    let mut group = c.benchmark_group("aggregate/decide+apply");
    group.throughput(Throughput::Elements(2));
    group.bench_function("hand-written", |b| {
        let mut account = hand::Account::default();
        b.iter(|| {
            decide_and_apply(&mut account, hand::AccountCommand::Deposit(black_box(3)));
            decide_and_apply(&mut account, hand::AccountCommand::Withdraw(black_box(1)));
        })
    });
    group.bench_function("generated", |b| {
        let mut account = generated::Account::default();
        b.iter(|| {
            decide_and_apply(&mut account, generated::Deposit(black_box(3)).into());
            decide_and_apply(&mut account, generated::Withdraw(black_box(1)).into());
        })
    });
    group.finish();

    let bytes = hand::AccountEvent::Deposited(hand::Deposited { amount: 42 })
        .encode(&Bincode)
        .expect("encode");
    let mut group = c.benchmark_group("aggregate/decode");
    group.throughput(Throughput::Elements(1));
    group.bench_function("hand-written", |b| {
        b.iter(|| hand::AccountEvent::decode(&Bincode, "account.deposited", 1, black_box(&bytes)))
    });
    group.bench_function("generated", |b| {
        b.iter(|| {
            generated::AccountEvent::decode(&Bincode, "account.deposited", 1, black_box(&bytes))
        })
    });
    group.finish();
}

fn runner(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let mut group = c.benchmark_group("runner/in-memory");
    group.throughput(Throughput::Elements(1));

    // Baseline: appending an already encoded event to a new stream, no aggregate involved.
    let store = InMemoryEventStore::new();
    let event = NewEvent::encode(
        &generated::AccountEvent::from(generated::Deposited { amount: 1 }),
        &Bincode,
        EventMetadata::new_flow(chrono::Utc::now()),
    )
    .expect("encode");
    let mut id = 0u64;
    group.bench_function("raw append to a new stream (baseline)", |b| {
        b.iter_batched(
            || {
                id += 1;
                let mut event = event.clone();
                event.event_id = uuid::Uuid::now_v7();
                (StreamId::new("raw", id).expect("stream"), event)
            },
            |(stream, event)| {
                runtime.block_on(store.append(&stream, ExpectedVersion::NoStream, vec![event]))
            },
            BatchSize::SmallInput,
        )
    });

    let runner = AggregateRunner::<generated::Account, _>::new(InMemoryEventStore::new(), ());
    group.bench_function("execute on a new aggregate", |b| {
        b.iter(|| {
            id += 1;
            runtime.block_on(runner.execute(id, generated::Deposit(1))).expect("execute")
        })
    });

    // An aggregate with history: every third event snapshots, so loads replay at most two.
    runtime.block_on(async {
        for _ in 0..30 {
            runner.execute("hot", generated::Deposit(1)).await.expect("seed");
        }
    });
    group.bench_function("execute on an aggregate with 30+ events and snapshots", |b| {
        b.iter(|| runtime.block_on(runner.execute("hot", generated::Deposit(1))).expect("execute"))
    });
    group.finish();
}

criterion_group!(benches, generated_vs_hand_written, runner);
criterion_main!(benches);
