//! Adapters for core's ports on AWS (DynamoDB, SQS, Secrets Manager), the SQS batch runner,
//! and what every function needs at cold start: config, SDK configuration, tracing.

pub mod batch;
pub mod dynamo;
pub mod env;
pub mod error;
pub mod function_url;
pub mod secrets;
pub mod sqs;
pub mod telemetry;
