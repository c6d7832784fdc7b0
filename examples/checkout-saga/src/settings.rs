//! What `checkout-service` reads from its environment, in one place: [`Settings::from_env`]
//! reads every variable the process uses, and [`VARIABLES`] names them, so that the deployment
//! files can be checked against it (`tests/deployment.rs`). `docs/deployment.md` describes each.

use std::ffi::OsString;
use std::net::SocketAddr;
use std::time::Duration;

use composable_kafka::{KafkaEnv, KafkaEnvError};
use tracing_subscriber::EnvFilter;

use crate::hosted;
use crate::telemetry::OtlpConfig;

/// The PostgreSQL database of the events, timers and checkpoints
/// (`postgres://user:password@host:port/database`). Required.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The Kafka bootstrap servers. Required. Every other `KAFKA_*` variable is a librdkafka
/// property ([`KAFKA_PREFIX`]).
pub const KAFKA_BROKERS: &str = "KAFKA_BROKERS";
/// The prefix of librdkafka properties: `KAFKA_SECURITY_PROTOCOL` is `security.protocol`
/// ([`KafkaEnv`] has the rules).
pub const KAFKA_PREFIX: &str = KafkaEnv::PREFIX;
/// A prefix for every topic and consumer group (empty by default).
pub const TOPIC_PREFIX: &str = "CHECKOUT_TOPIC_PREFIX";
/// How long a claim on the relay's or the saga's work lasts without renewal, in milliseconds
/// (10 000 by default).
pub const CLAIM_TTL_MS: &str = "CHECKOUT_CLAIM_TTL_MS";
/// Where to serve metrics for Prometheus, as `address:port` (not served when unset).
pub const METRICS_ADDR: &str = "CHECKOUT_METRICS_ADDR";
/// The most connections the process's PostgreSQL pool opens ([`DEFAULT_DB_MAX_CONNECTIONS`]
/// by default).
pub const DB_MAX_CONNECTIONS: &str = "CHECKOUT_DB_MAX_CONNECTIONS";

/// Whether the process creates the topics it uses when they are missing (`true` by default;
/// `false` where topics are created ahead, by whoever may).
pub const CREATE_TOPICS: &str = "CHECKOUT_CREATE_TOPICS";
/// The partitions of each topic the process creates ([`hosted::PARTITIONS`] by default).
pub const TOPIC_PARTITIONS: &str = "CHECKOUT_TOPIC_PARTITIONS";
/// The replicas of each topic the process creates (1 by default: right for one broker only).
pub const TOPIC_REPLICATION: &str = "CHECKOUT_TOPIC_REPLICATION";

/// Where to serve the liveness and readiness probes, as `address:port` (not served when unset).
pub const HEALTH_ADDR: &str = "CHECKOUT_HEALTH_ADDR";
/// How long a graceful stop may take, in milliseconds, before what still runs is aborted (the
/// host's default, 20 s, when unset).
pub const SHUTDOWN_GRACE_MS: &str = "CHECKOUT_SHUTDOWN_GRACE_MS";
/// The OpenTelemetry collector's OTLP/HTTP address (`http://127.0.0.1:4318`, say): the
/// process's traces are exported there when set ([`crate::telemetry`]).
pub const OTLP_ENDPOINT: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
/// The `service.name` of the exported spans ([`DEFAULT_SERVICE_NAME`] by default).
pub const SERVICE_NAME: &str = "OTEL_SERVICE_NAME";
/// The `service.name` of the spans when [`SERVICE_NAME`] is unset.
pub const DEFAULT_SERVICE_NAME: &str = "checkout-service";
/// What the process logs to standard error, as `tracing_subscriber`'s `EnvFilter` reads it
/// (`warn`, `info,composable=debug`; [`DEFAULT_LOG_FILTER`] by default).
pub const LOG_FILTER: &str = "RUST_LOG";
/// The log filter when [`LOG_FILTER`] is unset: warnings and errors, and the services' comings
/// and goings (claims, rebalances, breakers, shutdown).
pub const DEFAULT_LOG_FILTER: &str = "info";

