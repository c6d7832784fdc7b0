//! Logs and traces of the checkout's processes. Logs go to standard error, filtered by
//! `RUST_LOG` (`info` by default). Traces are exported to an OpenTelemetry collector with OTLP
//! (HTTP, JSON): each process records its spans through `tracing-opentelemetry`; the trace
//! context that `composable` carries in events and bus messages (its `otel` feature) makes the
//! spans of one checkout, in every process it crosses, one trace.
//!
//! `checkout-service` exports traces when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (`http://127.0.0.1:4318`, say), naming itself `OTEL_SERVICE_NAME` (`checkout-service` by
//! default; [`crate::settings`] reads both), and flushes what is buffered when it stops.
//!
//! The versions go together: tracing-opentelemetry 0.34 is built on opentelemetry 0.33, and
//! opentelemetry_sdk and opentelemetry-otlp must be the same 0.33; bump them together.

use std::io::IsTerminal;

use composable::BoxError;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

/// Where and as whom a process sends its traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base address; spans go to `{endpoint}/v1/traces`.
    pub endpoint: String,
    /// The `service.name` of the spans.
    pub service: String,
}

/// The installed log and trace subscriber: [`shutdown`](Self::shutdown) it when the process
/// stops, so the spans still buffered reach the collector.
#[derive(Debug)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Logs this process's events to standard error as `log_filter` (an `EnvFilter`) selects
    /// them and, with `otlp`, exports its spans as it says, through a `tracing` subscriber
    /// installed as the global default. The filter applies to the logs only: every span goes to
    /// the collector.
    ///
    /// # Errors
    /// When the filter does not parse, the exporter cannot be built (a malformed endpoint), or
    /// a global subscriber is installed already.
    pub fn install(log_filter: &str, otlp: Option<&OtlpConfig>) -> Result<Self, BoxError> {
        let filter = EnvFilter::builder()
            .parse(log_filter)
            .map_err(|error| format!("cannot filter the logs by `{log_filter}`: {error}"))?;
        // Colours only on a terminal: a log file or a collector gets plain text.
        let logs = tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_filter(filter);
        let provider = otlp.map(provider).transpose()?;
        let traces = provider.as_ref().map(|provider| {
            tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout"))
        });
        tracing::subscriber::set_global_default(
            tracing_subscriber::registry().with(logs).with(traces),
        )
        .map_err(|error| format!("cannot install the log and trace subscriber: {error}"))?;
        Ok(Self { provider })
    }

    /// Sends the spans still buffered and stops exporting.
    ///
    /// # Errors
    /// When the collector could not be reached with the last spans.
    pub fn shutdown(self) -> Result<(), BoxError> {
        match self.provider {
            Some(provider) => {
                provider.shutdown().map_err(|error| format!("flushing traces: {error}").into())
            }
            None => Ok(()),
        }
    }
}

/// The exporter of spans to the collector `config` names, in batches.
fn provider(config: &OtlpConfig) -> Result<SdkTracerProvider, BoxError> {
    let endpoint = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_endpoint(&endpoint)
        .build()
        .map_err(|error| format!("cannot export traces to {endpoint}: {error}"))?;
    Ok(SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(config.service.clone()).build())
        .build())
}
