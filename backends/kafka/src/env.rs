//! Kafka settings from the environment, so that the same binary reaches a local broker, Kafka,
//! Redpanda, Amazon MSK or Azure Event Hubs by configuration alone.
//!
//! [`KafkaEnv`] reads `{prefix}BROKERS` (the bootstrap servers) and every other variable that
//! starts with the prefix (`KAFKA_` by default) as a librdkafka property: the rest of the name,
//! lower-cased, with `_` for `.` and `__` for `_` — `KAFKA_SECURITY_PROTOCOL` is
//! `security.protocol`, `KAFKA_SASL_MECHANISMS` is `sasl.mechanisms`,
//! `KAFKA_MESSAGE_TIMEOUT_MS` is `message.timeout.ms`. Each property is checked by librdkafka
//! when it is read, so a misspelt name or a bad value is an error naming its variable before
//! any client exists. Values of secrets (passwords, keys, JAAS and OAUTHBEARER settings) never
//! appear in errors or in `Debug` output.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError as RdKafkaError;

/// What reading Kafka settings from the environment can fail with. Each error names the
/// variable at fault, never a secret's value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KafkaEnvError {
    /// The brokers' variable is unset or empty.
    #[error("{variable} is not set: the Kafka brokers to connect to, as host:port[,host:port...]")]
    MissingBrokers {
        /// The variable (`KAFKA_BROKERS` by default).
        variable: String,
    },
    /// A variable with the prefix has a name or value that is not Unicode.
    #[error("{variable} is not valid Unicode")]
    NotUnicode {
        /// The variable, as far as it could be read.
        variable: String,
    },
    /// A variable with the prefix names no property (`KAFKA_`, or a name ending in `_`).
    #[error("{variable} names no librdkafka property")]
    NoProperty {
        /// The variable.
        variable: String,
    },
    /// The property is one the bus sets itself, per client, for its guarantees.
    #[error("{variable} sets `{property}`, which the bus sets itself ({why}); remove the variable")]
    Reserved {
        /// The variable.
        variable: String,
        /// The property it names.
        property: String,
        /// Why the bus keeps it.
        why: &'static str,
    },
    /// librdkafka refused the property: unknown, or a value it does not accept.
    #[error("{variable} (`{property}`): {reason}")]
    Invalid {
        /// The variable.
        variable: String,
        /// The property it names.
        property: String,
        /// librdkafka's reason, without the value when the property is a secret.
        reason: String,
    },
}

/// Kafka settings read from environment variables: the brokers and librdkafka properties, each
/// checked by librdkafka. Apply them with [`KafkaConfig::with_env`](crate::KafkaConfig::with_env),
/// or build a configuration from them alone with
/// [`KafkaConfig::from_env`](crate::KafkaConfig::from_env).
///
/// ```
/// use composable_kafka::{KafkaConfig, KafkaEnv};
///
/// // What `KafkaEnv::read()` would find for Azure Event Hubs (SASL/PLAIN over TLS also needs
/// // the `ssl` feature when the client is created):
/// let vars = [
///     ("KAFKA_BROKERS", "my-namespace.servicebus.windows.net:9093"),
///     ("KAFKA_SASL_MECHANISMS", "PLAIN"),
///     ("KAFKA_SASL_USERNAME", "$ConnectionString"),
///     ("KAFKA_SASL_PASSWORD", "Endpoint=sb://my-namespace.servicebus.windows.net/;SharedAccessKey=s3cr3t"),
///     ("KAFKA_ENABLE_IDEMPOTENCE", "false"),
///     ("PATH", "/usr/bin"),
/// ];
/// let env = KafkaEnv::from_vars(KafkaEnv::PREFIX, vars)?;
/// assert_eq!(env.brokers(), "my-namespace.servicebus.windows.net:9093");
/// let config = KafkaConfig::new("localhost:9092").with_env(&env);
/// assert_eq!(config.brokers(), "my-namespace.servicebus.windows.net:9093");
/// assert_eq!(config.producer_config().get("sasl.username"), Some("$ConnectionString"));
/// assert_eq!(config.producer_config().get("enable.idempotence"), None);
/// // Secrets stay out of what is printed.
/// assert!(!format!("{config:?}").contains("s3cr3t"));
/// # Ok::<(), composable_kafka::KafkaEnvError>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
pub struct KafkaEnv {
    brokers: String,
    properties: BTreeMap<String, String>,
}

