//! A counter, a tally and a saga between them: the domain the runtime's observability suites
//! (traces, metrics) drive.

use composable::saga::Dispatch;
use composable::{aggregate, apply, command, compensate, event, saga, start, step};
use serde::{Deserialize, Serialize};

#[event(name = "counter.added", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Added {
    pub amount: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Add {
    pub amount: u32,
}

#[derive(Debug, thiserror::Error)]
#[error("nothing to add")]
pub struct Nothing;

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Counter {
    total: u32,
}

#[aggregate(stream = "counter", snapshot_every = 2)]
impl Counter {
    #[command]
    fn add(&self, command: Add) -> Result<Added, Nothing> {
        if command.amount == 0 {
            return Err(Nothing);
        }
        Ok(Added { amount: command.amount })
    }

    #[apply]
    fn added(&mut self, event: &Added) {
        self.total += event.amount;
    }
}

#[event(name = "tally.opened", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Opened {
    pub name: String,
}

#[event(name = "tally.shut", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shut {
    pub name: String,
}

#[derive(Debug, Default)]
pub struct Tally;

#[aggregate(stream = "tally")]
impl Tally {
    #[command]
    fn open(&self, command: Open) -> Opened {
        Opened { name: command.name }
    }

    #[command]
    fn shut(&self, command: ShutIt) -> Shut {
        Shut { name: command.name }
    }

    #[apply]
    fn opened(&mut self, _event: &Opened) {}

    #[apply]
    fn was_shut(&mut self, _event: &Shut) {}
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open {
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShutIt {
    pub name: String,
}

/// Opening a tally adds a bonus to the counter of the same name; a tally not shut within a
/// minute times out.
#[derive(Debug, Default)]
pub struct Bonus;

#[saga(name = "bonus", key = name)]
impl Bonus {
    #[start(timeout = "1m")]
    fn opened(&mut self, event: &Opened) -> Dispatch {
        Dispatch::to::<Counter>(&event.name, Add { amount: 10 })
    }

    #[step(end)]
    fn shut(&mut self, _event: &Shut) {}

    #[compensate(opened)]
    fn undo(&self) -> Option<Dispatch> {
        None
    }
}
