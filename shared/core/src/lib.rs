//! erpsync's core: the canonical model, parsing of channel payloads, mapping, the flows'
//! decisions and the ports they call. No I/O lives here.

pub mod answers;
pub mod audit;
pub mod backoff;
pub mod batch;
pub mod changes;
pub mod config;
pub mod deadline;
pub mod edits;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod flows;
pub mod fulfilment;
pub mod ids;
pub mod inbound;
pub mod mapping;
pub mod order;
pub mod ports;
pub mod prices;
pub mod reconcile;
pub mod returns;
pub mod shadow;
pub mod shopify;
pub mod signature;
pub mod state;
pub mod stock;
pub mod tracking;
pub mod woocommerce;

pub use error::{ErrorClass, ParseError, SyncError};
