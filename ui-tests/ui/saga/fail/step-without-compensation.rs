// A transfer that withdraws and then deposits: when the deposit is refused, nothing gives the
// money back unless the withdrawal has a compensation.
use composable::saga::Dispatch;
use composable::{aggregate, apply, command, event, saga, start, step};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub struct Account;

#[derive(Debug, Clone, PartialEq)]
pub struct Withdraw {
    pub cents: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit {
    pub cents: u64,
}

#[event(name = "account.withdrawn", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub transfer: String,
}

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub transfer: String,
}

#[aggregate(stream = "account")]
impl Account {
    #[command]
    fn withdraw(&self, _command: Withdraw) -> Withdrawn {
        Withdrawn { transfer: String::new() }
    }

    #[command]
    fn deposit(&self, _command: Deposit) -> Deposited {
        Deposited { transfer: String::new() }
    }

    #[apply]
    fn withdrawn(&mut self, _event: &Withdrawn) {}

    #[apply]
    fn deposited(&mut self, _event: &Deposited) {}
}

#[event(name = "transfer.requested", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferRequested {
    pub transfer: String,
    pub from: String,
    pub to: String,
    pub cents: u64,
}

#[derive(Debug, Default)]
pub struct Transfer {
    to: String,
    cents: u64,
}

#[saga(name = "transfer", key = transfer)]
impl Transfer {
    #[start(no_compensation)]
    fn requested(&mut self, event: &TransferRequested) -> Dispatch {
        self.to.clone_from(&event.to);
        self.cents = event.cents;
        Dispatch::to::<Account>(&event.from, Withdraw { cents: event.cents })
    }

    #[step]
    fn withdrawn(&mut self, _event: &Withdrawn) -> Dispatch {
        Dispatch::to::<Account>(&self.to, Deposit { cents: self.cents })
    }

    #[step(end)]
    fn deposited(&mut self, _event: &Deposited) {}
}

fn main() {}
