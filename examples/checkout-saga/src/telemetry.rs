//! Traces of the checkout's processes, exported to an OpenTelemetry collector with OTLP (HTTP,
//! JSON). Each process records its spans through `tracing-opentelemetry`; the trace context
//! that `composable` carries in events and bus messages (its `otel` feature) makes the spans of
//! one checkout, in every process it crosses, one trace.
//!
//! `checkout-service` turns it on when `OTEL_EXPORTER_OTLP_ENDPOINT` is set
//! (`http://127.0.0.1:4318`, say), naming itself `OTEL_SERVICE_NAME` (`checkout-service` by
//! default; [`crate::settings`] reads both), and flushes what is buffered when it stops.
//!
//! The versions go together: tracing-opentelemetry 0.34 is built on opentelemetry 0.33, and
//! opentelemetry_sdk and opentelemetry-otlp must be the same 0.33; bump them together.

use composable::BoxError;
use opentelemetry::trace::TracerProvider;
use opentelemetry_otlp::{Protocol, WithExportConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;

/// Where and as whom a process sends its traces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtlpConfig {
    /// The collector's OTLP/HTTP base address; spans go to `{endpoint}/v1/traces`.
    pub endpoint: String,
    /// The `service.name` of the spans.
    pub service: String,
}

/// The installed exporter: [`shutdown`](Self::shutdown) it when the process stops, so the spans
/// still buffered reach the collector.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports this process's spans as `config` says, through a `tracing` subscriber installed
    /// as the global default.
    ///
    /// # Errors
    /// When the exporter cannot be built (a malformed endpoint) or a global subscriber is
    /// installed already.
    pub fn install(config: &OtlpConfig) -> Result<Self, BoxError> {
        let endpoint = format!("{}/v1/traces", config.endpoint.trim_end_matches('/'));
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpJson)
            .with_endpoint(&endpoint)
            .build()
            .map_err(|error| format!("cannot export traces to {endpoint}: {error}"))?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_resource(Resource::builder().with_service_name(config.service.clone()).build())
            .build();
        let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("checkout"));
        tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
            .map_err(|error| format!("cannot install the trace exporter: {error}"))?;
        Ok(Self { provider })
    }

    /// Sends what is buffered and stops exporting.
    ///
    /// # Errors
    /// When the collector could not be reached with the last spans.
    pub fn shutdown(self) -> Result<(), BoxError> {
        self.provider.shutdown().map_err(|error| format!("flushing traces: {error}").into())
    }
}
