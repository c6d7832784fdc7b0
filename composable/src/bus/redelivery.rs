//! How a bus retries a failing delivery, and where it gives up.

use std::time::Duration;

use super::BusMessage;
use super::message::headers;
use crate::backoff::Backoff;

/// How often a failing delivery is retried, how long between tries (a [`Backoff`]), and where
/// it goes after the last one.
///
/// ```
/// use std::time::Duration;
/// use composable::backoff::Backoff;
/// use composable::bus::RedeliveryPolicy;
/// let policy = RedeliveryPolicy::default()
///     .retry(Backoff::exponential(Duration::from_millis(10)).attempts(3));
/// assert_eq!(policy.dead_letter_topic("order-events"), "order-events-dlq");
/// assert_eq!(policy.attempts(), 3);
/// assert_eq!(policy.delay_before(2), Duration::from_millis(10));
/// assert_eq!(policy.delay_before(3), Duration::from_millis(20));
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RedeliveryPolicy {
    retry: Backoff,
    dead_letter_suffix: String,
}

impl Default for RedeliveryPolicy {
    /// 5 attempts, 100 ms doubling up to 10 s between them, dead letters to `{topic}-dlq`.
    fn default() -> Self {
        Self {
            retry: Backoff::exponential(Duration::from_millis(100))
                .max_delay(Duration::from_secs(10))
                .attempts(5),
            dead_letter_suffix: "-dlq".into(),
        }
    }
}

impl RedeliveryPolicy {
    /// How many deliveries a message gets (the back-off's attempts; 5 when it sets no limit) and
    /// the waits between them.
    #[must_use]
    pub fn retry(mut self, retry: Backoff) -> Self {
        self.retry = match retry.max_attempts() {
            Some(_) => retry,
            None => retry.attempts(5),
        };
        self
    }

    /// The back-off between deliveries.
    pub fn backoff(&self) -> &Backoff {
        &self.retry
    }

    /// The suffix of dead-letter topics: `{topic}{suffix}`.
    #[must_use]
    pub fn dead_letter_suffix(mut self, suffix: impl Into<String>) -> Self {
        self.dead_letter_suffix = suffix.into();
        self
    }

    /// How many deliveries a message gets before it is dead-lettered.
    pub fn attempts(&self) -> u32 {
        self.retry.max_attempts().unwrap_or(1)
    }

    /// Where messages of `topic` go after their last failed attempt.
    pub fn dead_letter_topic(&self, topic: &str) -> String {
        format!("{topic}{}", self.dead_letter_suffix)
    }

    /// The wait before attempt number `attempt` (2 or more; zero for the first), without
    /// jitter.
    pub fn delay_before(&self, attempt: u32) -> Duration {
        self.retry.delay_before(attempt)
    }

    /// The dead letter for `message`, which failed `attempts` times with `error` at
    /// `partition`/`offset`: the same key, payload and headers, plus the `dlq-*` [`headers`].
    pub fn dead_letter(
        &self,
        message: &BusMessage,
        partition: u32,
        offset: u64,
        attempts: u32,
        error: &str,
    ) -> BusMessage {
        crate::metrics::dead_lettered(&message.topic);
        let mut letter = message.clone();
        letter.topic = self.dead_letter_topic(&message.topic);
        letter.headers.extend([
            (headers::DLQ_ERROR.to_owned(), error.as_bytes().to_vec()),
            (headers::DLQ_ATTEMPTS.to_owned(), attempts.to_string().into_bytes()),
            (headers::DLQ_TOPIC.to_owned(), message.topic.clone().into_bytes()),
            (headers::DLQ_PARTITION.to_owned(), partition.to_string().into_bytes()),
            (headers::DLQ_OFFSET.to_owned(), offset.to_string().into_bytes()),
        ]);
        letter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let policy = RedeliveryPolicy::default().retry(
            Backoff::exponential(Duration::from_millis(100)).max_delay(Duration::from_millis(350)),
        );
        let delays: Vec<u128> = (1..=5).map(|n| policy.delay_before(n).as_millis()).collect();
        assert_eq!(delays, [0, 100, 200, 350, 350]);
    }
}