/// Properties the bus sets per client and must keep, with why.
const RESERVED: &[(&str, &str)] = &[
    ("group.id", "one consumer group per subscription"),
    ("enable.auto.offset.store", "offsets are stored only once a delivery is acknowledged"),
    ("enable.auto.commit", "commits follow acknowledgements: choose KafkaConfig::commit_mode"),
    ("auto.commit.interval.ms", "choose KafkaConfig::commit_mode"),
    ("enable.partition.eof", "the consumer's loop relies on it being off"),
];

impl KafkaEnv {
    /// The prefix [`read`](Self::read) uses.
    pub const PREFIX: &'static str = "KAFKA_";

    /// The settings in this process's environment under [`PREFIX`](Self::PREFIX).
    ///
    /// # Errors
    /// As [`from_vars`](Self::from_vars).
    pub fn read() -> Result<Self, KafkaEnvError> {
        Self::read_prefixed(Self::PREFIX)
    }

    /// The settings in this process's environment under `prefix` (`ORDERS_KAFKA_`, say, for a
    /// process that talks to two clusters).
    ///
    /// # Errors
    /// As [`from_vars`](Self::from_vars).
    pub fn read_prefixed(prefix: &str) -> Result<Self, KafkaEnvError> {
        Self::from_vars(prefix, std::env::vars_os())
    }

    /// The settings in `vars` (name, value pairs, as [`std::env::vars_os`] gives them) under
    /// `prefix`: `{prefix}BROKERS` is required and not empty; every other variable with the
    /// prefix and a non-empty value is a librdkafka property, which librdkafka checks here.
    /// Variables without the prefix are ignored.
    ///
    /// # Errors
    /// [`KafkaEnvError::MissingBrokers`] when `{prefix}BROKERS` is unset or empty; for a
    /// property's variable, [`NotUnicode`](KafkaEnvError::NotUnicode),
    /// [`NoProperty`](KafkaEnvError::NoProperty), [`Reserved`](KafkaEnvError::Reserved)
    /// (`group.id` and the offset-commit settings, which the bus sets itself) or
    /// [`Invalid`](KafkaEnvError::Invalid) (librdkafka does not know the property or refuses
    /// the value; `bootstrap.servers` is refused too: set `{prefix}BROKERS`).
    pub fn from_vars<K, V>(
        prefix: &str,
        vars: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, KafkaEnvError>
    where
        K: Into<OsString>,
        V: Into<OsString>,
    {
        let brokers_variable = format!("{prefix}BROKERS");
        let mut brokers = None;
        let mut properties = BTreeMap::new();
        for (name, value) in vars {
            let (name, value) = (name.into(), value.into());
            let Some(name) = name.to_str() else {
                // A name that is not Unicode may still have the prefix in its readable part.
                let lossy = name.to_string_lossy().into_owned();
                if lossy.starts_with(prefix) {
                    return Err(KafkaEnvError::NotUnicode { variable: lossy });
                }
                continue;
            };
            let Some(rest) = name.strip_prefix(prefix) else { continue };
            let value = value
                .into_string()
                .map_err(|_| KafkaEnvError::NotUnicode { variable: name.to_owned() })?;
            if value.is_empty() {
                continue;
            }
            if name == brokers_variable {
                brokers = Some(value);
                continue;
            }
            let property = property_name(rest)
                .ok_or_else(|| KafkaEnvError::NoProperty { variable: name.to_owned() })?;
            check(name, &property, &value, &brokers_variable)?;
            properties.insert(property, value);
        }
        let brokers =
            brokers.ok_or(KafkaEnvError::MissingBrokers { variable: brokers_variable })?;
        Ok(Self { brokers, properties })
    }

    /// The bootstrap servers.
    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// The librdkafka properties, by name.
    pub fn properties(&self) -> impl Iterator<Item = (&str, &str)> {
        self.properties.iter().map(|(key, value)| (key.as_str(), value.as_str()))
    }

    /// The property `name`'s value, if set.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.properties.get(name).map(String::as_str)
    }
}

