//! The `{{Name}}` aggregate: commands decided on its state, events applied to it.

use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// Opens the {{words}}.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Open{{Name}} {
    /// Its id, also its stream's id.
    pub id: String,
}

/// Closes the {{words}}, which must be open.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Close{{Name}};

/// The {{words}} was opened.
#[event(name = "{{snake}}.opened", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct {{Name}}Opened {
    /// Its id.
    pub id: String,
}

/// The {{words}} was closed.
#[event(name = "{{snake}}.closed", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct {{Name}}Closed {
    /// Its id.
    pub id: String,
}

/// Why the {{words}} refuses a command.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum {{Name}}Error {
    /// It was opened already.
    #[error("the {{words}} is open already")]
    AlreadyOpen,
    /// It is not open.
    #[error("the {{words}} is not open")]
    NotOpen,
}

/// One {{words}}, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct {{Name}} {
    /// Its id, once opened.
    pub id: String,
    /// Whether it is open.
    pub open: bool,
}

#[aggregate(stream = "{{snake}}")]
impl {{Name}} {
    #[command]
    fn open(&self, command: Open{{Name}}) -> Result<{{Name}}Opened, {{Name}}Error> {
        if self.open {
            return Err({{Name}}Error::AlreadyOpen);
        }
        Ok({{Name}}Opened { id: command.id })
    }

    #[command]
    fn close(&self, _command: Close{{Name}}) -> Result<{{Name}}Closed, {{Name}}Error> {
        if !self.open {
            return Err({{Name}}Error::NotOpen);
        }
        Ok({{Name}}Closed {
            id: self.id.clone(),
        })
    }

    #[apply]
    fn opened(&mut self, event: &{{Name}}Opened) {
        self.id.clone_from(&event.id);
        self.open = true;
    }

    #[apply]
    fn closed(&mut self, _event: &{{Name}}Closed) {
        self.open = false;
    }
}

#[cfg(test)]
mod tests {
    use composable::testing::AggregateTest;

    use super::*;

    fn opened() -> {{Name}}Opened {
        {{Name}}Opened { id: "1".into() }
    }

    #[test]
    fn a_new_one_opens() {
        AggregateTest::<{{Name}}>::new(())
            .given(Vec::<{{Name}}Event>::new())
            .when(Open{{Name}} { id: "1".into() })
            .then([opened()]);
    }

    #[test]
    fn an_open_one_closes_once() {
        AggregateTest::<{{Name}}>::new(())
            .given([opened()])
            .when(Close{{Name}})
            .then([{{Name}}Closed { id: "1".into() }]);
        AggregateTest::<{{Name}}>::new(())
            .given([
                {{Name}}Event::from(opened()),
                {{Name}}Closed { id: "1".into() }.into(),
            ])
            .when(Close{{Name}})
            .then_error({{Name}}Error::NotOpen);
    }
}
