//! One full checkout on in-memory backends through the saga (place the order, then let the saga
//! charge, reserve and confirm), against the same four commands executed directly through the
//! runners, in the same run.
//!
//! `cargo bench -p checkout-saga --bench checkout`

use composable::saga::InMemoryTimerStore;
use composable::{CommandContext, InMemoryEventStore, TestClock};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

use checkout_saga::{Charge, Checkout, ConfirmOrder, PlaceOrder, Reserve, Restock};

type InMemoryCheckout = Checkout<InMemoryEventStore, InMemoryTimerStore>;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime")
}

fn setup(runtime: &tokio::runtime::Runtime) -> InMemoryCheckout {
    let checkout =
        Checkout::new(InMemoryEventStore::new(), InMemoryTimerStore::new(), TestClock::new());
    runtime
        .block_on(checkout.inventory.execute("tea", Restock { quantity: 10, manual: false }))
        .expect("restock");
    checkout
}

fn place() -> PlaceOrder {
    PlaceOrder {
        order_id: "1".into(),
        sku: "tea".into(),
        quantity: 2,
        total: 900,
        card: "tok_visa".into(),
    }
}

fn checkout(c: &mut Criterion) {
    let runtime = runtime();
    let mut group = c.benchmark_group("checkout");
    group.throughput(Throughput::Elements(1));

    group.bench_function("saga", |b| {
        b.iter_batched(
            || setup(&runtime),
            |checkout| {
                runtime.block_on(async {
                    checkout.orders.execute("1", place()).await.expect("place");
                    let progress = checkout.saga.run_until_idle().await.expect("run the saga");
                    assert_eq!(progress.len(), 3);
                    checkout
                })
            },
            BatchSize::SmallInput,
        );
    });

    group.bench_function("direct", |b| {
        b.iter_batched(
            || setup(&runtime),
            |checkout| {
                runtime.block_on(async {
                    let flow = CommandContext::new_flow();
                    checkout.orders.execute_in("1", place(), flow).await.expect("place");
                    let charge =
                        Charge { order_id: "1".into(), amount: 900, card: "tok_visa".into() };
                    checkout.payments.execute_in("1", charge, flow).await.expect("charge");
                    let reserve = Reserve { order_id: "1".into(), quantity: 2 };
                    checkout.inventory.execute_in("tea", reserve, flow).await.expect("reserve");
                    checkout.orders.execute_in("1", ConfirmOrder, flow).await.expect("confirm");
                    checkout
                })
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group!(benches, checkout);
criterion_main!(benches);
