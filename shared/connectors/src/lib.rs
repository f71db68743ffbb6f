//! Adapters for the systems outside AWS: the Tryton ERP now; Shopify's Admin API and the
//! courier come with their flows.

pub mod http;
pub mod shopify;
pub mod tryton;

pub use tryton::TrytonClient;