impl fmt::Debug for KafkaEnv {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KafkaEnv")
            .field("brokers", &self.brokers)
            .field("properties", &Redacted(self.properties().collect()))
            .finish()
    }
}

/// Properties as a map, with the values of secrets hidden.
pub(crate) struct Redacted<'a>(pub(crate) Vec<(&'a str, &'a str)>);

impl fmt::Debug for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (key, value) in &self.0 {
            let shown = if is_secret(key) { "<redacted>" } else { value };
            map.entry(key, &shown);
        }
        map.finish()
    }
}

/// Whether the value of `property` is a secret, never to be printed.
pub(crate) fn is_secret(property: &str) -> bool {
    property.contains("password")
        || property.contains("secret")
        || property.contains("jaas")
        || property == "sasl.oauthbearer.config"
        || (property.starts_with("ssl.key") && property != "ssl.key.location")
        || property.ends_with(".pem") && property.contains("key")
}

/// `SECURITY_PROTOCOL` → `security.protocol`; `__` stands for `_`. `None` when nothing is
/// left or a part is empty.
fn property_name(rest: &str) -> Option<String> {
    let lower = rest.to_ascii_lowercase();
    let mut property = String::with_capacity(lower.len());
    let mut parts = lower.split("__").peekable();
    while let Some(part) = parts.next() {
        if part.split('_').any(str::is_empty) {
            return None;
        }
        property.push_str(&part.replace('_', "."));
        if parts.peek().is_some() {
            property.push('_');
        }
    }
    Some(property)
}

/// librdkafka's verdict on `property` = `value`, and the bus's own rules.
fn check(
    variable: &str,
    property: &str,
    value: &str,
    brokers_variable: &str,
) -> Result<(), KafkaEnvError> {
    if let Some((_, why)) = RESERVED.iter().find(|(reserved, _)| *reserved == property) {
        return Err(KafkaEnvError::Reserved {
            variable: variable.to_owned(),
            property: property.to_owned(),
            why,
        });
    }
    if matches!(property, "bootstrap.servers" | "metadata.broker.list") {
        return Err(KafkaEnvError::Invalid {
            variable: variable.to_owned(),
            property: property.to_owned(),
            reason: format!("set the brokers with {brokers_variable}"),
        });
    }
    if property == "enable.idempotence" {
        parse_bool(value).ok_or_else(|| KafkaEnvError::Invalid {
            variable: variable.to_owned(),
            property: property.to_owned(),
            reason: format!("`{value}` is not true or false"),
        })?;
    }
    let mut config = ClientConfig::new();
    config.set(property, value);
    match config.create_native_config() {
        Ok(_) => Ok(()),
        Err(error) => {
            let reason = match error {
                RdKafkaError::ClientConfig(_, description, _, _) => description,
                other => other.to_string(),
            };
            let reason = if is_secret(property) && !value.is_empty() {
                reason.replace(value, "<redacted>")
            } else {
                reason
            };
            Err(KafkaEnvError::Invalid {
                variable: variable.to_owned(),
                property: property.to_owned(),
                reason,
            })
        }
    }
}

