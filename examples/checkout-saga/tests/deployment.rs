//! The reference deployment (`deploy/`) against the code: the Grafana dashboard queries only
//! metrics `composable::metrics` exports, in the form `checkout-service` exports them; the
//! compose file, its Prometheus configuration and `run-local` run the same processes and name
//! only variables `checkout-service` reads; `docs/deployment.md` describes each variable. The
//! last test runs `checkout-service` with every role on PostgreSQL and Kafka, takes a few
//! checkouts through it, and finds in its `/metrics` every series the dashboard queries that a
//! checkout moves (`DATABASE_URL` and `KAFKA_BROKERS`, as `scripts/test` sets them).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use checkout_saga::settings::{self, Settings};
use checkout_saga::{Aggregates, DECLINED_CARD, OrderStatus, PlaceOrder, Restock};
use composable::SystemClock;
use composable::metrics as m;
use serde_json::Value;
use support::{Database, Process, free_address, scrape};

/// Every metric `composable::metrics` exports, and whether it is a histogram.
const EXPORTED: &[(&str, bool)] = &[
    (m::COMMANDS, false),
    (m::COMMAND_DURATION, true),
    (m::COMMAND_CONFLICTS, false),
    (m::COMMAND_RETRIES, false),
    (m::EVENTS_APPENDED, false),
    (m::EVENT_BYTES_APPENDED, false),
    (m::SNAPSHOTS, false),
    (m::EFFECT_DURATION, true),
    (m::CONSUMER_EVENTS, false),
    (m::CONSUMER_LAG, false),
    (m::CONSUMER_FAILURES, false),
    (m::BUS_DELIVERIES, false),
    (m::BUS_CONSUMER_LAG, false),
    (m::BUS_DEAD_LETTERS, false),
    (m::SAGA_INPUTS, false),
    (m::SAGA_INSTANCES, false),
    (m::SAGA_TIMERS_FIRED, false),
    (m::SAGA_TIMER_LATENESS, true),
    (m::PROJECTION_EVENTS, false),
    (m::PROJECTION_BATCH_DURATION, true),
    (m::PROJECTION_LAG, false),
    (m::PROJECTION_DEAD_LETTERS, false),
    (m::CIRCUIT_BREAKER_STATE, false),
    (m::CIRCUIT_BREAKER_TRANSITIONS, false),
    (m::CIRCUIT_BREAKER_REFUSED, false),
];

/// What the dashboard must show, whatever else it does.
const REQUIRED: &[&str] = &[
    m::COMMANDS,
    m::COMMAND_DURATION,
    m::COMMAND_CONFLICTS,
    m::COMMAND_RETRIES,
    m::EVENTS_APPENDED,
    m::CONSUMER_LAG,
    m::BUS_CONSUMER_LAG,
    m::BUS_DEAD_LETTERS,
    m::SAGA_INSTANCES,
    m::SAGA_TIMER_LATENESS,
    m::PROJECTION_LAG,
    m::CIRCUIT_BREAKER_STATE,
];

/// Metrics the dashboard queries that a run of happy and declined checkouts does not move, and
/// why their series are absent from such a run's `/metrics`.
const MOVED_ONLY_BY_TROUBLE: &[(&str, &str)] = &[
    (m::COMMAND_CONFLICTS, "two writers on one stream"),
    (m::COMMAND_RETRIES, "a conflict"),
    (m::CONSUMER_FAILURES, "a failing step of a log consumer"),
    (m::BUS_DEAD_LETTERS, "a delivery failing its last attempt"),
    (m::SAGA_TIMERS_FIRED, "a step's timeout"),
    (m::SAGA_TIMER_LATENESS, "a step's timeout"),
    (m::PROJECTION_LAG, "a projection, which the checkout's processes do not host"),
    (m::PROJECTION_DEAD_LETTERS, "a projection, which the checkout's processes do not host"),
    (m::CIRCUIT_BREAKER_REFUSED, "an open breaker"),
];

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy").join(file)
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|error| panic!("read {}: {error}", path.display()))
}

fn workspace_file(path: &str) -> String {
    read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(path))
}

/// Every panel of `dashboard`, rows' nested panels included.
fn panels(dashboard: &Value) -> Vec<&Value> {
    let mut found = Vec::new();
    let mut pending: Vec<&Value> =
        dashboard["panels"].as_array().expect("a panels array").iter().collect();
    while let Some(panel) = pending.pop() {
        if let Some(nested) = panel["panels"].as_array() {
            pending.extend(nested);
        }
        found.push(panel);
    }
    found
}

