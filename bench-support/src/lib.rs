//! What the benchmark binaries of the workspace share: their sizes, read from the environment,
//! and the statistics they report. Not published; a dev-dependency of the backends.

use std::time::Duration;

/// The size in environment variable `name`, or `default` when it is unset or not a number.
pub fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|value| value.parse().ok()).unwrap_or(default)
}

/// The sizes in environment variable `name`, comma-separated (`500,2000`), or `default`; each
/// at least 1.
///
/// # Panics
/// When the variable holds something other than sizes: a benchmark told to measure what it
/// cannot read stops instead of measuring something else.
pub fn env_sizes(name: &str, default: &[usize]) -> Vec<usize> {
    let Ok(text) = std::env::var(name) else {
        return default.to_vec();
    };
    text.split(',')
        .map(|size| match size.trim().parse::<usize>() {
            Ok(size) => size.max(1),
            Err(_) => panic!("{name}: sizes separated by commas, like 500,2000; got `{text}`"),
        })
        .collect()
}

/// The median of `samples` (the upper one of an even count).
///
/// # Panics
/// When there are no samples.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

/// The `p`-th quantile of `samples` (`0.99` for p99), nearest rank; sorts them.
///
/// # Panics
/// When there are no samples.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort();
    let index = ((samples.len() as f64 - 1.0) * p.clamp(0.0, 1.0)).round() as usize;
    samples[index]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_percentiles_pick_by_rank() {
        let samples: Vec<Duration> = [5, 1, 4, 2, 3].map(Duration::from_millis).to_vec();
        assert_eq!(median(samples.clone()), Duration::from_millis(3));
        let mut samples = samples;
        assert_eq!(percentile(&mut samples, 0.0), Duration::from_millis(1));
        assert_eq!(percentile(&mut samples, 0.5), Duration::from_millis(3));
        assert_eq!(percentile(&mut samples, 0.99), Duration::from_millis(5));
    }

    #[test]
    fn sizes_come_from_the_default_when_unset() {
        assert_eq!(env_sizes("COMPOSABLE_BENCH_SUPPORT_UNSET", &[500, 2000]), [500, 2000]);
        assert_eq!(env_usize("COMPOSABLE_BENCH_SUPPORT_UNSET", 7), 7);
    }
}
