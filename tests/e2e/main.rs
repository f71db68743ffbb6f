//! End-to-end scenarios on real protocols: DynamoDB, SQS and Secrets Manager in moto, the
//! ERP in a real Tryton, the functions in process behind the emulated event source mapping.
//! One test binary, so everything links once.

mod chaos;
mod customers;
mod failures;
mod intake;
mod lifecycle;
mod mapping;
mod modes;
mod money;
mod operations;
mod payments;
mod queues;
mod reconcile;
mod returns;
mod security;
mod shipments;
mod stock;
mod store;
mod template;
mod webhook;
