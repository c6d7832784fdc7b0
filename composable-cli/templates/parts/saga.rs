//! The `{{Name}}` saga: a workflow that starts on one event and ends on another.
//!
//! Its two events are declared here so that it compiles and is tested on its own. Before the
//! application host runs it, make its steps take your aggregates' events instead (the host
//! refuses a saga waiting for an event no registered aggregate emits), dispatch the commands
//! each step needs with `Dispatch::to::<Aggregate>(id, command)`, and give every step that other
//! steps follow a `#[compensate(step)]` that undoes it, or mark it `no_compensation`.

use composable::saga::Dispatch;
use composable::{event, saga, start, step};
use serde::{Deserialize, Serialize};

/// The {{words}} was asked for.
#[event(name = "{{snake}}.requested", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct {{Name}}Requested {
    /// The instance's key.
    pub id: String,
}

/// The {{words}} is done.
#[event(name = "{{snake}}.finished", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct {{Name}}Finished {
    /// The instance's key.
    pub id: String,
}

/// One {{words}}, keyed by its id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct {{Name}} {
    /// The instance's key.
    pub id: String,
}

#[saga(name = "{{snake}}", key = id)]
impl {{Name}} {
    /// Starts an instance; it must finish within five minutes.
    #[start(timeout = "5m", no_compensation)]
    fn requested(&mut self, event: &{{Name}}Requested) -> Option<Dispatch> {
        self.id.clone_from(&event.id);
        None
    }

    /// Finishes it.
    #[step(end)]
    fn finished(&mut self, _event: &{{Name}}Finished) {}
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use composable::saga::SagaStatus;
    use composable::testing::SagaTest;

    use super::*;

    #[tokio::test]
    async fn it_starts_and_finishes() {
        let mut test = SagaTest::<{{Name}}>::new();
        test.given({{Name}}Requested { id: "1".into() }).await;
        test.then_nothing_dispatched();
        test.given({{Name}}Finished { id: "1".into() }).await;
        assert_eq!(test.status("1").await, Some(SagaStatus::Completed));
    }

    #[tokio::test]
    async fn it_gives_up_when_it_does_not_finish_in_time() {
        let mut test = SagaTest::<{{Name}}>::new();
        test.given({{Name}}Requested { id: "1".into() }).await;
        test.advance(Duration::from_secs(301)).await;
        assert_eq!(test.status("1").await, Some(SagaStatus::Compensated));
    }
}
