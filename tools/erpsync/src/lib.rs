//! The local stack and the operator tooling, as a library so the end-to-end tests drive the
//! very same code as `erpsync` and `make demo`.

pub mod audit;
pub mod desk;
pub mod docs;
pub mod esm;
pub mod finance;
pub mod local;
pub mod ops;
pub mod policy;
pub mod queues;
pub mod roles;
pub mod schedules;
pub mod shadow;
pub mod stack;
pub mod template;

pub use stack::project_root;
