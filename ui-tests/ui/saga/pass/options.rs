//! Per-step keys, fallible steps, `on_timeout`, and renamed enum through `crate = path`.

mod framework {
    pub use composable as es;
}

use framework::es;
use es::saga::{Dispatch, Saga};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Stock;

#[derive(Debug, Clone, PartialEq)]
pub struct Reserve(pub u32);

#[es::event(name = "stock.reserved", version = 1, crate = crate::framework::es)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reserved {
    pub reference: u64,
}

#[es::aggregate(stream = "stock", crate = crate::framework::es)]
impl Stock {
    #[es::command]
    fn reserve(&self, _command: Reserve) -> Reserved {
        Reserved { reference: 0 }
    }

    #[es::apply]
    fn reserved(&mut self, _event: &Reserved) {}
}

#[es::event(name = "basket.filled", version = 1, crate = crate::framework::es)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Filled {
    pub basket: u64,
    pub items: u32,
}

#[derive(Debug)]
pub struct TooMany(u32);

impl std::fmt::Display for TooMany {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} items is too many", self.0)
    }
}

#[derive(Debug, Default)]
pub(crate) struct Fill {
    late: bool,
}

#[es::saga(name = "fill", event_enum = FillInput, vis = "pub(crate)", crate = crate::framework::es)]
impl Fill {
    #[es::start(key = basket, timeout = "250ms", on_timeout = late, no_compensation)]
    fn filled(&mut self, event: &Filled) -> Result<Vec<Dispatch>, TooMany> {
        if event.items > 10 {
            return Err(TooMany(event.items));
        }
        Ok(vec![Dispatch::to::<Stock>(event.basket, Reserve(event.items))])
    }

    #[es::step(key = reference, end)]
    fn reserved(&mut self, _event: &Reserved) {}

    fn late(&mut self) -> Option<Dispatch> {
        self.late = true;
        None
    }
}

fn main() {
    let small = FillInput::from(Filled { basket: 3, items: 2 });
    let large = FillInput::from(Filled { basket: 4, items: 20 });
    assert_eq!(Fill::key(&small), "3");
    assert_eq!(Fill::key(&FillInput::from(Reserved { reference: 9 })), "9");
    let mut saga = Fill::default();
    assert_eq!(
        saga.handle(&small, None),
        Ok(es::saga::Reaction::Proceed(vec![Dispatch::to::<Stock>(3, Reserve(2))]))
    );
    assert_eq!(saga.handle(&large, None), Err("20 items is too many".to_owned()));
    assert_eq!(Fill::STEPS[0].timeout, Some(std::time::Duration::from_millis(250)));
    assert!(saga.timed_out(0).is_empty());
    assert!(saga.late);
}
