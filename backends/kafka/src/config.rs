//! The settings of a [`KafkaBus`](crate::KafkaBus): what its producer and consumers are built
//! with, and how failing deliveries are retried.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use composable::bus::RedeliveryPolicy;
use composable::{Clock, SystemClock};
use rdkafka::ClientConfig;

use crate::env::{KafkaEnv, KafkaEnvError, Redacted, parse_bool};

/// How many brokers must have a message before a publish counts as done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Acks {
    /// None: fire and forget. Messages are lost when the broker fails.
    None,
    /// The partition leader only.
    Leader,
    /// Every in-sync replica: what the outbox relay's guarantee rests on.
    #[default]
    All,
}

/// How the producer compresses batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// No compression.
    #[default]
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
}

/// Where a consumer group with no committed offset starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OffsetReset {
    /// At the oldest message the broker holds, so a new group misses nothing.
    #[default]
    Earliest,
    /// At the next message published.
    Latest,
}

/// When a consumer commits the offset of an acknowledged delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// After each acknowledgement, without waiting for the broker's answer.
    #[default]
    Async,
    /// After each acknowledgement, waiting for the broker's answer before the next delivery.
    Sync,
    /// The acknowledged offset is stored at once and committed by librdkafka every interval:
    /// far fewer commit requests, and more redeliveries after a crash.
    Periodic(Duration),
}

/// The settings of a [`KafkaBus`](crate::KafkaBus).
///
/// ```
/// use std::time::Duration;
/// use composable::backoff::Backoff;
/// use composable::bus::RedeliveryPolicy;
/// use composable_kafka::{Acks, Compression, KafkaConfig, OffsetReset};
///
/// let config = KafkaConfig::new("127.0.0.1:9092")
///     .acks(Acks::All)
///     .compression(Compression::Lz4)
///     .group("billing")
///     .auto_offset_reset(OffsetReset::Earliest)
///     .buffer_size(50_000)
///     .redelivery(RedeliveryPolicy::default().retry(Backoff::exponential(Duration::from_millis(200)).attempts(3)))
///     // Anything librdkafka knows, for example SASL over TLS (needs the `ssl` feature):
///     .set("security.protocol", "sasl_ssl")
///     .set("sasl.mechanisms", "SCRAM-SHA-512");
/// assert_eq!(config.producer_config().get("acks"), Some("all"));
/// assert_eq!(config.producer_config().get("security.protocol"), Some("sasl_ssl"));
/// assert_eq!(config.consumer_config("billing").get("enable.auto.commit"), Some("false"));
/// ```
///
/// The same from the environment, so that a deployment changes brokers, security and tuning
/// without a rebuild: [`KafkaConfig::from_env`], or [`KafkaConfig::with_env`] over settings of
/// the application's own ([`KafkaEnv`] has the rules).
///
/// Its `Debug` output hides the values of secrets (passwords, keys, JAAS and OAUTHBEARER
/// settings).
#[derive(Clone)]
pub struct KafkaConfig {
    brokers: String,
    client_id: String,
    acks: Acks,
    compression: Compression,
    idempotence: bool,
    group: Option<String>,
    auto_offset_reset: OffsetReset,
    buffer_size: usize,
    linger: Duration,
    message_timeout: Duration,
    session_timeout: Duration,
    commit_mode: CommitMode,
    redelivery: RedeliveryPolicy,
    clock: Arc<dyn Clock>,
    properties: Vec<(String, String)>,
}