/// Every variable `checkout-service` reads by name; besides these it reads every variable
/// starting with [`KAFKA_PREFIX`].
pub const VARIABLES: &[&str] = &[
    DATABASE_URL,
    KAFKA_BROKERS,
    TOPIC_PREFIX,
    CLAIM_TTL_MS,
    METRICS_ADDR,
    DB_MAX_CONNECTIONS,
    CREATE_TOPICS,
    TOPIC_PARTITIONS,
    TOPIC_REPLICATION,
    HEALTH_ADDR,
    SHUTDOWN_GRACE_MS,
    OTLP_ENDPOINT,
    SERVICE_NAME,
    LOG_FILTER,
];

/// The pool's size when [`DB_MAX_CONNECTIONS`] is unset: what the busiest single process (every
/// role in one) needs, with room to spare (`docs/deployment.md` has the arithmetic).
pub const DEFAULT_DB_MAX_CONNECTIONS: u32 = 10;

/// A variable `checkout-service` cannot use. Never shows the value of `DATABASE_URL` (it may
/// hold a password) or of a Kafka secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SettingsError {
    /// A required variable is unset or empty.
    #[error("{0} is not set")]
    Missing(&'static str),
    /// A variable is not valid Unicode.
    #[error("{0} is not valid Unicode")]
    NotUnicode(&'static str),
    /// A variable's value is not what it should be.
    #[error("{variable} `{value}` is not {expected}")]
    Invalid {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
        /// What it should be.
        expected: &'static str,
    },
    /// The Kafka settings are wrong.
    #[error(transparent)]
    Kafka(#[from] KafkaEnvError),
}

/// Everything `checkout-service` takes from its environment.
#[derive(Debug, Clone)]
pub struct Settings {
    /// [`DATABASE_URL`]. Kept out of `Debug` output as a whole: it may hold a password.
    database_url: Secret,
    /// [`KAFKA_BROKERS`] and the librdkafka properties.
    pub kafka: KafkaEnv,
    /// [`TOPIC_PREFIX`].
    pub topic_prefix: String,
    /// [`CLAIM_TTL_MS`], when set.
    pub claim_ttl: Option<Duration>,
    /// [`METRICS_ADDR`], when set.
    pub metrics_addr: Option<SocketAddr>,
    /// [`DB_MAX_CONNECTIONS`].
    pub db_max_connections: u32,
    /// [`CREATE_TOPICS`].
    pub create_topics: bool,
    /// [`TOPIC_PARTITIONS`].
    pub topic_partitions: i32,
    /// [`TOPIC_REPLICATION`].
    pub topic_replication: i32,
    /// [`HEALTH_ADDR`], when set.
    pub health_addr: Option<SocketAddr>,
    /// [`SHUTDOWN_GRACE_MS`], when set.
    pub shutdown_grace: Option<Duration>,
    /// Where traces go: [`OTLP_ENDPOINT`] and [`SERVICE_NAME`], when an endpoint is set.
    pub otlp: Option<OtlpConfig>,
    /// [`LOG_FILTER`], checked to parse.
    pub log_filter: String,
}

/// A value that is never printed.
#[derive(Clone)]
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Settings {
    /// The settings in this process's environment.
    ///
    /// # Errors
    /// As [`from_vars`](Self::from_vars).
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_vars(std::env::vars_os())
    }

    /// The settings in `vars` (name, value pairs as [`std::env::vars_os`] gives them); an
    /// empty value counts as unset.
    ///
    /// # Errors
    /// [`SettingsError::Missing`] without [`DATABASE_URL`] or [`KAFKA_BROKERS`],
    /// [`SettingsError::Invalid`] for a value that does not parse, [`SettingsError::Kafka`]
    /// for a `KAFKA_*` variable librdkafka refuses.
    pub fn from_vars<K, V>(vars: impl IntoIterator<Item = (K, V)>) -> Result<Self, SettingsError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let vars: Vec<(OsString, OsString)> =
            vars.into_iter().map(|(name, value)| (name.into(), value.into())).collect();
        let get = |name: &'static str| -> Result<Option<String>, SettingsError> {
            match vars.iter().rev().find(|(key, _)| key == name) {
                None => Ok(None),
                Some((_, value)) => match value.to_str() {
                    None => Err(SettingsError::NotUnicode(name)),
                    Some("") => Ok(None),
                    Some(value) => Ok(Some(value.to_owned())),
                },
            }
        };
        let database_url = get(DATABASE_URL)?.ok_or(SettingsError::Missing(DATABASE_URL))?;
        if get(KAFKA_BROKERS)?.is_none() {
            return Err(SettingsError::Missing(KAFKA_BROKERS));
        }
        let kafka = KafkaEnv::from_vars(KAFKA_PREFIX, vars.iter().cloned())?;
        let millis = |variable: &'static str| -> Result<Option<Duration>, SettingsError> {
            get(variable)?
                .map(|value| match value.parse::<u64>() {
                    Ok(ms) if ms > 0 => Ok(Duration::from_millis(ms)),
                    _ => Err(SettingsError::Invalid {
                        variable,
                        value,
                        expected: "a positive number of milliseconds",
                    }),
                })
                .transpose()
        };
        let claim_ttl = millis(CLAIM_TTL_MS)?;
        let shutdown_grace = millis(SHUTDOWN_GRACE_MS)?;
        let address = |variable: &'static str| -> Result<Option<SocketAddr>, SettingsError> {
            get(variable)?
                .map(|value| {
                    value.parse::<SocketAddr>().map_err(|_| SettingsError::Invalid {
                        variable,
                        value,
                        expected: "an address:port",
                    })
                })
                .transpose()
        };
        let metrics_addr = address(METRICS_ADDR)?;
        let health_addr = address(HEALTH_ADDR)?;
        let positive = |variable: &'static str, expected: &'static str| {
            get(variable)?
                .map(|value| match value.parse::<u32>() {
                    Ok(number) if number > 0 => Ok(number),
                    _ => Err(SettingsError::Invalid { variable, value, expected }),
                })
                .transpose()
        };
        let db_max_connections = positive(DB_MAX_CONNECTIONS, "a positive number of connections")?
            .unwrap_or(DEFAULT_DB_MAX_CONNECTIONS);
        let count = |variable: &'static str, default: i32| -> Result<i32, SettingsError> {
            match positive(variable, "a positive number")? {
                None => Ok(default),
                Some(number) => i32::try_from(number).map_err(|_| SettingsError::Invalid {
                    variable,
                    value: number.to_string(),
                    expected: "a number below 2^31",
                }),
            }
        };
        let topic_partitions = count(TOPIC_PARTITIONS, hosted::PARTITIONS)?;
        let topic_replication = count(TOPIC_REPLICATION, 1)?;
        let create_topics = match get(CREATE_TOPICS)?.as_deref() {
            None | Some("true") => true,
            Some("false") => false,
            Some(other) => {
                return Err(SettingsError::Invalid {
                    variable: CREATE_TOPICS,
                    value: other.to_owned(),
                    expected: "true or false",
                });
            }
        };
        let log_filter = get(LOG_FILTER)?.unwrap_or_else(|| DEFAULT_LOG_FILTER.to_owned());
        if EnvFilter::builder().parse(&log_filter).is_err() {
            return Err(SettingsError::Invalid {
                variable: LOG_FILTER,
                value: log_filter,
                expected: "a log filter (`info`, `warn,composable=debug`)",
            });
        }
        Ok(Self {
            log_filter,
            database_url: Secret(database_url),
            kafka,
            topic_prefix: get(TOPIC_PREFIX)?.unwrap_or_default(),
            claim_ttl,
            metrics_addr,
            health_addr,
            shutdown_grace,
            db_max_connections,
            create_topics,
            topic_partitions,
            topic_replication,
            otlp: get(OTLP_ENDPOINT)?
                .map(|endpoint| -> Result<OtlpConfig, SettingsError> {
                    let service =
                        get(SERVICE_NAME)?.unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
                    Ok(OtlpConfig { endpoint, service })
                })
                .transpose()?,
        })
    }

    /// [`DATABASE_URL`].
    pub fn database_url(&self) -> &str {
        &self.database_url.0
    }

    /// Whether `checkout-service` reads the variable `name`: one of [`VARIABLES`], or a
    /// librdkafka property's (`KAFKA_` and more).
    pub fn reads(name: &str) -> bool {
        VARIABLES.contains(&name)
            || name.strip_prefix(KAFKA_PREFIX).is_some_and(|rest| !rest.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUIRED: [(&str, &str); 2] =
        [(DATABASE_URL, "postgres://app:pw@db:5432/app"), (KAFKA_BROKERS, "broker:9092")];

    #[test]
    fn the_database_and_the_brokers_are_required_and_the_rest_has_defaults() {
        assert_eq!(
            Settings::from_vars([(KAFKA_BROKERS, "b:9092")]).map(|_| ()),
            Err(SettingsError::Missing(DATABASE_URL))
        );
        assert_eq!(
            Settings::from_vars([(DATABASE_URL, "postgres://x/y"), (KAFKA_BROKERS, "")])
                .map(|_| ()),
            Err(SettingsError::Missing(KAFKA_BROKERS))
        );
        let settings = Settings::from_vars(REQUIRED).expect("the required settings");
        assert_eq!(settings.database_url(), "postgres://app:pw@db:5432/app");
        assert_eq!(settings.kafka.brokers(), "broker:9092");
        assert_eq!(settings.topic_prefix, "");
        assert_eq!((settings.claim_ttl, settings.metrics_addr), (None, None));
        assert_eq!(settings.db_max_connections, DEFAULT_DB_MAX_CONNECTIONS);
        assert!(settings.create_topics);
        assert_eq!((settings.topic_partitions, settings.topic_replication), (3, 1));
        assert_eq!(settings.log_filter, DEFAULT_LOG_FILTER);
        assert!(!format!("{settings:?}").contains("pw@"), "the URL's password is not shown");
    }

    #[test]
    fn every_variable_is_read() {
        let mut vars = REQUIRED.to_vec();
        vars.extend([
            (TOPIC_PREFIX, "staging."),
            (CLAIM_TTL_MS, "2500"),
            (METRICS_ADDR, "0.0.0.0:9464"),
            (DB_MAX_CONNECTIONS, "6"),
            (CREATE_TOPICS, "false"),
            (TOPIC_PARTITIONS, "12"),
            (TOPIC_REPLICATION, "3"),
            (LOG_FILTER, "warn,composable=debug"),
            ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
        ]);
        let settings = Settings::from_vars(vars).expect("valid settings");
        assert_eq!(settings.topic_prefix, "staging.");
        assert_eq!(settings.claim_ttl, Some(Duration::from_millis(2500)));
        assert_eq!(settings.metrics_addr, Some(SocketAddr::from(([0, 0, 0, 0], 9464))));
        assert_eq!(settings.db_max_connections, 6);
        assert!(!settings.create_topics);
        assert_eq!((settings.topic_partitions, settings.topic_replication), (12, 3));
        assert_eq!(settings.kafka.get("security.protocol"), Some("plaintext"));
        assert_eq!(settings.log_filter, "warn,composable=debug");
    }

    #[test]
    fn bad_values_are_errors_naming_their_variable() {
        for (variable, value) in [
            (CLAIM_TTL_MS, "soon"),
            (CLAIM_TTL_MS, "0"),
            (METRICS_ADDR, "9464"),
            (DB_MAX_CONNECTIONS, "0"),
            (DB_MAX_CONNECTIONS, "many"),
            (CREATE_TOPICS, "yes"),
            (TOPIC_PARTITIONS, "0"),
            (TOPIC_REPLICATION, "4294967295"),
            (LOG_FILTER, "composable=loud"),
        ] {
            let mut vars = REQUIRED.to_vec();
            vars.push((variable, value));
            match Settings::from_vars(vars) {
                Err(SettingsError::Invalid { variable: named, .. }) => assert_eq!(named, variable),
                other => panic!("{variable}={value}: {other:?}"),
            }
        }
        let mut vars = REQUIRED.to_vec();
        vars.push(("KAFKA_ACKS", "most"));
        assert!(matches!(Settings::from_vars(vars), Err(SettingsError::Kafka(_))));
    }

    #[test]
    fn reads_names_the_variables_and_the_kafka_properties() {
        for name in VARIABLES {
            assert!(Settings::reads(name), "{name}");
        }
        assert!(Settings::reads("KAFKA_SASL_PASSWORD"));
        assert!(!Settings::reads("KAFKA_"));
        assert!(!Settings::reads("CHECKOUT_ROLE"));
        assert!(!Settings::reads("POSTGRES_PASSWORD"));
    }
}
