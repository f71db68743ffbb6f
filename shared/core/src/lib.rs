//! erpsync's core. No I/O lives here; the folders say what each part is:
//!
//! - `model`: the canonical model every part speaks: ids, the channel order, sync state.
//! - `channels`: each channel's payloads (Shopify, WooCommerce, EasyPost) parsed into the
//!   model, and their webhook signatures. Parsers import no flow.
//! - `flows`: every flow's decisions (orders with their edits, stock, prices, fulfilment,
//!   tracking, returns, reconciliation, shadow running, the go-live audit), written against
//!   the ports. A flow imports the model, the mapping and the ports, never another flow.
//! - `mapping`: channel order to ERP sale (SKUs, bundles, taxes, delivery, money).
//! - `config`: the channels and their rules, parsed and checked.
//! - `ports`: every trait the flows call (ERP, channels, stores) and the records they trade.
//! - `runtime`: how a function works through its input: batches, back-off, deadlines, the
//!   classes of failed answers, change-feed cursors.
//!
//! `tests/module_graph.rs` fails on a cycle between these modules (file by file and folder by
//! folder) or an import across the layers.

pub mod channels;
pub mod config;
pub mod error;
#[cfg(any(test, feature = "fakes"))]
pub mod fakes;
pub mod flows;
pub mod mapping;
pub mod model;
pub mod ports;
pub mod runtime;

pub use error::{ErrorClass, ParseError, SyncError};