impl KafkaConfig {
    /// Settings for the comma-separated `host:port` list `brokers`, with these defaults:
    /// acks from all in-sync replicas, no compression, an idempotent producer (per-key order
    /// survives retries), new groups start at the earliest offset, a 100 000-message producer
    /// buffer, 5 ms linger, asynchronous commits, the default [`RedeliveryPolicy`].
    pub fn new(brokers: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            client_id: "composable".into(),
            acks: Acks::All,
            compression: Compression::None,
            idempotence: true,
            group: None,
            auto_offset_reset: OffsetReset::Earliest,
            buffer_size: 100_000,
            linger: Duration::from_millis(5),
            message_timeout: Duration::from_secs(30),
            session_timeout: Duration::from_secs(10),
            commit_mode: CommitMode::Async,
            redelivery: RedeliveryPolicy::default(),
            clock: Arc::new(SystemClock),
            properties: Vec::new(),
        }
    }

    /// Settings from this process's environment alone: the brokers from `KAFKA_BROKERS`,
    /// every other `KAFKA_*` variable as a librdkafka property (`KAFKA_SECURITY_PROTOCOL` is
    /// `security.protocol`), over the defaults of [`new`](Self::new).
    ///
    /// ```no_run
    /// use composable_kafka::{KafkaBus, KafkaConfig};
    ///
    /// # fn main() -> Result<(), Box<dyn std::error::Error>> {
    /// // KAFKA_BROKERS=b-1.msk.example:9096 KAFKA_SECURITY_PROTOCOL=sasl_ssl
    /// // KAFKA_SASL_MECHANISMS=SCRAM-SHA-512 KAFKA_SASL_USERNAME=... KAFKA_SASL_PASSWORD=...
    /// let bus = KafkaBus::new(KafkaConfig::from_env()?)?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`KafkaEnv::read`]: `KAFKA_BROKERS` unset, or a variable librdkafka refuses.
    pub fn from_env() -> Result<Self, KafkaEnvError> {
        let env = KafkaEnv::read()?;
        Ok(Self::new(env.brokers()).with_env(&env))
    }

    /// These settings with `env`'s over them: its brokers, and each of its properties set as
    /// [`set`](Self::set) would, after and so over everything else — except
    /// `enable.idempotence`, which sets [`idempotence`](Self::idempotence), so that turning it
    /// off still keeps a key's messages in order.
    #[must_use]
    pub fn with_env(mut self, env: &KafkaEnv) -> Self {
        self.brokers = env.brokers().to_owned();
        for (key, value) in env.properties() {
            match (key, parse_bool(value)) {
                ("enable.idempotence", Some(idempotence)) => self.idempotence = idempotence,
                _ => self.properties.push((key.to_owned(), value.to_owned())),
            }
        }
        self
    }

    /// The brokers this configuration connects to.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The client id the broker sees (`client.id`).
    #[must_use]
    pub fn client_id(mut self, client_id: impl Into<String>) -> Self {
        self.client_id = client_id.into();
        self
    }

    /// How many brokers must have a message before a publish is acknowledged.
    #[must_use]
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// How batches are compressed.
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Whether the producer is idempotent (`enable.idempotence`). When off, the producer keeps
    /// one request in flight per broker instead, so a retry can still not reorder a key's
    /// messages, at some cost in throughput.
    #[must_use]
    pub fn idempotence(mut self, idempotence: bool) -> Self {
        self.idempotence = idempotence;
        self
    }

    /// The consumer group of subscriptions that name none. Without it, such subscriptions
    /// use [`composable::bus::default_group`] of their topics.
    #[must_use]
    pub fn group(mut self, group: impl Into<String>) -> Self {
        self.group = Some(group.into());
        self
    }

    /// Where a group with no committed offset starts.
    #[must_use]
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// How many messages the producer buffers before a publish waits for room
    /// (`queue.buffering.max.messages`).
    #[must_use]
    pub fn buffer_size(mut self, messages: usize) -> Self {
        self.buffer_size = messages.max(1);
        self
    }

    /// How long the producer waits to fill a batch (`linger.ms`).
    #[must_use]
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// How long a publish may take before it fails (`message.timeout.ms`).
    #[must_use]
    pub fn message_timeout(mut self, timeout: Duration) -> Self {
        self.message_timeout = timeout;
        self
    }

    /// How long a consumer that stops heartbeating keeps its partitions (`session.timeout.ms`).
    #[must_use]
    pub fn session_timeout(mut self, timeout: Duration) -> Self {
        self.session_timeout = timeout;
        self
    }

    /// When acknowledged offsets are committed.
    #[must_use]
    pub fn commit_mode(mut self, mode: CommitMode) -> Self {
        self.commit_mode = mode;
        self
    }

    /// How failing deliveries are retried and dead-lettered.
    #[must_use]
    pub fn redelivery(mut self, policy: RedeliveryPolicy) -> Self {
        self.redelivery = policy;
        self
    }

    /// Sets any librdkafka property on the producer and the consumers (SASL, TLS, timeouts...),
    /// after and so over the settings above.
    #[must_use]
    pub fn set(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.properties.push((key.into(), value.into()));
        self
    }

    pub(crate) fn configured_group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Waits between redeliveries and retries on `clock` (the system clock by default).
    #[must_use]
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    pub(crate) fn clock(&self) -> &dyn Clock {
        &*self.clock
    }

    pub(crate) fn redelivery_policy(&self) -> &RedeliveryPolicy {
        &self.redelivery
    }

    pub(crate) fn commit(&self) -> CommitMode {
        self.commit_mode
    }

    fn common(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.brokers).set("client.id", &self.client_id);
        config
    }

    fn passthrough(&self, mut config: ClientConfig) -> ClientConfig {
        for (key, value) in &self.properties {
            config.set(key, value);
        }
        config
    }

    /// The librdkafka configuration of the producer.
    pub fn producer_config(&self) -> ClientConfig {
        let mut config = self.common();
        let acks = match self.acks {
            Acks::None => "0",
            Acks::Leader => "1",
            Acks::All => "all",
        };
        let compression = match self.compression {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        };
        config
            .set("acks", acks)
            .set("compression.type", compression)
            .set("queue.buffering.max.messages", self.buffer_size.to_string())
            .set("linger.ms", self.linger.as_millis().to_string())
            .set("message.timeout.ms", self.message_timeout.as_millis().to_string());
        if self.idempotence {
            config.set("enable.idempotence", "true");
        } else {
            config.set("max.in.flight.requests.per.connection", "1");
        }
        self.passthrough(config)
    }

    /// The librdkafka configuration of a consumer in `group`.
    pub fn consumer_config(&self, group: &str) -> ClientConfig {
        let mut config = self.common();
        let reset = match self.auto_offset_reset {
            OffsetReset::Earliest => "earliest",
            OffsetReset::Latest => "latest",
        };
        config
            .set("group.id", group)
            .set("auto.offset.reset", reset)
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", self.session_timeout.as_millis().to_string())
            .set("enable.partition.eof", "false");
        match self.commit_mode {
            CommitMode::Periodic(interval) => {
                config
                    .set("enable.auto.commit", "true")
                    .set("auto.commit.interval.ms", interval.as_millis().to_string());
            }
            CommitMode::Async | CommitMode::Sync => {
                config.set("enable.auto.commit", "false");
            }
        }
        self.passthrough(config)
    }

    /// The librdkafka configuration of the admin client ([`crate::KafkaBus::create_topics`]).
    pub fn admin_config(&self) -> ClientConfig {
        self.passthrough(self.common())
    }
}

impl fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let properties =
            Redacted(self.properties.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect());
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("client_id", &self.client_id)
            .field("acks", &self.acks)
            .field("compression", &self.compression)
            .field("idempotence", &self.idempotence)
            .field("group", &self.group)
            .field("auto_offset_reset", &self.auto_offset_reset)
            .field("buffer_size", &self.buffer_size)
            .field("linger", &self.linger)
            .field("message_timeout", &self.message_timeout)
            .field("session_timeout", &self.session_timeout)
            .field("commit_mode", &self.commit_mode)
            .field("redelivery", &self.redelivery)
            .field("clock", &self.clock)
            .field("properties", &properties)
            .finish()
    }
}
