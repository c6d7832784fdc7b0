//! `Store::send` against calling `reduce` directly, in the same run.
//!
//! `cargo bench -p composable --bench store`

use std::hint::black_box;

use composable::reducer::reducer_fn;
use composable::{Effect, Reducer, Store};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

#[derive(Debug, Clone, Copy)]
enum Action {
    Add(u64),
    AddThenEcho(u64),
}

fn counter() -> impl Reducer<State = u64, Action = Action, Environment = ()> {
    reducer_fn(|total: &mut u64, action: Action, _: &()| match action {
        Action::Add(n) => {
            *total = total.wrapping_add(n);
            Effect::none()
        }
        Action::AddThenEcho(n) => {
            *total = total.wrapping_add(n);
            Effect::send(Action::Add(1))
        }
    })
}

/// A reducer doing the kind of work a real one does: look up and update an entry.
fn ledger()
-> impl Reducer<State = std::collections::HashMap<u64, u64>, Action = Action, Environment = ()> {
    reducer_fn(|ledger: &mut std::collections::HashMap<u64, u64>, action: Action, _: &()| {
        match action {
            Action::Add(n) => {
                *ledger.entry(n % 1024).or_default() += n;
                Effect::none()
            }
            Action::AddThenEcho(n) => {
                *ledger.entry(n % 1024).or_default() += n;
                Effect::send(Action::Add(n + 1))
            }
        }
    })
}

fn send(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let _entered = runtime.enter();

    let mut group = c.benchmark_group("counter");
    group.throughput(Throughput::Elements(1));
    let reducer = counter();
    let mut state = 0u64;
    group.bench_function("reduce (baseline)", |b| {
        b.iter(|| reducer.reduce(&mut state, black_box(Action::Add(1)), &()))
    });
    let store = Store::new(counter(), 0u64, ());
    group.bench_function("send, no effect", |b| b.iter(|| store.send(black_box(Action::Add(1)))));
    group.bench_function("reduce twice (baseline for feedback)", |b| {
        b.iter(|| {
            let _ = reducer.reduce(&mut state, black_box(Action::AddThenEcho(1)), &());
            reducer.reduce(&mut state, black_box(Action::Add(1)), &())
        })
    });
    group.bench_function("send, effect feeds back one action", |b| {
        b.iter(|| store.send(black_box(Action::AddThenEcho(1))))
    });
    group.finish();

    let mut group = c.benchmark_group("ledger");
    group.throughput(Throughput::Elements(1));
    let reducer = ledger();
    let mut state = std::collections::HashMap::new();
    let mut n = 0u64;
    group.bench_function("reduce (baseline)", |b| {
        b.iter(|| {
            n += 1;
            reducer.reduce(&mut state, black_box(Action::Add(n)), &())
        })
    });
    let store = Store::new(ledger(), std::collections::HashMap::new(), ());
    group.bench_function("send, no effect", |b| {
        b.iter(|| {
            n += 1;
            store.send(black_box(Action::Add(n)))
        })
    });
    group.finish();
}

criterion_group!(benches, send);
criterion_main!(benches);
