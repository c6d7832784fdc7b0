//! Open-loop load on the hosted checkout, with an audit at the end: see
//! [`checkout_saga::load`] for what it does and checks.
//!
//! ```sh
//! cargo build --release -p checkout-saga --bin checkout-service --bin checkout-load
//! DATABASE_URL=postgres://… KAFKA_BROKERS=127.0.0.1:9092 \
//!     target/release/checkout-load --spawn --rate 50 --duration 60 [--kill]
//! ```
//!
//! It prints the report and exits with 1 when the offered rate was not held or the audit found
//! something wrong, 2 when it could not run.

use std::process::ExitCode;

use checkout_saga::load::{self, Options};
use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let options = Options::parse();
    match load::run(&options).await {
        Ok(report) => {
            print!("{report}");
            if report.passed() { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(error) => {
            eprintln!("checkout-load: {error}");
            ExitCode::from(2)
        }
    }
}
