//! Shopify's payloads: the order (the REST order resource, the body of the `orders/*`
//! webhooks) and the refund (`refunds/create`) into the model. Every error names the JSON
//! path of the bad field.

mod order;
mod raw;
mod refund;

pub use order::{order_id, parse_order};
pub use refund::parse_refund;

#[cfg(test)]
mod tests;
