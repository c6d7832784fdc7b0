//! `composable new` for real: the binary generates an application, adds an aggregate and a saga
//! to it, and the result is formatted, passes clippy, passes its tests and runs — in memory, and
//! built with `services` on PostgreSQL and Kafka — so the templates cannot rot. The generated
//! project builds against this checkout (`--composable-path`) with this workspace's lock file,
//! offline, in a target directory of its own.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn composable(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_composable"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("the composable binary runs")
}

fn cargo(args: &[&str], project: &Path, target: &Path) -> String {
    cargo_with(args, project, target, &[])
}

fn cargo_with(args: &[&str], project: &Path, target: &Path, env: &[(&str, &str)]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
        .env_remove("DATABASE_URL")
        .env_remove("KAFKA_BROKERS")
        .envs(env.iter().copied())
        .output()
        .expect("cargo runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        output.status.success(),
        "`cargo {}` failed in the generated project:\n{text}",
        args.join(" ")
    );
    text
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace root").to_owned()
}

fn scratch() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("composable-new")
}

/// `composable new {name}` in a directory of its own under the scratch directory.
fn generate(name: &str) -> (PathBuf, PathBuf) {
    let into = scratch().join(format!("{name}-{}", std::process::id()));
    std::fs::create_dir_all(&into).expect("a scratch directory");
    let root = workspace().to_string_lossy().into_owned();
    let created = composable(&["new", name, "--composable-path", &root], &into);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let project = into.join(name);
    std::fs::copy(workspace().join("Cargo.lock"), project.join("Cargo.lock")).expect("the lock");
    (into, project)
}

#[test]
fn a_generated_application_builds_passes_its_tests_and_runs() {
    let (into, project) = generate("shop");
    for part in [["aggregate", "PurchaseOrder"], ["saga", "Billing"]] {
        let added = composable(&["new", part[0], part[1]], &project);
        assert!(added.status.success(), "{}", String::from_utf8_lossy(&added.stderr));
    }

    // Refusals write nothing and say why.
    let again = composable(&["new", "aggregate", "PurchaseOrder"], &project);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("exists already"));
    let hostile = composable(&["new", "../escape"], &into);
    assert!(!hostile.status.success());
    assert!(!into.join("../escape").exists());
    let lowercase = composable(&["new", "saga", "billing2"], &project);
    assert!(String::from_utf8_lossy(&lowercase.stderr).contains("is not a type name"));

    let lib = std::fs::read_to_string(project.join("src/lib.rs")).expect("lib.rs");
    let modules = "pub mod billing;\npub mod board;\npub mod order;\npub mod purchase_order;\n\
                   #[cfg(feature = \"services\")]\npub mod services;\npub mod shipping;";
    assert!(lib.contains(modules), "{lib}");

    let target = scratch().join("target");
    cargo(&["fmt", "--check"], &project, &target);
    cargo(&["clippy", "--offline", "--all-targets", "--", "-D", "warnings"], &project, &target);
    let tests = cargo(&["test", "--offline"], &project, &target);
    for test in [
        "order::tests::a_placed_order_ships_once",
        "shipping::tests::a_refused_shipment_cancels_the_order",
        "board::tests::the_board_follows_each_order",
        "purchase_order::tests::an_open_one_closes_once",
        "billing::tests::it_gives_up_when_it_does_not_finish_in_time",
        "an_order_placed_is_shipped_and_on_the_board",
    ] {
        assert!(tests.contains(&format!("{test} ... ok")), "{test} did not pass:\n{tests}");
    }
    let run = cargo(&["run", "--offline", "--quiet"], &project, &target);
    assert!(run.contains("order o1: tea (shipped)"), "{run}");
    assert!(run.contains("order o2: coffee (shipped)"), "{run}");

    std::fs::remove_dir_all(&into).expect("the scratch project removed");
}

const HOW_TO_START: &str = "run `scripts/test` (it starts a private PostgreSQL and a tansu \
    broker), or in this shell `source scripts/lib/common.sh && source scripts/lib/postgres.sh && \
    source scripts/lib/kafka.sh && pg_start && kafka_start`, which export DATABASE_URL and \
    KAFKA_BROKERS";

fn env(name: &str) -> String {
    std::env::var(name)
        .ok()
        .filter(|value| !value.is_empty())
        .unwrap_or_else(|| panic!("{name} is not set: {HOW_TO_START}"))
}

#[tokio::test]
async fn a_generated_application_runs_on_postgres_and_kafka() {
    use sqlx::{Connection, Executor, PgConnection};

    let server = env("DATABASE_URL");
    let brokers = env("KAFKA_BROKERS");
    // A database of its own: the shared one holds other tests' `order.*` events.
    let mut admin = PgConnection::connect(&server)
        .await
        .unwrap_or_else(|error| panic!("cannot reach PostgreSQL: {error}; {HOW_TO_START}"));
    let database = format!("scaffold_{}", std::process::id());
    admin
        .execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .await
        .expect("a database");
    let url = format!("{}/{database}", server.rsplit_once('/').expect("a URL with a database").0);

    let (into, project) = generate("stall");
    let target = scratch().join("target");
    let lints =
        ["clippy", "--offline", "--all-targets", "--features", "services", "--", "-D", "warnings"];
    cargo(&lints, &project, &target);
    let run = cargo_with(
        &["run", "--offline", "--quiet", "--features", "services"],
        &project,
        &target,
        &[("DATABASE_URL", &url), ("KAFKA_BROKERS", &brokers)],
    );
    let _ = admin
        .execute(sqlx::AssertSqlSafe(format!("DROP DATABASE IF EXISTS {database} WITH (FORCE)")))
        .await;
    let shipped: Vec<&str> = run.lines().filter(|line| line.ends_with("(shipped)")).collect();
    assert_eq!(shipped.len(), 2, "both orders shipped through the broker:\n{run}");
    assert!(shipped[0].contains("-o1: tea") && shipped[1].contains("-o2: coffee"), "{run}");
    std::fs::remove_dir_all(&into).expect("the scratch project removed");
}
