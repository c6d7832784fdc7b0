//! Trace context that crosses processes: one flow — an order placed, the saga it starts, the
//! commands the saga sends over the bus, the events they append — is one distributed trace.
//!
//! A [`TraceContext`] is the W3C Trace Context `traceparent` of the span that caused a message:
//! the trace's id, that span's id, and whether the trace is sampled. It travels with what
//! crosses a process boundary:
//!
//! * an appended event keeps it in its [`EventMetadata`](crate::EventMetadata) (the `command`
//!   span that decided it, or the `saga.step` that recorded it), so whoever reads the log later
//!   — a saga's input, the relay — knows where the event came from;
//! * the relay copies it into the bus message's `traceparent` header
//!   ([`headers::TRACEPARENT`](crate::bus::headers::TRACEPARENT)), and a command sent over the
//!   bus carries the sending span's;
//! * the span that handles it — `saga.step` for an event, `bus.delivery` for a message — takes
//!   it as its parent, so the spans of both processes belong to one trace.
//!
//! The context is read from and given to spans through OpenTelemetry, with the `otel` feature
//! and a `tracing-opentelemetry` layer installed (see `docs/observability.md`). Without the
//! feature no context is captured, nothing is written, and handlers' spans are roots of their
//! own, as before; a context that arrives from a process that has it is still carried on.
//!
//! ```
//! use composable::trace::TraceContext;
//!
//! let parent: TraceContext = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01".parse()?;
//! assert!(parent.is_sampled());
//! assert_eq!(parent.to_string(), "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01");
//! // A malformed value is an error that says what is wrong, never a panic.
//! assert!("00-0000-zz-01".parse::<TraceContext>().is_err());
//! # Ok::<(), composable::trace::TraceContextError>(())
//! ```

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The W3C `traceparent` of a span: trace id, span id and the sampled flag.
///
/// Only version `00` is written; a later version is read by its first four fields, as the
/// specification asks.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct TraceContext {
    trace_id: [u8; 16],
    span_id: [u8; 8],
    flags: u8,
}

/// A `traceparent` value that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{value}` is not a W3C traceparent: {reason}")]
pub struct TraceContextError {
    /// The value, cut to 64 characters.
    pub value: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl TraceContext {
    /// The name of the bus header and of the metadata field that carry it.
    pub const HEADER: &'static str = "traceparent";

    const SAMPLED: u8 = 0x01;

    /// A context of the trace `trace_id` whose current span is `span_id`; `None` when either
    /// id is all zeros, which the specification reserves for "no trace".
    pub fn new(trace_id: [u8; 16], span_id: [u8; 8], sampled: bool) -> Option<Self> {
        if trace_id == [0; 16] || span_id == [0; 8] {
            return None;
        }
        Some(Self { trace_id, span_id, flags: if sampled { Self::SAMPLED } else { 0 } })
    }

    /// The trace's id.
    pub fn trace_id(&self) -> [u8; 16] {
        self.trace_id
    }

    /// The id of the span this context names as the parent.
    pub fn span_id(&self) -> [u8; 8] {
        self.span_id
    }

    /// Whether the trace is sampled (recorded) upstream.
    pub fn is_sampled(&self) -> bool {
        self.flags & Self::SAMPLED != 0
    }

    /// The context of the current span, when an OpenTelemetry layer records it (the `otel`
    /// feature); `None` otherwise.
    pub fn current() -> Option<Self> {
        #[cfg(feature = "otel")]
        {
            otel::current()
        }
        #[cfg(not(feature = "otel"))]
        {
            None
        }
    }

    /// Makes `span` a child of `parent`, the span that caused the work it covers in another
    /// process or at another time. A span created inside a span of the same trace keeps that
    /// parent (a saga's step under the bus delivery that carried its event, say), since it is
    /// the closer one. Call it before the span is first entered; without the `otel` feature, or
    /// without a parent, it does nothing.
    pub fn follow(parent: Option<Self>, span: &tracing::Span) {
        #[cfg(feature = "otel")]
        if let Some(parent) = parent
            && Self::current().is_none_or(|current| current.trace_id != parent.trace_id)
        {
            otel::set_parent(span, parent);
        }
        #[cfg(not(feature = "otel"))]
        let _ = (parent, span);
    }

    /// Reads a `traceparent` value; what cannot be read is `None`, and logged, since a broken
    /// link must not cost the message it came with (the span then starts a trace of its own).
    /// How stores and buses read the value they carry.
    pub fn lenient(value: &[u8]) -> Option<Self> {
        let parsed = std::str::from_utf8(value)
            .map_err(|_| TraceContextError::new(&String::from_utf8_lossy(value), "not UTF-8"))
            .and_then(str::parse);
        match parsed {
            Ok(context) => Some(context),
            Err(error) => {
                tracing::debug!(%error, "ignoring a trace context");
                None
            }
        }
    }
}

impl TraceContextError {
    fn new(value: &str, reason: &'static str) -> Self {
        Self { value: value.chars().take(64).collect(), reason }
    }
}

fn hex<const N: usize>(text: &str) -> Option<[u8; N]> {
    if text.len() != N * 2 {
        return None;
    }
    let mut bytes = [0; N];
    for (byte, pair) in bytes.iter_mut().zip(text.as_bytes().chunks_exact(2)) {
        let digit = |c: u8| match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        };
        *byte = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(bytes)
}

impl FromStr for TraceContext {
    type Err = TraceContextError;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        let error = |reason| TraceContextError::new(value, reason);
        let mut fields = value.trim().split('-');
        let (Some(version), Some(trace_id), Some(span_id), Some(flags)) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(error("it needs four fields separated by `-`"));
        };
        let version =
            hex::<1>(version).ok_or_else(|| error("the version is not two hex digits"))?;
        if version == [0xff] {
            return Err(error("version ff is invalid"));
        }
        if version == [0] && fields.next().is_some() {
            return Err(error("version 00 has exactly four fields"));
        }
        let trace_id = hex::<16>(trace_id)
            .ok_or_else(|| error("the trace id is not 32 lower-case hex digits"))?;
        let span_id = hex::<8>(span_id)
            .ok_or_else(|| error("the span id is not 16 lower-case hex digits"))?;
        let [flags] = hex::<1>(flags).ok_or_else(|| error("the flags are not two hex digits"))?;
        let mut context = Self::new(trace_id, span_id, false)
            .ok_or_else(|| error("an all-zero trace or span id means no trace"))?;
        context.flags = flags;
        Ok(context)
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("00-")?;
        for byte in self.trace_id {
            write!(f, "{byte:02x}")?;
        }
        f.write_str("-")?;
        for byte in self.span_id {
            write!(f, "{byte:02x}")?;
        }
        write!(f, "-{:02x}", self.flags)
    }
}

