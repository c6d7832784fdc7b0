//! A saga's definition as a mermaid flowchart, and one instance's path drawn over it.
//!
//! Everything comes from what `#[saga]` generated ([`Saga::STEPS`]): each step and the event
//! whose arrival it is, the aggregates its handlers dispatch to, its timeout and `on_timeout`
//! handler, and the compensations that run, latest step first, when the saga fails.

use std::fmt::{self, Write as _};

use super::progress::{Failure, SagaStatus, Summary};
use super::{Saga, Step};

/// A mermaid `flowchart` of a saga: `Diagram::of::<Checkout>().to_string()`, pasted into a
/// ```` ```mermaid ```` block, draws it. [`Diagram::with_instance`] colours one instance's path:
/// the steps it completed, where it waits, and what it compensated.
///
/// Steps are drawn in declaration order, each on the arrival of its event. The runner does not
/// enforce that order: an instance takes whichever of its steps' events arrives (see the saga
/// guide on ordering), so the arrows show the path the saga was written for.
#[derive(Debug, Clone)]
pub struct Diagram {
    name: &'static str,
    steps: &'static [Step],
    instance: Option<Instance>,
}

#[derive(Debug, Clone)]
struct Instance {
    completed: Vec<&'static str>,
    status: SagaStatus,
    failure: Option<Failure>,
    /// The steps whose compensations ran.
    compensated: Vec<&'static Step>,
}

impl Diagram {
    /// The diagram of saga `G`'s definition.
    pub fn of<G: Saga>() -> Self {
        Self { name: G::NAME, steps: G::STEPS, instance: None }
    }

    /// The same diagram with `instance`'s path over it: completed steps, the step it waits
    /// after, and, when it failed, a bold arrow from the step that failed (with the reason) or
    /// timed out, and the compensations that ran.
    #[must_use]
    pub fn with_instance<G: Saga>(mut self, instance: &Summary<G>) -> Self {
        self.instance = Some(Instance {
            completed: instance.completed.clone(),
            status: instance.status,
            failure: instance.failure.clone(),
            compensated: instance.compensated().map(|(step, _)| step).collect(),
        });
        self
    }

    fn write(&self, out: &mut String) -> fmt::Result {
        writeln!(out, "flowchart TD")?;
        writeln!(out, "    %% saga {}", label(self.name))?;
        let steps = self.steps;
        for (index, step) in steps.iter().enumerate() {
            let mut text = step.name.to_owned();
            push_targets(&mut text, step.dispatches);
            writeln!(out, "    {}[\"{}\"]", step_id(step), label(&text))?;
            if step.start {
                writeln!(
                    out,
                    "    begin((\" \")) -->|\"{}\"| {}",
                    label(step.event),
                    step_id(step)
                )?;
            }
            if step.end {
                writeln!(out, "    {} --> completed([\"completed\"])", step_id(step))?;
                continue;
            }
            for next in following(steps, index) {
                writeln!(
                    out,
                    "    {} -->|\"{}\"| {}",
                    step_id(step),
                    label(next.event),
                    step_id(next)
                )?;
            }
        }

        let compensations: Vec<&Step> =
            steps.iter().rev().filter(|step| step.compensation.is_some()).collect();
        writeln!(
            out,
            "    failed{{{{\"failed: a command refused, a handler's error or a timeout\"}}}}"
        )?;
        for step in steps.iter().filter(|step| !step.end) {
            let Some(timeout) = step.timeout else { continue };
            let mut text = format!("no next event within {}", duration(timeout));
            if let Some(on_timeout) = &step.on_timeout {
                text.push_str("<br/>");
                text.push_str(on_timeout.name);
                push_targets(&mut text, on_timeout.dispatches);
            }
            writeln!(out, "    {} -.->|\"{}\"| failed", step_id(step), label(&text))?;
        }
        let mut previous = "failed".to_owned();
        for step in &compensations {
            let Some(compensation) = &step.compensation else { continue };
            let mut text = format!("{}<br/>undoes {}", compensation.name, step.name);
            push_targets(&mut text, compensation.dispatches);
            writeln!(out, "    {}[\"{}\"]", undo_id(step), label(&text))?;
            writeln!(out, "    {previous} -->|\"if {} ran\"| {}", step.name, undo_id(step))?;
            previous = undo_id(step);
        }
        writeln!(out, "    {previous} --> compensated([\"compensated\"])")?;

        if let Some(instance) = &self.instance {
            self.write_instance(instance, out)?;
        }
        Ok(())
    }

