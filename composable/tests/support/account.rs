//! A hand-written aggregate of the shape `#[aggregate]` generates, so the runner and the testing
//! kit are tested independently of the macros.

use std::num::NonZeroU64;

use composable::codec::CodecError;
use composable::event::decode_payload;
use composable::event::{DecodeError, EventSet};
use composable::{Aggregate, Codec};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Deposited {
    pub(crate) amount: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Withdrawn {
    pub(crate) amount: u64,
}

impl composable::Event for Deposited {
    const NAME: &'static str = "account.deposited";
    const VERSION: u16 = 1;
}

impl composable::Event for Withdrawn {
    const NAME: &'static str = "account.withdrawn";
    const VERSION: u16 = 1;
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AccountEvent {
    Deposited(Deposited),
    Withdrawn(Withdrawn),
}

impl EventSet for AccountEvent {
    const NAMES: &'static [&'static str] = &["account.deposited", "account.withdrawn"];

    fn event_name(&self) -> &'static str {
        match self {
            Self::Deposited(_) => "account.deposited",
            Self::Withdrawn(_) => "account.withdrawn",
        }
    }

    fn event_version(&self) -> u16 {
        1
    }

    fn encode<C: Codec>(&self, codec: &C) -> Result<Vec<u8>, CodecError> {
        match self {
            Self::Deposited(e) => codec.encode(e),
            Self::Withdrawn(e) => codec.encode(e),
        }
    }

    fn decode<C: Codec>(
        codec: &C,
        name: &str,
        version: u16,
        bytes: &[u8],
    ) -> Result<Self, DecodeError> {
        let check = |event_name: &'static str| match version {
            1 => Ok(()),
            0 => Err(DecodeError::UnknownVersion { name: event_name, version, newest: 1 }),
            _ => Err(DecodeError::FutureVersion { name: event_name, version, newest: 1 }),
        };
        match name {
            "account.deposited" => {
                check("account.deposited")?;
                decode_payload(codec, bytes).map(Self::Deposited)
            }
            "account.withdrawn" => {
                check("account.withdrawn")?;
                decode_payload(codec, bytes).map(Self::Withdrawn)
            }
            _ => Err(DecodeError::UnknownEvent { name: name.to_owned(), expected: Self::NAMES }),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum AccountCommand {
    Deposit(u64),
    Withdraw(u64),
}

#[derive(Debug, PartialEq, thiserror::Error)]
pub(crate) enum AccountError {
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds { balance: u64, requested: u64 },
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Account {
    pub(crate) balance: u64,
    pub(crate) movements: u64,
}

impl Aggregate for Account {
    const STREAM: &'static str = "account";
    const SNAPSHOT_EVERY: Option<NonZeroU64> = NonZeroU64::new(3);
    const SNAPSHOT_SCHEMA: u32 = 2;
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    type Environment = ();

    fn decide(&self, command: AccountCommand, _: &()) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Deposit(0) => Ok(vec![]),
            AccountCommand::Deposit(amount) => {
                Ok(vec![AccountEvent::Deposited(Deposited { amount })])
            }
            AccountCommand::Withdraw(amount) if amount > self.balance => {
                Err(AccountError::InsufficientFunds { balance: self.balance, requested: amount })
            }
            AccountCommand::Withdraw(amount) => {
                Ok(vec![AccountEvent::Withdrawn(Withdrawn { amount })])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        self.movements += 1;
        match event {
            AccountEvent::Deposited(e) => self.balance += e.amount,
            AccountEvent::Withdrawn(e) => self.balance -= e.amount,
        }
    }

    fn encode_snapshot<C: Codec>(&self, codec: &C) -> Option<Result<Vec<u8>, CodecError>> {
        Some(codec.encode(self))
    }

    fn decode_snapshot<C: Codec>(codec: &C, bytes: &[u8]) -> Option<Result<Self, CodecError>> {
        Some(codec.decode(bytes))
    }
}

impl From<Deposited> for AccountEvent {
    fn from(event: Deposited) -> Self {
        Self::Deposited(event)
    }
}

impl From<Withdrawn> for AccountEvent {
    fn from(event: Withdrawn) -> Self {
        Self::Withdrawn(event)
    }
}
