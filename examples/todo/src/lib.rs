//! A todo list. Each row has its own reducer, run per id with `for_each`; completing a row sorts
//! completed rows to the bottom one second later, and completing another row within that second
//! restarts the wait (a debounce built from `cancel_in_flight`).

use std::collections::BTreeMap;
use std::time::Duration;

use composable::reducer::reducer_fn;
use composable::{Effect, Reducer};

/// One row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Todo {
    /// What to do.
    pub text: String,
    /// Whether it is done.
    pub done: bool,
}

/// What a row can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TodoAction {
    /// Flip `done`.
    Toggle,
    /// Replace the text.
    Edit(String),
}

/// The list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Todos {
    /// Rows by id.
    pub rows: BTreeMap<u64, Todo>,
    /// The display order: open rows first, once sorted.
    pub order: Vec<u64>,
    /// The next id to hand out.
    pub next_id: u64,
}

/// What can happen to the list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Add a row.
    Add(String),
    /// Something happened in row `id`.
    Row(u64, TodoAction),
    /// Move completed rows to the bottom.
    Sort,
    /// Remove completed rows.
    ClearCompleted,
}

/// How long after the last completion the list is sorted.
pub const SORT_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct SortId;

/// The row reducer.
pub fn row() -> impl Reducer<State = Todo, Action = TodoAction, Environment = ()> {
    reducer_fn(|todo: &mut Todo, action: TodoAction, _: &()| {
        match action {
            TodoAction::Toggle => todo.done = !todo.done,
            TodoAction::Edit(text) => todo.text = text,
        }
        Effect::none()
    })
}

/// The list reducer: rows per id, plus the list's own actions.
pub fn todos() -> impl Reducer<State = Todos, Action = Action, Environment = ()> {
    let list = reducer_fn(|todos: &mut Todos, action: Action, _: &()| match action {
        Action::Add(text) => {
            let id = todos.next_id;
            todos.next_id += 1;
            todos.rows.insert(id, Todo { text, done: false });
            todos.order.push(id);
            Effect::none()
        }
        Action::Row(_, TodoAction::Toggle) => {
            Effect::delay(SORT_DELAY, Action::Sort).cancel_in_flight(SortId)
        }
        Action::Row(_, TodoAction::Edit(_)) => Effect::none(),
        Action::Sort => {
            let rows = &todos.rows;
            todos.order.sort_by_key(|id| rows.get(id).is_some_and(|todo| todo.done));
            Effect::none()
        }
        Action::ClearCompleted => {
            todos.rows.retain(|_, todo| !todo.done);
            let rows = &todos.rows;
            todos.order.retain(|id| rows.contains_key(id));
            Effect::none()
        }
    });
    let rows = row().for_each(
        |todos: &mut Todos| &mut todos.rows,
        |action: Action| match action {
            Action::Row(id, action) => Some((id, action)),
            _ => None,
        },
        Action::Row,
        |env: &()| env,
    );
    rows.combine(list)
}
