//! Snapshots of what each attribute expands to, pretty-printed: a reviewer reads the `.snap`
//! files under `tests/snapshots/` to see what a change did to generated code.
//!
//! The expansion runs in-process through `composable-codegen`, the same functions the
//! `proc-macro` shell calls. Update with `INSTA_UPDATE=always cargo test -p ui-tests --test
//! expand`, then review the diff.

use proc_macro2::TokenStream;

fn tokens(source: &str) -> TokenStream {
    source.parse().expect("test input is valid Rust tokens")
}

fn pretty(expanded: TokenStream) -> String {
    let file: syn::File = syn::parse2(expanded).expect("the expansion is a list of items");
    prettyplease::unparse(&file)
}

const ORDER_EVENTS: &str = r#"
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct OrderPlaced { pub total: u64 }
"#;

#[test]
fn event_newest_version() {
    let expanded = composable_codegen::event(
        tokens(r#"name = "order.placed", version = 2"#),
        tokens(ORDER_EVENTS),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn event_with_upcast() {
    let expanded = composable_codegen::event(
        tokens(r#"name = "order.placed", version = 1, upcast = OrderPlaced"#),
        tokens("#[derive(Serialize, Deserialize)] pub struct OrderPlacedV1 { pub cents: u32 }"),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn event_with_crate_path() {
    let expanded = composable_codegen::event(
        tokens(r#"name = "order.placed", version = 1, crate = ::my_app::es"#),
        tokens(ORDER_EVENTS),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn aggregate_with_env_errors_and_snapshots() {
    let expanded = composable_codegen::aggregate(
        tokens(r#"stream = "order", snapshot_every = 100, snapshot_schema = 2"#),
        tokens(
            r#"
            impl Order {
                /// Places the order.
                #[command]
                fn place(&self, command: PlaceOrder, env: &ShopEnv) -> Result<OrderPlaced, OrderError> {
                    todo!()
                }

                #[command]
                fn cancel(&self, command: CancelOrder) -> Result<Vec<OrderEvent>, OrderError> {
                    todo!()
                }

                #[apply]
                fn placed(&mut self, event: &OrderPlaced) {}

                #[apply]
                fn cancelled(&mut self, event: &OrderCancelled) {}

                fn helper(&self) -> bool { true }
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn aggregate_without_env_errors_or_snapshots() {
    let expanded = composable_codegen::aggregate(
        tokens(r#"stream = "counter""#),
        tokens(
            r#"
            impl Counter {
                #[command]
                fn increment(&self, command: Increment) -> Incremented { Incremented }

                #[apply]
                fn incremented(&mut self, event: &Incremented) { self.count += 1; }
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}

/// A mistake still expands to the user's impl block and the enums, next to the error, so code
/// using them doesn't report errors of its own.
#[test]
fn aggregate_with_a_mistake() {
    let expanded = composable_codegen::aggregate(
        tokens(r#"stream = "counter""#),
        tokens(
            r#"
            impl Counter {
                #[command]
                fn increment(&mut self, command: Increment) -> Incremented { Incremented }

                #[apply]
                fn incremented(&mut self, event: &Incremented) { self.count += 1; }
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn saga_with_timeouts_and_compensations() {
    let expanded = composable_codegen::saga(
        tokens(r#"name = "checkout", key = order_id, dispatches(Audit)"#),
        tokens(
            r#"
            impl Checkout {
                /// Charges the customer.
                #[start(timeout = "5m")]
                fn order_placed(&mut self, event: &OrderPlaced) -> Dispatch {
                    Dispatch::to::<Payment>(&event.order_id, Charge)
                }

                #[step(timeout = "30s", on_timeout = release)]
                fn payment_captured(&mut self, event: &PaymentCaptured) -> Result<Dispatch, Refused> {
                    todo!()
                }

                #[step(end, key = order)]
                fn stock_reserved(&mut self, event: &StockReserved) -> Dispatch {
                    todo!()
                }

                #[compensate(order_placed)]
                fn cancel_order(&self) -> Dispatch {
                    todo!()
                }

                #[compensate(payment_captured)]
                fn refund(&self) -> Vec<Dispatch> {
                    vec![Dispatch::to::<Payment>(&self.order_id, Refund), audit(&self.order_id)]
                }

                fn release(&mut self) -> Option<Dispatch> {
                    Some(Dispatch::to::<Inventory>(&self.sku, Release))
                }
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}

/// A mistake still expands to the impl block and the event enum, next to the error.
#[test]
fn saga_with_a_mistake() {
    let expanded = composable_codegen::saga(
        tokens(r#"name = "checkout""#),
        tokens(
            r#"
            impl Checkout {
                #[start(no_compensation)]
                fn order_placed(&mut self, event: &OrderPlaced) -> Dispatch {
                    todo!()
                }

                #[step(end, key = order_id)]
                fn stock_reserved(&mut self, event: &StockReserved) {}
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}

#[test]
fn projection_with_every_handler_shape() {
    let expanded = composable_codegen::projection(
        tokens(r#"name = "orders_by_customer", version = 2, store = InMemoryDocuments"#),
        tokens(
            r#"
            impl OrdersByCustomer {
                /// Counts the order.
                #[project]
                fn placed(&self, batch: &mut DocumentBatch, event: &OrderPlaced) -> Result<(), DocumentError> {
                    todo!()
                }

                #[project]
                async fn cancelled(&self, batch: &mut DocumentBatch, event: OrderCancelled, envelope: &RecordedEvent) -> Result<(), DocumentError> {
                    todo!()
                }

                #[project]
                fn shipped(&self, batch: &mut DocumentBatch, event: &OrderShipped) {}
            }
            "#,
        ),
    );
    insta::assert_snapshot!(pretty(expanded));
}
