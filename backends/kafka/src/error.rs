//! How librdkafka's errors become [`BusError`]s, and the errors of setting a bus up.

use composable::bus::BusError;
use rdkafka::error::{KafkaError as RdKafkaError, RDKafkaErrorCode};

/// Setting up a [`crate::KafkaBus`] or its topics failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaError {
    /// librdkafka refused the configuration (an unknown property or a bad value).
    #[error("invalid Kafka client configuration: {0}")]
    Config(#[source] RdKafkaError),
    /// The brokers did not answer within the timeout.
    #[error("Kafka brokers `{brokers}` unreachable: {source}")]
    Unreachable {
        /// The bootstrap servers tried.
        brokers: String,
        /// librdkafka's error.
        #[source]
        source: RdKafkaError,
    },
    /// Creating a topic failed.
    #[error("could not create topic `{topic}`: {code}")]
    CreateTopic {
        /// The topic.
        topic: String,
        /// The broker's answer.
        code: RDKafkaErrorCode,
    },
    /// The admin request itself failed.
    #[error("Kafka admin request failed: {0}")]
    Admin(#[source] RdKafkaError),
}

/// Whether `code` means the message itself is unacceptable, so that retrying cannot help.
fn is_permanent(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::InvalidTopic
            | RDKafkaErrorCode::TopicAuthorizationFailed
            | RDKafkaErrorCode::ClusterAuthorizationFailed
            | RDKafkaErrorCode::UnknownTopic
    )
}

/// Maps an error of publishing to `topic`.
pub(crate) fn publish_error(topic: &str, error: RdKafkaError) -> BusError {
    match error.rdkafka_error_code() {
        Some(code) if is_permanent(code) => {
            BusError::Rejected { topic: topic.to_owned(), source: Box::new(error) }
        }
        _ => BusError::Unavailable { operation: "publish", source: Box::new(error) },
    }
}

/// Maps an error met while `operation` on a consumer.
pub(crate) fn consumer_error(operation: &'static str, error: RdKafkaError) -> BusError {
    match error {
        RdKafkaError::ClientConfig(..) | RdKafkaError::ClientCreation(_) => {
            BusError::Backend { operation, source: Box::new(error) }
        }
        _ => BusError::Unavailable { operation, source: Box::new(error) },
    }
}
