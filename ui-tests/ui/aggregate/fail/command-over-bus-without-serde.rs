use composable::bus::InMemoryBus;
use composable::command_bus::BusDispatcher;
use composable::{Bincode, aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Payment {
    charged: bool,
}

// Fine in process; sending it to another process needs serde.
#[derive(Debug, Clone, PartialEq)]
pub struct Charge {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund;

#[event(name = "payment.charged", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charged;

#[aggregate(stream = "payment")]
impl Payment {
    #[command]
    fn charge(&self, _command: Charge) -> Charged {
        Charged
    }

    #[command]
    fn refund(&self, _command: Refund) -> Vec<PaymentEvent> {
        Vec::new()
    }

    #[apply]
    fn charged(&mut self, _event: &Charged) {
        self.charged = true;
    }
}

fn main() {
    let _dispatcher = BusDispatcher::new(InMemoryBus::new(), Bincode, "replies").route::<Payment>();
}