    fn write_instance(&self, instance: &Instance, out: &mut String) -> fmt::Result {
        writeln!(out, "    classDef done fill:#d7f0dd,stroke:#2e7d32")?;
        writeln!(out, "    classDef here fill:#fff1c2,stroke:#b8860b,stroke-width:3px")?;
        writeln!(out, "    classDef undone fill:#f9d6d5,stroke:#c62828")?;
        let completed: Vec<&Step> =
            self.steps.iter().filter(|step| instance.completed.contains(&step.name)).collect();
        let mut done: Vec<String> = completed.iter().map(|step| step_id(step)).collect();
        match instance.status {
            SagaStatus::Running => {
                // The step it waits after: the latest one whose event arrived.
                let latest = instance
                    .completed
                    .last()
                    .and_then(|name| self.steps.iter().find(|step| step.name == *name));
                if let Some(latest) = latest {
                    done.retain(|id| *id != step_id(latest));
                    writeln!(out, "    class {} here", step_id(latest))?;
                }
            }
            SagaStatus::Completed => done.push("completed".to_owned()),
            SagaStatus::Compensated => {
                if let Some(failure) = &instance.failure {
                    let why = match failure {
                        Failure::Failed { reason, .. } => reason.clone(),
                        Failure::TimedOut { .. } => "timed out".to_owned(),
                    };
                    let failed = self.steps.iter().find(|step| step.name == failure.step());
                    if let Some(failed) = failed {
                        writeln!(out, "    {} ==>|\"{}\"| failed", step_id(failed), label(&why))?;
                    }
                }
                let mut undone = vec!["failed".to_owned(), "compensated".to_owned()];
                undone.extend(instance.compensated.iter().rev().map(|step| undo_id(step)));
                writeln!(out, "    class {} undone", undone.join(","))?;
            }
        }
        if !done.is_empty() {
            writeln!(out, "    class {} done", done.join(","))?;
        }
        Ok(())
    }
}

impl fmt::Display for Diagram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write(&mut out)?;
        f.write_str(&out)
    }
}

/// The steps drawn after step `index`: every `end` step declared right after it (alternative
/// endings are declared together) and the first step after those that is not an end.
fn following(steps: &[Step], index: usize) -> impl Iterator<Item = &Step> {
    let rest = &steps[index + 1..];
    let ends = rest.iter().take_while(|step| step.end).count();
    rest.iter().take((ends + 1).min(rest.len()))
}

fn push_targets(text: &mut String, targets: &[&str]) {
    if !targets.is_empty() {
        text.push_str("<br/>→ ");
        text.push_str(&targets.join(", "));
    }
}

/// A node id no mermaid keyword can clash with (`end` is one), from a step's name.
fn step_id(step: &Step) -> String {
    format!("step_{}", identifier(step.name))
}

fn undo_id(step: &Step) -> String {
    format!("undo_{}", identifier(step.name))
}

fn identifier(name: &str) -> String {
    name.chars().map(|c| if c.is_ascii_alphanumeric() || c == '_' { c } else { '_' }).collect()
}

/// Text inside a quoted mermaid label: quotes, angle brackets and backticks (which would start
/// a markdown string) are entities; the `<br/>` this module writes is kept.
fn label(text: &str) -> String {
    text.split("<br/>")
        .map(|part| {
            part.replace('#', "#35;")
                .replace('"', "#quot;")
                .replace('<', "#lt;")
                .replace('>', "#gt;")
                .replace('`', "#96;")
        })
        .collect::<Vec<_>>()
        .join("<br/>")
}

/// `5m`, `30s`, `1h30m`, `250ms`: as a timeout is written on a step.
fn duration(timeout: std::time::Duration) -> String {
    let millis = timeout.as_millis();
    if !millis.is_multiple_of(1000) {
        return format!("{millis}ms");
    }
    let mut seconds = millis / 1000;
    let mut text = String::new();
    for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] {
        if seconds >= size {
            write!(text, "{}{unit}", seconds / size).ok();
            seconds %= size;
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(name: &'static str, end: bool) -> Step {
        Step {
            name,
            event: name,
            start: false,
            end,
            timeout: None,
            reads_envelope: false,
            dispatches: &[],
            on_timeout: None,
            compensation: None,
        }
    }

    #[test]
    fn every_step_has_an_arrow_in_even_after_alternative_endings() {
        let steps = [
            step("placed", false),
            step("cancelled", true),
            step("paid", false),
            step("shipped", true),
        ];
        let names = |index| following(&steps, index).map(|step| step.name).collect::<Vec<_>>();
        assert_eq!(names(0), ["cancelled", "paid"]);
        assert_eq!(names(2), ["shipped"]);
        assert!(names(3).is_empty());
        let chain = [step("a", false), step("b", false), step("c", true)];
        assert_eq!(following(&chain, 0).map(|step| step.name).collect::<Vec<_>>(), ["b"]);
    }

    #[test]
    fn durations_read_as_written() {
        use std::time::Duration;
        assert_eq!(duration(Duration::from_secs(300)), "5m");
        assert_eq!(duration(Duration::from_secs(30)), "30s");
        assert_eq!(duration(Duration::from_secs(5_400)), "1h30m");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
        assert_eq!(duration(Duration::from_secs(86_400)), "1d");
    }

    #[test]
    fn labels_cannot_break_out_of_their_quotes() {
        assert_eq!(label("a\"b<c>#d<br/>`e`"), "a#quot;b#lt;c#gt;#35;d<br/>#96;e#96;");
        assert_eq!(identifier("r#type"), "r_type");
    }
}
