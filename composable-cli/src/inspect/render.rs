//! Reading what the commands show, and the text they print.

use std::fmt::Write as _;

use chrono::{DateTime, SecondsFormat, Utc};
use composable::projection::{Lag, RebuildProgress};
use composable::{EventStore, Position, RecordedEvent, StreamId, Version};
use futures::TryStreamExt;
use uuid::Uuid;

use super::InspectError;

/// Which part of a stream `replay` shows.
#[derive(Debug, Default)]
pub(super) struct Range {
    pub(super) from: Option<u64>,
    pub(super) to: Option<u64>,
    pub(super) at: Option<DateTime<Utc>>,
}

impl Range {
    /// Whether the state is still rebuilt through `event`.
    pub(super) fn reaches(&self, event: &RecordedEvent) -> bool {
        self.to.is_none_or(|to| event.stream_version.get() <= to)
            && self.at.is_none_or(|at| event.recorded_at <= at)
    }

    /// Whether `event` is printed.
    pub(super) fn shows(&self, event: &RecordedEvent) -> bool {
        self.from.is_none_or(|from| event.stream_version.get() >= from)
    }

    /// The limits, as said after "at version N".
    pub(super) fn describe(&self) -> String {
        let mut limits = Vec::new();
        if let Some(to) = self.to {
            limits.push(format!("up to version {to}"));
        }
        if let Some(at) = self.at {
            limits.push(format!("as recorded by {}", time(at)));
        }
        if limits.is_empty() { String::new() } else { format!(" ({})", limits.join(", ")) }
    }
}

/// Which events `events` shows.
#[derive(Debug, Default)]
pub(super) struct Filter {
    pub(super) category: Option<String>,
    pub(super) stream: Option<String>,
    pub(super) name: Option<String>,
    pub(super) correlation: Option<Uuid>,
    pub(super) since: Option<DateTime<Utc>>,
    pub(super) until: Option<DateTime<Utc>>,
}

impl Filter {
    fn admits(&self, event: &RecordedEvent) -> bool {
        self.category.as_deref().is_none_or(|category| event.stream_id.category() == category)
            && self.stream.as_deref().is_none_or(|stream| event.stream_id.as_str() == stream)
            && self.name.as_deref().is_none_or(|name| event.name == name)
            && self.correlation.is_none_or(|id| event.metadata.correlation_id == id)
            && self.since.is_none_or(|since| event.recorded_at >= since)
            && self.until.is_none_or(|until| event.recorded_at < until)
    }
}

/// The whole of `stream`.
pub(super) async fn read_stream<S: EventStore>(
    store: &S,
    stream: &StreamId,
) -> Result<Vec<RecordedEvent>, InspectError> {
    Ok(store.read_stream(stream, Version::ZERO).try_collect().await?)
}

/// Pages of the log read by `events`.
const PAGE: usize = 1_000;

/// Up to `limit` events `filter` admits, in log order. A stream filter reads that stream only;
/// otherwise the log is read from the start, a page at a time, until `limit` events matched.
pub(super) async fn search<S: EventStore>(
    store: &S,
    filter: &Filter,
    limit: usize,
) -> Result<Vec<RecordedEvent>, InspectError> {
    if let Some(stream) = &filter.stream {
        let id = StreamId::parse(stream.as_str())
            .map_err(|source| InspectError::Stream { text: stream.clone(), source })?;
        let events = read_stream(store, &id).await?;
        return Ok(events.into_iter().filter(|event| filter.admits(event)).take(limit).collect());
    }
    let mut found = Vec::new();
    let mut after = Position::START;
    while found.len() < limit {
        let page = store.read_all(after, PAGE).await?;
        let Some(last) = page.last() else { break };
        after = last.position;
        let full = page.len() == PAGE;
        found.extend(page.into_iter().filter(|event| filter.admits(event)));
        if !full {
            break;
        }
    }
    found.truncate(limit);
    Ok(found)
}

