//! shop-webhook: the Shopify webhook endpoint (a Lambda function URL). Verifies the signature
//! on the raw body, routes by topic and enqueues; answers 200 only once the message is safe
//! on a queue, so Shopify retries anything that is not.

pub mod http_handler;

use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::Queue;
use erpsync_core::config::Config;

pub struct Deps {
    pub config: Config,
    pub secrets: SecretCache,
    pub orders: Queue,
    /// Where a validly signed body that cannot be read as an order is parked.
    pub orders_dead_letter: Queue,
}
