//! Compile-pass and compile-fail cases of every attribute. Pass cases are built and run (their
//! `main` asserts); fail cases must fail with exactly the committed `.stderr`.
//!
//! Regenerate expected output with `TRYBUILD=overwrite cargo test -p ui-tests --test ui`, then
//! read every changed `.stderr`: each message must point at the offending token and say how to
//! fix it.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    for attribute in
        ["event", "aggregate", "command", "apply", "saga", "host", "projection", "project"]
    {
        cases.pass(format!("ui/{attribute}/pass/*.rs"));
        cases.compile_fail(format!("ui/{attribute}/fail/*.rs"));
    }
}
