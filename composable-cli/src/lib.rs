//! Tools for Composable applications: the `composable` binary scaffolds them ([`new`]), and
//! [`inspect`] looks into their event store.
//!
//! A standalone binary cannot decode an application's events: their types, and the codec that
//! wrote them, live in the application. So the inspection commands are a library entry,
//! [`inspect`], that the application mounts in its own binary as a subcommand, registering its
//! aggregates, sagas and projections:
//!
//! ```
//! use clap::Parser;
//! use composable::InMemoryEventStore;
//! use composable_cli::inspect::{self, Inspector};
//! # use composable::{aggregate, apply, command, event};
//! # use serde::{Deserialize, Serialize};
//! # #[event(name = "counter.added", version = 1)]
//! # #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
//! # pub struct Added { pub by: u64 }
//! # #[derive(Debug, Clone, PartialEq)] pub struct Add { pub by: u64 }
//! # #[derive(Debug, Default)] pub struct Counter { total: u64 }
//! # #[aggregate(stream = "counter")]
//! # impl Counter {
//! #     #[command] fn add(&self, c: Add) -> Added { Added { by: c.by } }
//! #     #[apply] fn added(&mut self, e: &Added) { self.total += e.by; }
//! # }
//!
//! /// The application's own command line: its service, and the inspection commands.
//! #[derive(Debug, Parser)]
//! enum Cli {
//!     /// Serve the application.
//!     Serve,
//!     /// Look into the event store.
//!     #[command(subcommand)]
//!     Inspect(inspect::Command),
//! }
//!
//! # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
//! let store = InMemoryEventStore::new();
//! let cli = Cli::parse_from(["app", "inspect", "replay", "counter-1"]);
//! if let Cli::Inspect(command) = cli {
//!     let inspector = Inspector::new(store).aggregate::<Counter>();
//!     let mut out = Vec::new();
//!     inspector.run(command, &mut out).await?;
//!     assert!(String::from_utf8_lossy(&out).contains("no events"));
//! }
//! # Ok::<(), inspect::InspectError>(())
//! # }).unwrap();
//! ```

pub mod inspect;
pub mod new;
