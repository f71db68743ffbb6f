//! The canonical model: what an order, a customer, a SKU and a sync record are, whatever
//! the channel or the ERP.

pub mod ids;
pub mod order;
pub mod payment;
pub mod refund;
pub mod state;
