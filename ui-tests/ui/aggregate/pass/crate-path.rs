//! `crate = path` reaches the runtime through a re-export under another name.

mod framework {
    pub use composable as es;
}

mod app {
    use crate::framework::es;
    use serde::{Deserialize, Serialize};

    #[derive(Debug, Default)]
    pub struct Counter {
        pub count: u64,
    }

    #[derive(Debug, Clone, PartialEq)]
    pub struct Increment;

    #[es::event(name = "counter.incremented", version = 1, crate = crate::framework::es)]
    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    pub struct Incremented;

    #[es::aggregate(stream = "counter", crate = crate::framework::es)]
    impl Counter {
        #[es::command]
        fn increment(&self, _command: Increment) -> Incremented {
            Incremented
        }

        #[es::apply]
        fn incremented(&mut self, _event: &Incremented) {
            self.count += 1;
        }
    }
}

fn main() {
    use framework::es::Aggregate;
    let mut counter = app::Counter::default();
    for event in counter.decide(app::Increment.into(), &()).unwrap() {
        counter.apply(&event);
    }
    assert_eq!(counter.count, 1);
}
