//! bincode (the default) against JSON, encoding and decoding the same event, in the same run.
//!
//! `cargo bench -p composable --features json --bench codec`

use std::hint::black_box;

use composable::{Bincode, Codec, Json};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct LineItem {
    sku: String,
    quantity: u32,
    unit_price_cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct OrderPlaced {
    order_id: u64,
    customer: String,
    items: Vec<LineItem>,
    total_cents: u64,
    note: Option<String>,
}

fn event() -> OrderPlaced {
    OrderPlaced {
        order_id: 1_234_567,
        customer: "customer-00042".into(),
        items: (0..5)
            .map(|i| LineItem {
                sku: format!("SKU-{i:05}"),
                quantity: i + 1,
                unit_price_cents: 1999,
            })
            .collect(),
        total_cents: 29_985,
        note: Some("leave at the door".into()),
    }
}

fn bench_codec<C: Codec>(c: &mut Criterion, name: &str, codec: C) {
    let event = event();
    let bytes = codec.encode(&event).expect("encode");
    let mut group = c.benchmark_group(format!("codec/{name}"));
    group.throughput(Throughput::Elements(1));
    group.bench_function("encode", |b| b.iter(|| codec.encode(black_box(&event))));
    group.bench_function("decode", |b| {
        b.iter(|| codec.decode::<OrderPlaced>(black_box(&bytes)).expect("decode"))
    });
    group.finish();
    println!("codec/{name}: {} bytes per event", bytes.len());
}

fn codecs(c: &mut Criterion) {
    bench_codec(c, "bincode", Bincode);
    bench_codec(c, "json", Json);
}

criterion_group!(benches, codecs);
criterion_main!(benches);
