//! The checkout: charge the customer, reserve the stock, confirm the order; undo what was done
//! when a step fails or the warehouse doesn't answer in time.

use composable::saga::Dispatch;
use composable::{compensate, saga, start, step};

use crate::inventory::{Inventory, Release, Reserve, StockReserved};
use crate::order::{CancelOrder, ConfirmOrder, Order, OrderPlaced};
use crate::payment::{Charge, Payment, PaymentCaptured, Refund};

/// One checkout, keyed by its order id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CheckoutSaga {
    /// The order.
    pub order_id: String,
    /// What the order holds.
    pub sku: String,
    /// How many.
    pub quantity: u32,
    /// Whether the money was taken.
    pub paid: bool,
}

#[saga(name = "checkout", key = order_id)]
impl CheckoutSaga {
    /// An order was placed: take the money. The payment provider has five minutes.
    #[start(timeout = "5m")]
    fn order_placed(&mut self, event: &OrderPlaced) -> Dispatch {
        self.order_id.clone_from(&event.order_id);
        self.sku.clone_from(&event.sku);
        self.quantity = event.quantity;
        let charge = Charge {
            order_id: event.order_id.clone(),
            amount: event.total,
            card: event.card.clone(),
        };
        Dispatch::to::<Payment>(&event.order_id, charge)
    }

    /// Paid: reserve the stock. The warehouse has thirty seconds; when it is late, the
    /// reservation is given up before the money is returned.
    #[step(timeout = "30s", on_timeout = give_up_reservation)]
    fn payment_captured(&mut self, _event: &PaymentCaptured) -> Dispatch {
        self.paid = true;
        let reserve = Reserve { order_id: self.order_id.clone(), quantity: self.quantity };
        Dispatch::to::<Inventory>(&self.sku, reserve)
    }

    /// Reserved: the order goes through.
    #[step(end)]
    fn stock_reserved(&mut self, _event: &StockReserved) -> Dispatch {
        Dispatch::to::<Order>(&self.order_id, ConfirmOrder)
    }

    #[compensate(order_placed)]
    fn cancel_order(&self) -> Dispatch {
        let reason = if self.paid { "checkout failed; refunded" } else { "payment failed" };
        Dispatch::to::<Order>(&self.order_id, CancelOrder { reason: reason.into() })
    }

    #[compensate(payment_captured)]
    fn refund(&self) -> Dispatch {
        Dispatch::to::<Payment>(&self.order_id, Refund)
    }

    fn give_up_reservation(&mut self) -> Dispatch {
        Dispatch::to::<Inventory>(&self.sku, Release { order_id: self.order_id.clone() })
    }
}
