//! `env`, `error`, `command_enum`, `event_enum` and `vis` given explicitly; handlers whose error
//! converts into the aggregate's with `From`; a `Result` alias; no environment and no snapshots.

use composable::{Aggregate, aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

#[derive(Debug, Default)]
pub(crate) struct Account {
    balance: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Deposit(pub i64);

#[derive(Debug, Clone, PartialEq)]
pub struct Withdraw(pub i64);

#[event(name = "account.deposited", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited(pub i64);

#[event(name = "account.withdrawn", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn(pub i64);

#[derive(Debug, PartialEq)]
pub struct Overdrawn;

#[derive(Debug, PartialEq)]
pub enum AccountError {
    Overdrawn,
    Negative,
}

impl From<Overdrawn> for AccountError {
    fn from(_: Overdrawn) -> Self {
        AccountError::Overdrawn
    }
}

impl std::fmt::Display for AccountError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}

impl std::error::Error for AccountError {}

type AccountResult<T> = Result<T, AccountError>;

pub struct Limits {
    pub max_deposit: i64,
}

#[aggregate(
    stream = "account",
    env = Limits,
    error = AccountError,
    command_enum = AccountCmd,
    event_enum = AccountEvt,
    vis = "pub(crate)"
)]
impl Account {
    #[command]
    fn deposit(&self, Deposit(amount): Deposit, limits: &Limits) -> AccountResult<Deposited> {
        if amount < 0 {
            return Err(AccountError::Negative);
        }
        Ok(Deposited(amount.min(limits.max_deposit)))
    }

    #[command]
    fn withdraw(&self, Withdraw(amount): Withdraw) -> Result<Withdrawn, Overdrawn> {
        if amount > self.balance {
            return Err(Overdrawn);
        }
        Ok(Withdrawn(amount))
    }

    #[apply]
    fn deposited(&mut self, Deposited(amount): &Deposited) {
        self.balance += amount;
    }

    #[apply]
    fn withdrawn(&mut self, event: &Withdrawn) {
        self.balance -= event.0;
    }
}

fn main() {
    assert!(Account::SNAPSHOT_EVERY.is_none());
    let limits = Limits { max_deposit: 50 };
    let mut account = Account::default();
    for event in account.decide(AccountCmd::Deposit(Deposit(80)), &limits).unwrap() {
        account.apply(&event);
    }
    assert_eq!(account.balance, 50);
    assert_eq!(account.decide(Withdraw(60).into(), &limits), Err(AccountError::Overdrawn));
    assert_eq!(account.decide(Deposit(-1).into(), &limits), Err(AccountError::Negative));
    let events: Vec<AccountEvt> = account.decide(Withdraw(20).into(), &limits).unwrap();
    assert_eq!(events, vec![AccountEvt::Withdrawn(Withdrawn(20))]);
    assert!(account.encode_snapshot(&composable::Bincode).is_none());
}
