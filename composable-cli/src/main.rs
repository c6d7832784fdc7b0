//! `composable`: scaffolding for Composable applications.
//!
//! ```sh
//! composable new shop                 # an application: aggregate, saga, projection, host, tests
//! composable new aggregate Invoice    # in the project in the current directory
//! composable new saga Billing
//! ```
//!
//! Inspection (replaying a stream, reading the log, a saga instance's story) needs the
//! application's own types, so it is a subcommand the application mounts in its binary:
//! `composable_cli::inspect`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use composable_cli::new::{self, Source};

/// Scaffolding for Composable applications.
#[derive(Debug, Parser)]
#[command(name = "composable", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A new application, or a new aggregate or saga in the project here.
    #[command(args_conflicts_with_subcommands = true)]
    New {
        #[command(subcommand)]
        part: Option<Part>,
        /// The application's name (a package name: `shop`, `order-service`).
        app: Option<String>,
        /// Where to create the application's directory.
        #[arg(long, default_value = ".")]
        into: PathBuf,
        /// Take Composable from this local checkout of the framework instead of the registry.
        #[arg(long)]
        composable_path: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum Part {
    /// An aggregate, with its commands, events, error and tests, in `src/<name>.rs`.
    Aggregate {
        /// Its type name, UpperCamelCase (`Invoice`).
        name: String,
        /// The project to add it to.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
    /// A saga, with its steps and tests, in `src/<name>.rs`.
    Saga {
        /// Its type name, UpperCamelCase (`Billing`).
        name: String,
        /// The project to add it to.
        #[arg(long, default_value = ".")]
        project: PathBuf,
    },
}

fn main() -> ExitCode {
    let Command::New { part, app, into, composable_path } = Cli::parse().command;
    let written = match (part, app) {
        (Some(Part::Aggregate { name, project }), _) => new::aggregate(&project, &name),
        (Some(Part::Saga { name, project }), _) => new::saga(&project, &name),
        (None, Some(app)) => {
            // Cargo reads a `path` relative to the generated manifest, not to where this ran.
            let source = match composable_path.map(std::path::absolute).transpose() {
                Ok(path) => path.map_or_else(Source::this_release, Source::Path),
                Err(error) => {
                    eprintln!("composable new: --composable-path: {error}");
                    return ExitCode::FAILURE;
                }
            };
            new::app(&into, &app, &source)
        }
        (None, None) => {
            eprintln!(
                "composable new: name the application (`composable new shop`), or add `aggregate <Name>` or `saga <Name>`"
            );
            return ExitCode::from(2);
        }
    };
    match written {
        Ok(written) => {
            print!("created:\n{written}");
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("composable new: {error}");
            ExitCode::FAILURE
        }
    }
}