/// librdkafka's booleans.
pub(crate) fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "true" | "t" | "1" => Some(true),
        "false" | "f" | "0" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::KafkaConfig;

    fn env(vars: &[(&str, &str)]) -> Result<KafkaEnv, KafkaEnvError> {
        KafkaEnv::from_vars(KafkaEnv::PREFIX, vars.iter().copied())
    }

    #[test]
    fn names_map_to_librdkafka_properties() {
        assert_eq!(property_name("SECURITY_PROTOCOL").as_deref(), Some("security.protocol"));
        assert_eq!(property_name("SASL_MECHANISMS").as_deref(), Some("sasl.mechanisms"));
        assert_eq!(property_name("MESSAGE_TIMEOUT_MS").as_deref(), Some("message.timeout.ms"));
        assert_eq!(property_name("A__B_C").as_deref(), Some("a_b.c"));
        for nothing in ["", "_", "A_", "_A", "A__", "A___B"] {
            assert_eq!(property_name(nothing), None, "{nothing:?}");
        }
    }

    #[test]
    fn reads_the_brokers_and_every_prefixed_property_and_nothing_else() {
        let env = env(&[
            ("KAFKA_BROKERS", "b1:9092,b2:9092"),
            ("KAFKA_SECURITY_PROTOCOL", "plaintext"),
            ("KAFKA_LINGER_MS", "20"),
            ("KAFKA_CLIENT_ID", ""),
            ("DATABASE_URL", "postgres://x"),
            ("KAFKAESQUE", "not ours"),
        ])
        .expect("valid settings");
        assert_eq!(env.brokers(), "b1:9092,b2:9092");
        assert_eq!(
            env.properties().collect::<Vec<_>>(),
            [("linger.ms", "20"), ("security.protocol", "plaintext")]
        );
        assert_eq!(env.get("client.id"), None, "an empty value is no setting");
    }

    #[test]
    fn another_prefix_reads_only_its_own_variables() {
        let env = KafkaEnv::from_vars(
            "ORDERS_KAFKA_",
            [
                ("ORDERS_KAFKA_BROKERS", "orders:9092"),
                ("ORDERS_KAFKA_ACKS", "1"),
                ("KAFKA_BROKERS", "elsewhere:9092"),
                ("KAFKA_NONSENSE", "ignored"),
            ],
        )
        .expect("valid settings");
        assert_eq!((env.brokers(), env.get("acks")), ("orders:9092", Some("1")));
    }

    #[test]
    fn the_brokers_are_required() {
        assert_eq!(
            env(&[("KAFKA_ACKS", "all")]),
            Err(KafkaEnvError::MissingBrokers { variable: "KAFKA_BROKERS".into() })
        );
        assert_eq!(
            env(&[("KAFKA_BROKERS", "")]),
            Err(KafkaEnvError::MissingBrokers { variable: "KAFKA_BROKERS".into() })
        );
    }

    #[test]
    fn unknown_properties_and_bad_values_are_errors_naming_the_variable() {
        let unknown = env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_SECURITY_PROTOKOL", "ssl")]);
        match unknown {
            Err(KafkaEnvError::Invalid { variable, property, reason }) => {
                assert_eq!(
                    (variable.as_str(), property.as_str()),
                    ("KAFKA_SECURITY_PROTOKOL", "security.protokol")
                );
                assert!(reason.contains("No such configuration property"), "{reason}");
            }
            other => panic!("not refused: {other:?}"),
        }
        let bad = env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_ACKS", "most")]);
        assert!(
            matches!(&bad, Err(KafkaEnvError::Invalid { variable, .. }) if variable == "KAFKA_ACKS"),
            "{bad:?}"
        );
        let bad = env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_LINGER_MS", "soon")]);
        assert!(matches!(bad, Err(KafkaEnvError::Invalid { .. })), "{bad:?}");
        let bad = env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_ENABLE_IDEMPOTENCE", "maybe")]);
        assert!(matches!(bad, Err(KafkaEnvError::Invalid { .. })), "{bad:?}");
        assert_eq!(
            env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_", "x")]),
            Err(KafkaEnvError::NoProperty { variable: "KAFKA_".into() })
        );
    }

    #[test]
    fn what_the_bus_sets_itself_is_refused() {
        for (variable, property) in [
            ("KAFKA_GROUP_ID", "group.id"),
            ("KAFKA_ENABLE_AUTO_OFFSET_STORE", "enable.auto.offset.store"),
            ("KAFKA_ENABLE_AUTO_COMMIT", "enable.auto.commit"),
        ] {
            let refused = env(&[("KAFKA_BROKERS", "b:9092"), (variable, "true")]);
            assert!(
                matches!(&refused, Err(KafkaEnvError::Reserved { property: p, .. }) if p == property),
                "{variable}: {refused:?}"
            );
        }
        let refused = env(&[("KAFKA_BROKERS", "b:9092"), ("KAFKA_BOOTSTRAP_SERVERS", "c:9092")]);
        assert!(matches!(refused, Err(KafkaEnvError::Invalid { .. })), "{refused:?}");
    }

    #[test]
    fn secrets_stay_out_of_errors_and_debug_output() {
        let env = env(&[
            ("KAFKA_BROKERS", "b:9092"),
            ("KAFKA_SASL_USERNAME", "$ConnectionString"),
            ("KAFKA_SASL_PASSWORD", "Endpoint=sb://x/;SharedAccessKey=hunter2"),
        ])
        .expect("valid settings");
        let config = KafkaConfig::new("other:9092").with_env(&env);
        for shown in [format!("{env:?}"), format!("{config:?}")] {
            assert!(!shown.contains("hunter2"), "{shown}");
            assert!(shown.contains("$ConnectionString"), "{shown}");
        }
        assert!(is_secret("sasl.password"));
        assert!(is_secret("ssl.key.pem"));
        assert!(is_secret("ssl.key.password"));
        assert!(is_secret("sasl.oauthbearer.client.secret"));
        assert!(is_secret("sasl.oauthbearer.config"));
        assert!(!is_secret("ssl.key.location"));
        assert!(!is_secret("sasl.username"));
    }

    #[test]
    fn applied_properties_override_the_typed_settings_and_idempotence_stays_typed() {
        let env = env(&[
            ("KAFKA_BROKERS", "b:9092"),
            ("KAFKA_ACKS", "1"),
            ("KAFKA_LINGER_MS", "50"),
            ("KAFKA_ENABLE_IDEMPOTENCE", "false"),
            ("KAFKA_FETCH_WAIT_MAX_MS", "100"),
        ])
        .expect("valid settings");
        let config = KafkaConfig::new("a:9092").with_env(&env);
        let producer = config.producer_config();
        assert_eq!(config.brokers(), "b:9092");
        assert_eq!(producer.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(producer.get("acks"), Some("1"));
        assert_eq!(producer.get("linger.ms"), Some("50"));
        // Without idempotence, one request in flight keeps a key's messages in order.
        assert_eq!(producer.get("enable.idempotence"), None);
        assert_eq!(producer.get("max.in.flight.requests.per.connection"), Some("1"));
        let consumer = config.consumer_config("billing");
        assert_eq!(consumer.get("fetch.wait.max.ms"), Some("100"));
        assert_eq!(consumer.get("group.id"), Some("billing"));
        assert_eq!(consumer.get("enable.auto.offset.store"), Some("false"));
    }

    #[test]
    fn from_env_builds_from_the_process_environment_alone() {
        // The test process's environment may or may not name brokers: either way the answer
        // agrees with reading it directly.
        match (KafkaConfig::from_env(), KafkaEnv::read()) {
            (Ok(config), Ok(env)) => assert_eq!(config.brokers(), env.brokers()),
            (Err(from_config), Err(from_env)) => assert_eq!(from_config, from_env),
            (config, env) => panic!("disagree: {config:?} / {env:?}"),
        }
    }
}