/// The names of the series a PromQL expression selects: every identifier outside label
/// matchers, strings and range brackets that is not a function, an aggregation, a keyword, or a
/// label in a `by (...)`/`without (...)`/`on (...)`/`ignoring (...)` list.
fn series_names(expr: &str) -> Vec<String> {
    const KEYWORDS: &[&str] = &[
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "inf",
        "nan",
    ];
    // Aggregation operators, which may take their `by (...)` before their parentheses.
    const AGGREGATIONS: &[&str] = &[
        "sum",
        "min",
        "max",
        "avg",
        "group",
        "stddev",
        "stdvar",
        "count",
        "count_values",
        "bottomk",
        "topk",
        "quantile",
        "limitk",
        "limit_ratio",
    ];
    let chars: Vec<char> = expr.chars().collect();
    let mut names = Vec::new();
    let (mut i, mut in_labels, mut in_range) = (0, 0usize, false);
    let mut label_list = false;
    let mut previous_word = String::new();
    while i < chars.len() {
        let c = chars[i];
        match c {
            '"' | '\'' => {
                i += 1;
                while i < chars.len() && chars[i] != c {
                    i += usize::from(chars[i] == '\\') + 1;
                }
                i += 1;
                continue;
            }
            '{' => in_labels += 1,
            '}' => in_labels = in_labels.saturating_sub(1),
            '[' => in_range = true,
            ']' => in_range = false,
            '(' => label_list = KEYWORDS[..6].contains(&previous_word.as_str()),
            ')' => label_list = false,
            _ => {}
        }
        if c.is_ascii_digit() {
            // A number or a duration (`0.99`, `5m`, `1e3`).
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '.') {
                i += 1;
            }
            previous_word.clear();
            continue;
        }
        if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len() && (chars[i].is_ascii_alphanumeric() || "_:".contains(chars[i])) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let mut next = i;
            while next < chars.len() && chars[next].is_whitespace() {
                next += 1;
            }
            let function = chars.get(next) == Some(&'(');
            let skipped = in_labels > 0
                || in_range
                || label_list
                || KEYWORDS.contains(&word.as_str())
                || AGGREGATIONS.contains(&word.as_str());
            if !function && !skipped {
                names.push(word.clone());
            }
            previous_word = word;
            continue;
        }
        if !c.is_whitespace() {
            previous_word.clear();
        }
        i += 1;
    }
    names
}

/// The metric a series belongs to, and whether it was named as a histogram's part.
fn metric_of(series: &str) -> (&str, bool) {
    for suffix in ["_bucket", "_sum", "_count"] {
        if let Some(metric) = series.strip_suffix(suffix)
            && EXPORTED.iter().any(|(name, histogram)| *name == metric && *histogram)
        {
            return (metric, true);
        }
    }
    (series, false)
}

/// Every expression of the dashboard, with its panel's title.
fn dashboard_queries() -> Vec<(String, String)> {
    let dashboard: Value = serde_json::from_str(&read(&deploy("grafana/checkout.json")))
        .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    let mut ids = BTreeSet::new();
    for panel in panels(&dashboard) {
        let title = panel["title"].as_str().expect("a panel title").to_owned();
        assert!(ids.insert(panel["id"].as_u64().expect("a panel id")), "two panels {title}");
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a target's expr");
            assert_eq!(
                target["datasource"]["uid"], "prometheus",
                "{title}: the provisioned data source"
            );
            queries.push((title.clone(), expr.to_owned()));
        }
    }
    assert!(!queries.is_empty(), "the dashboard queries nothing");
    queries
}

/// The metrics the dashboard queries, and whether each is queried as a histogram.
fn dashboard_metrics() -> BTreeMap<String, bool> {
    let mut metrics = BTreeMap::new();
    for (title, expr) in dashboard_queries() {
        let names = series_names(&expr);
        assert!(!names.is_empty(), "{title}: `{expr}` selects no series");
        for series in names {
            let (metric, as_histogram) = metric_of(&series);
            let exported = EXPORTED.iter().find(|(name, _)| *name == metric);
            let Some((_, histogram)) = exported else {
                panic!("{title}: `{series}` is not a metric composable::metrics exports");
            };
            assert_eq!(
                as_histogram, *histogram,
                "{title}: `{series}`: histograms are queried by their _bucket/_sum/_count \
                 series, other metrics by their name"
            );
            metrics.insert(metric.to_owned(), as_histogram);
        }
    }
    metrics
}

