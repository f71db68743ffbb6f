//! One module per flow: the decisions, written against the ports.

pub mod order_sync;
pub mod shipment_run;
