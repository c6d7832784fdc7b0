//! `composable new` for real: the binary generates an application, adds an aggregate and a saga
//! to it, and the result is formatted, passes clippy, passes its tests and runs — so the
//! templates cannot rot. The generated project builds against this checkout (`--composable-path`)
//! with this workspace's lock file, offline, in a target directory of its own.

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
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let output = Command::new(cargo)
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", target)
        .env_remove("RUSTFLAGS")
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

#[test]
fn a_generated_application_builds_passes_its_tests_and_runs() {
    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("composable-new");
    let into = scratch.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&into).expect("a scratch directory");
    let root = workspace();
    let root_arg = root.to_string_lossy().into_owned();

    let created = composable(&["new", "shop", "--composable-path", &root_arg], &into);
    assert!(created.status.success(), "{}", String::from_utf8_lossy(&created.stderr));
    let project = into.join("shop");
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
    let modules = "pub mod billing;\npub mod board;\npub mod order;\npub mod purchase_order;\npub mod shipping;";
    assert!(lib.contains(modules), "{lib}");

    std::fs::copy(root.join("Cargo.lock"), project.join("Cargo.lock")).expect("the lock file");
    let target = scratch.join("target");
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
