//! Shopify's payloads: the order (the REST order resource, the body of the `orders/*`
//! webhooks) the refund (`refunds/create`) and the transaction (`order_transactions/create`) into the
//! model. Every error names the JSON
//! path of the bad field.

mod order;
mod raw;
mod refund;
mod transaction;

pub use order::{order_id, parse_order};
pub use refund::parse_refund;
pub use transaction::{parse_transaction, transaction_order_id};

#[cfg(test)]
mod tests;
