//! How a function works through its input: batches of messages, back-off, the time left
//! before its deadline, how a channel's failed answers are classed, and change-feed cursors.

pub mod answers;
pub mod backoff;
pub mod batch;
pub mod changes;
pub mod deadline;
