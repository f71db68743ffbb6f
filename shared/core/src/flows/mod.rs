//! One module per flow: the decisions, written against the ports. Flows share only what lies
//! below them (the model, the mapping, the ports, the runtime), never each other's internals.

pub mod audit;
pub mod finance;
pub mod fulfilment;
pub mod orders;
pub mod payments;
pub mod prices;
pub mod reconcile;
pub mod returns;
pub mod shadow;
pub mod stock;
pub mod tracking;
