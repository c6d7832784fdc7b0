//! The payment of one order (its id is the order's): captured, and refunded by the checkout's
//! compensation.

use composable::{aggregate, apply, command, event};
use serde::{Deserialize, Serialize};

/// The payment token the card network declines, for demos and tests.
pub const DECLINED_CARD: &str = "tok_declined";

/// The money was taken.
#[event(name = "payment.captured", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentCaptured {
    /// The order paid for.
    pub order_id: String,
    /// How much, in cents.
    pub amount: u64,
}

/// The money was given back.
#[event(name = "payment.refunded", version = 1)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentRefunded {
    /// The order.
    pub order_id: String,
    /// How much, in cents.
    pub amount: u64,
}

/// Take the money for an order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Charge {
    /// The order.
    pub order_id: String,
    /// How much, in cents.
    pub amount: u64,
    /// The payment token.
    pub card: String,
}

/// Give the money back.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Refund;

/// Why a payment command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    /// The card network said no.
    #[error("the card was declined")]
    Declined,
    /// One capture per order.
    #[error("the payment was already captured")]
    AlreadyCaptured,
    /// Nothing to refund.
    #[error("nothing was captured, or it was already refunded")]
    NothingToRefund,
}

/// The payment aggregate.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Payment {
    /// The order.
    pub order_id: String,
    /// Captured and not refunded, in cents.
    pub captured: u64,
    /// Whether a capture happened (refunded or not).
    pub charged: bool,
}

#[aggregate(stream = "payment")]
impl Payment {
    #[command]
    fn charge(&self, cmd: Charge) -> Result<PaymentCaptured, PaymentError> {
        if self.charged {
            return Err(PaymentError::AlreadyCaptured);
        }
        if cmd.card == DECLINED_CARD {
            return Err(PaymentError::Declined);
        }
        Ok(PaymentCaptured { order_id: cmd.order_id, amount: cmd.amount })
    }

    #[command]
    fn refund(&self, _cmd: Refund) -> Result<PaymentRefunded, PaymentError> {
        if self.captured == 0 {
            return Err(PaymentError::NothingToRefund);
        }
        Ok(PaymentRefunded { order_id: self.order_id.clone(), amount: self.captured })
    }

    #[apply]
    fn captured(&mut self, event: &PaymentCaptured) {
        self.order_id.clone_from(&event.order_id);
        self.captured = event.amount;
        self.charged = true;
    }

    #[apply]
    fn refunded(&mut self, _event: &PaymentRefunded) {
        self.captured = 0;
    }
}