impl fmt::Debug for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceContext({self})")
    }
}

impl Serialize for TraceContext {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TraceContext {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Deserializes an optional context leniently: a value that is not a `traceparent` reads as
/// none, so a damaged link never makes the event around it unreadable.
pub(crate) fn deserialize_lenient<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<TraceContext>, D::Error> {
    let text = <Option<std::borrow::Cow<'de, str>>>::deserialize(deserializer)?;
    Ok(text.and_then(|text| TraceContext::lenient(text.as_bytes())))
}

#[cfg(feature = "otel")]
mod otel {
    use opentelemetry::trace::{
        SpanContext, SpanId, TraceContextExt, TraceFlags, TraceId, TraceState,
    };
    use tracing_opentelemetry::OpenTelemetrySpanExt;

    use super::TraceContext;

    pub(super) fn current() -> Option<TraceContext> {
        let context = tracing::Span::current().context();
        let span = context.span();
        let span = span.span_context();
        if !span.is_valid() {
            return None;
        }
        TraceContext::new(
            span.trace_id().to_bytes(),
            span.span_id().to_bytes(),
            span.trace_flags().is_sampled(),
        )
    }

    pub(super) fn set_parent(span: &tracing::Span, parent: TraceContext) {
        let remote = SpanContext::new(
            TraceId::from_bytes(parent.trace_id),
            SpanId::from_bytes(parent.span_id),
            TraceFlags::new(parent.flags),
            true,
            TraceState::default(),
        );
        let context = opentelemetry::Context::new().with_remote_span_context(remote);
        // Without an OpenTelemetry layer there is nothing to link, and a span already entered
        // keeps the parent it started with: both leave the span as it is.
        if let Err(error) = span.set_parent(context) {
            tracing::trace!(?error, "the span keeps its parent");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn a_traceparent_reads_and_writes_back_the_same() {
        let context: TraceContext = SAMPLE.parse().expect("a valid traceparent");
        assert_eq!(context.trace_id()[0], 0x4b);
        assert_eq!(context.span_id()[7], 0xb7);
        assert!(context.is_sampled());
        assert_eq!(context.to_string(), SAMPLE);
        let json = serde_json::to_string(&context).expect("serializes");
        assert_eq!(json, format!("\"{SAMPLE}\""));
        assert_eq!(serde_json::from_str::<TraceContext>(&json).expect("deserializes"), context);
    }

    #[test]
    fn malformed_values_are_refused_with_the_reason() {
        for (value, reason) in [
            ("", "it needs four fields separated by `-`"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                "it needs four fields separated by `-`",
            ),
            ("ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "version ff is invalid"),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-xx",
                "version 00 has exactly four fields",
            ),
            (
                "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                "the trace id is not 32 lower-case hex digits",
            ),
            (
                "00-4bf92f3577b34da6-00f067aa0ba902b7-01",
                "the trace id is not 32 lower-case hex digits",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba9é2b7-01",
                "the span id is not 16 lower-case hex digits",
            ),
            (
                "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                "an all-zero trace or span id means no trace",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                "an all-zero trace or span id means no trace",
            ),
            (
                "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",
                "the flags are not two hex digits",
            ),
        ] {
            let error = value.parse::<TraceContext>().expect_err(value);
            assert_eq!(error.reason, reason, "{value}");
        }
        let long = "x".repeat(10_000);
        assert_eq!(long.parse::<TraceContext>().expect_err("long").value.len(), 64);
    }

    #[test]
    fn a_later_version_is_read_by_its_first_four_fields() {
        let context: TraceContext =
            "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-more".parse().expect("v1");
        assert!(!context.is_sampled());
        assert!(context.to_string().starts_with("00-"));
    }

    #[test]
    fn a_damaged_stored_context_reads_as_none() {
        #[derive(Deserialize)]
        struct Holder {
            #[serde(default, deserialize_with = "deserialize_lenient")]
            trace: Option<TraceContext>,
        }
        let holder: Holder = serde_json::from_str(r#"{"trace": "garbage"}"#).expect("reads");
        assert_eq!(holder.trace, None);
        let holder: Holder =
            serde_json::from_str(&format!(r#"{{"trace": "{SAMPLE}"}}"#)).expect("reads");
        assert!(holder.trace.is_some());
        assert_eq!(TraceContext::lenient(&[0xff, 0xfe]), None);
    }
}
