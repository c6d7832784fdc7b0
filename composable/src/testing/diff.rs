//! Readable differences between an expected and an actual value, for test failures.

use std::fmt::{Debug, Write};

/// A line diff of the pretty `Debug` output of `expected` and `actual`: `-` lines are expected,
/// `+` lines are what happened.
pub(crate) fn debug_diff<T: Debug + ?Sized>(expected: &T, actual: &T) -> String {
    let expected = format!("{expected:#?}");
    let actual = format!("{actual:#?}");
    let diff = similar::TextDiff::from_lines(&expected, &actual);
    let mut out = String::new();
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        let _ = write!(out, "{sign} {change}");
        if change.missing_newline() {
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_expected_and_actual_lines() {
        #[derive(Debug)]
        #[allow(dead_code)]
        struct S {
            a: u8,
            b: u8,
        }
        let diff = debug_diff(&S { a: 1, b: 2 }, &S { a: 1, b: 3 });
        assert!(diff.contains("-     b: 2,"), "{diff}");
        assert!(diff.contains("+     b: 3,"), "{diff}");
        assert!(diff.contains("      a: 1,"), "{diff}");
    }
}