#[test]
fn the_query_reader_finds_series_and_nothing_else() {
    assert_eq!(
        series_names(
            "histogram_quantile(0.99, sum by (le, aggregate) (rate(x_bucket{a=\"b c\"}[5m])))"
        ),
        ["x_bucket"]
    );
    assert_eq!(
        series_names("sum by (saga) (a{status=\"started\"}) - (sum by (saga) (b) or c * 0)"),
        ["a", "b", "c"]
    );
    assert_eq!(series_names("max without (instance) (rate(y [1m] offset 5m))"), ["y"]);
}

#[test]
fn the_dashboard_queries_only_metrics_composable_exports_as_checkout_service_exports_them() {
    let metrics = dashboard_metrics();
    for required in REQUIRED {
        assert!(metrics.contains_key(*required), "the dashboard does not show {required}");
    }
    // checkout-service exports histograms with buckets (not the exporter's default summaries):
    // the quantiles come from _bucket series.
    let dashboard = read(&deploy("grafana/checkout.json"));
    assert!(!dashboard.contains("quantile=\\\""), "a summary's quantile label is queried");
    let service = read(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src/bin/checkout-service.rs"));
    assert!(service.contains(".set_buckets(LATENCY_BUCKETS)"), "checkout-service sets buckets");
    // Every metric queried is documented.
    let observability = workspace_file("docs/observability.md");
    for metric in metrics.keys() {
        assert!(observability.contains(&format!("| `{metric}` |")), "{metric} is not documented");
    }
}

/// Name and value pairs: variables, or a service and its roles.
type Pairs = Vec<(String, String)>;

/// The `environment:` of the compose file's `x-checkout-service` block, which every checkout
/// process uses, and each checkout process's service name and roles.
fn compose_checkout() -> (Pairs, Pairs) {
    let compose = read(&deploy("docker-compose.yml"));
    let mut environment = Vec::new();
    let mut processes = Vec::new();
    let (mut block, mut in_environment, mut service) = ("", false, None::<String>);
    let mut uses_anchor = false;
    for line in compose.lines() {
        let trimmed = line.trim();
        if trimmed.is_empty() || trimmed.starts_with('#') {
            continue;
        }
        let indent = line.len() - line.trim_start().len();
        if indent == 0 {
            block = if trimmed.starts_with("x-checkout-service:") { "anchor" } else { trimmed };
            continue;
        }
        if block == "anchor" {
            if indent == 2 {
                in_environment = trimmed == "environment:";
            } else if in_environment && indent == 4 {
                let (key, value) = trimmed.split_once(':').expect("KEY: value");
                environment.push((key.to_owned(), value.trim().trim_matches('"').to_owned()));
            }
        } else if block == "services:" {
            if indent == 2 {
                service = Some(trimmed.trim_end_matches(':').to_owned());
                uses_anchor = false;
            } else if indent == 4 && trimmed == "<<: *checkout-service" {
                uses_anchor = true;
            } else if indent == 4 && uses_anchor && trimmed.starts_with("command: [\"--role\"") {
                let role = trimmed
                    .trim_start_matches("command: [\"--role\", \"")
                    .trim_end_matches("\"]")
                    .to_owned();
                processes.push((service.clone().expect("a service"), role));
            } else if indent == 4 && trimmed.starts_with("environment:") && uses_anchor {
                panic!("{service:?} overrides the checkout processes' environment");
            }
        }
    }
    (environment, processes)
}

#[test]
fn compose_runs_the_checkout_by_role_with_only_variables_checkout_service_reads() {
    let (environment, processes) = compose_checkout();
    assert!(!environment.is_empty(), "no environment in x-checkout-service");
    for (name, _) in &environment {
        assert!(Settings::reads(name), "checkout-service does not read {name}");
    }
    let settings = Settings::from_vars(environment.clone())
        .unwrap_or_else(|error| panic!("checkout-service refuses the compose settings: {error}"));
    let metrics_port = settings.metrics_addr.expect("metrics served").port();
    assert_eq!(
        processes,
        [
            ("relay", "relay"),
            ("commands-1", "commands"),
            ("commands-2", "commands"),
            ("checkout-1", "checkout"),
            ("checkout-2", "checkout"),
        ]
        .map(|(name, role)| (name.to_owned(), role.to_owned()))
    );
    // Prometheus scrapes every one of them, labelled with its role.
    let prometheus = read(&deploy("prometheus.yml"));
    for (name, role) in &processes {
        let target = format!("\"{name}:{metrics_port}\"");
        let line = prometheus
            .lines()
            .position(|line| line.contains(&target))
            .unwrap_or_else(|| panic!("prometheus.yml does not scrape {target}"));
        let labels: String = prometheus.lines().skip(line).take(3).collect();
        assert!(labels.contains(&format!("role: {role}")), "{name} is not labelled {role}");
    }
    // The dashboard reads the data source the compose file provisions.
    let datasource = read(&deploy("grafana/provisioning/datasources/prometheus.yml"));
    assert!(
        datasource.contains("uid: prometheus") && datasource.contains("http://prometheus:9090")
    );
}

#[test]
fn run_local_runs_the_same_processes_with_only_variables_checkout_service_reads() {
    let script = read(&deploy("run-local"));
    let mut named = BTreeSet::new();
    for (i, _) in script.match_indices(|c: char| c.is_ascii_uppercase()) {
        let word: String = script[i..]
            .chars()
            .take_while(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let starts_word = i == 0
            || !script[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_' || c == '$');
        if starts_word && (word.starts_with("CHECKOUT_") || word.starts_with("KAFKA_")) {
            named.insert(word);
        }
    }
    assert!(named.contains(settings::METRICS_ADDR), "run-local serves no metrics");
    for name in &named {
        assert!(Settings::reads(name), "run-local names {name}, which checkout-service ignores");
    }
    let (environment, processes) = compose_checkout();
    // The same variables as the compose file, but for the addresses (loopback here).
    for (name, _) in &environment {
        assert!(
            script.contains(name.as_str()) || ["DATABASE_URL", "KAFKA_BROKERS"].contains(&&**name),
            "run-local does not set {name}, which the compose file does"
        );
    }
    let names: Vec<&str> = processes.iter().map(|(name, _)| name.as_str()).collect();
    let roles: Vec<&str> = processes.iter().map(|(_, role)| role.as_str()).collect();
    assert!(script.contains(&format!("names=({})", names.join(" "))), "other processes");
    assert!(script.contains(&format!("roles=({})", roles.join(" "))), "other roles");
}

#[test]
fn the_deployment_guide_describes_every_variable() {
    let guide = workspace_file("docs/deployment.md");
    for name in settings::VARIABLES {
        assert!(
            guide.contains(&format!("`{name}`")),
            "docs/deployment.md does not describe {name}"
        );
    }
    for file in ["docker-compose.yml", "run-local", "grafana/checkout.json", "prometheus.yml"] {
        assert!(guide.contains(file), "docs/deployment.md does not mention {file}");
    }
}

/// The series of `text` (Prometheus' exposition format), by metric.
fn exported_series(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|line| line.starts_with("composable_"))
        .filter_map(|line| line.split(['{', ' ']).next())
        .map(|series| metric_of(series).0.to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn checkout_service_exports_every_series_the_dashboard_queries() {
    let database = Database::create("checkout_deployment").await;
    let prefix = database.prefix.clone();
    let metrics = free_address();
    let process =
        Process::serving_metrics(&database.url, &prefix, "relay,commands,checkout", Some(metrics));

    // Two checkouts, one declined: commands, the relay, the bus and the saga all move.
    let runners = Aggregates::new(&database.store, &SystemClock);
    runners
        .inventory
        .execute("tea", Restock { quantity: 10, manual: false })
        .await
        .expect("restock");
    for (id, card) in [("o1", "tok_visa"), ("o2", DECLINED_CARD)] {
        let place = PlaceOrder {
            order_id: id.into(),
            sku: "tea".into(),
            quantity: 1,
            total: 500,
            card: card.into(),
        };
        runners.orders.execute(id, place).await.expect("place an order");
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    for id in ["o1", "o2"] {
        while runners.orders.load(id).await.expect("load").state.status == OrderStatus::Placed {
            assert!(Instant::now() < deadline, "order {id} unfinished after 60 s");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    let queried = dashboard_metrics();
    let mut missing: Vec<String> = queried.keys().cloned().collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut scraped = String::new();
    while !missing.is_empty() && Instant::now() < deadline {
        scraped = scrape(metrics);
        let series = exported_series(&scraped);
        missing.retain(|metric| {
            !series.contains(metric)
                && !MOVED_ONLY_BY_TROUBLE.iter().any(|(trouble, _)| trouble == metric)
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(missing.is_empty(), "the dashboard queries {missing:?}, not exported:\n{scraped}");
    for (metric, histogram) in queried {
        if histogram && exported_series(&scraped).contains(&metric) {
            let line = format!("# TYPE {metric} histogram");
            assert!(scraped.contains(&line), "no `{line}`:\n{scraped}");
            assert!(scraped.contains(&format!("{metric}_bucket{{")), "{metric} has no buckets");
        }
    }

    process.terminate();
    database.drop().await;
}