/// `events`' output: a table, each event's decoded form under it, or JSON lines.
pub(super) fn events(
    events: &[RecordedEvent],
    describe: impl Fn(&RecordedEvent) -> Option<Result<String, String>>,
    json: bool,
) -> Result<String, InspectError> {
    let mut out = String::new();
    if json {
        for event in events {
            let (decoded, error) = match describe(event) {
                Some(Ok(decoded)) => (Some(decoded), None),
                Some(Err(error)) => (None, Some(error)),
                None => (None, None),
            };
            let line = serde_json::json!({
                "position": event.position.to_string(),
                "stream": event.stream_id.as_str(),
                "stream_version": event.stream_version.get(),
                "event_id": event.event_id,
                "name": event.name,
                "version": event.version,
                "correlation_id": event.metadata.correlation_id,
                "causation_id": event.metadata.causation_id,
                "occurred_at": time(event.metadata.occurred_at),
                "recorded_at": time(event.recorded_at),
                "event": decoded,
                "decode_error": error,
            });
            let _ = writeln!(out, "{line}");
        }
        return Ok(out);
    }
    if events.is_empty() {
        out.push_str("no events match\n");
        return Ok(out);
    }
    let rows: Vec<[String; 5]> = events
        .iter()
        .map(|event| {
            [
                event.position.to_string(),
                format!("{}@{}", event.stream_id, event.stream_version),
                format!("{} v{}", event.name, event.version),
                time(event.recorded_at),
                event.metadata.correlation_id.to_string(),
            ]
        })
        .collect();
    let header = ["position", "stream@version", "event", "recorded at", "correlation"];
    // Each event's decoded form goes on a line of its own under its row.
    let below = |index: usize| match describe(&events[index]) {
        Some(Ok(decoded)) => Some(format!("    {decoded}")),
        Some(Err(error)) => Some(format!("    does not decode: {error}")),
        None => None,
    };
    out.push_str(&table(&header, &rows, below));
    Ok(out)
}

/// `#3 account.deposited v1, recorded 2026-12-07T10:00:00.000000Z, position 42.0`
pub(super) fn event_heading(out: &mut String, event: &RecordedEvent) {
    let _ = writeln!(
        out,
        "#{} {} v{}, recorded {}, position {}",
        event.stream_version,
        event.name,
        event.version,
        time(event.recorded_at),
        event.position
    );
}

/// The lines of the state's pretty `Debug` that an event changed, `-` before and `+` after.
pub(super) fn changes(out: &mut String, before: &str, after: &str) {
    let diff = similar::TextDiff::from_lines(before, after);
    let mut changed = false;
    for change in diff.iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => continue,
        };
        changed = true;
        let _ = writeln!(out, "    {sign} {}", change.value().trim_end());
    }
    if !changed {
        out.push_str("    (the state did not change)\n");
    }
}

/// A time as RFC 3339 with microseconds, in UTC.
pub(super) fn time(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One line of `projections status`.
#[derive(Debug)]
pub(super) struct ProjectionRow {
    pub(super) name: &'static str,
    pub(super) version: u32,
    pub(super) serving: Option<u32>,
    pub(super) position: Position,
    pub(super) lag: Lag,
    pub(super) dead_letters: usize,
}

/// `projections status`' table.
pub(super) fn projections(rows: &[ProjectionRow]) -> String {
    if rows.is_empty() {
        return "no projections are registered\n".to_owned();
    }
    let header =
        ["projection", "version", "serving", "position", "behind", "dead letters", "state"];
    let cells: Vec<[String; 7]> = rows
        .iter()
        .map(|row| {
            let state = if row.position == Position::START && row.lag.events > 0 {
                "not started".to_owned()
            } else if row.lag.events == 0 {
                "caught up".to_owned()
            } else {
                "behind".to_owned()
            };
            let state = match row.serving {
                Some(serving) if serving < row.version => {
                    format!("{state}, building beside version {serving}")
                }
                _ => state,
            };
            [
                row.name.to_owned(),
                row.version.to_string(),
                row.serving.map_or_else(|| "-".to_owned(), |serving| serving.to_string()),
                row.position.to_string(),
                format!("{} events, {:.1}s", row.lag.events, row.lag.behind.as_secs_f64()),
                row.dead_letters.to_string(),
                state,
            ]
        })
        .collect();
    table(&header, &cells, |_| None)
}

/// What `projections rebuild` reports once it caught up.
pub(super) fn rebuilt(name: &str, done: &RebuildProgress) -> String {
    format!(
        "rebuilt `{name}`: {} events in {:.1}s ({:.0} events/s)\n",
        done.done,
        done.elapsed.as_secs_f64(),
        done.rate()
    )
}

/// The progress bar of a rebuild (drawn on a terminal's stderr only).
pub(super) fn progress_style() -> indicatif::ProgressStyle {
    indicatif::ProgressStyle::with_template("{wide_bar} {pos}/{len} events, {per_sec}, {eta} left")
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
}

/// Columns padded to their widest cell; `below(i)` is a line printed under row `i`, if any.
fn table<const N: usize>(
    header: &[&str; N],
    rows: &[[String; N]],
    below: impl Fn(usize) -> Option<String>,
) -> String {
    let mut widths = header.map(str::len);
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: [&str; N]| {
        let mut text = String::new();
        for (cell, width) in cells.iter().zip(widths) {
            let _ = write!(text, "{cell:<width$}  ");
        }
        let _ = writeln!(out, "{}", text.trim_end());
    };
    line(&mut out, *header);
    for (index, row) in rows.iter().enumerate() {
        line(&mut out, std::array::from_fn(|column| row[column].as_str()));
        if let Some(text) = below(index) {
            let _ = writeln!(out, "{text}");
        }
    }
    out
}
