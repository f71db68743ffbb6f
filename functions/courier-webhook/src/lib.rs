//! courier-webhook: EasyPost's tracking webhook endpoint (a Lambda function URL). Verifies
//! `X-Hmac-Signature` on the raw body, then puts `tracker.updated` events on the shipments
//! queue, where shipment-sync applies them; answers 200 only once the event is safe there.

pub mod http_handler;

use erpsync_aws::secrets::SecretCache;
use erpsync_aws::sqs::Queue;

pub struct Deps {
    /// Secrets Manager secret with the EasyPost webhook secret(s).
    pub secret_name: String,
    pub secrets: SecretCache,
    pub shipments: Queue,
    /// Where a validly signed body that is not an EasyPost event is parked.
    pub shipments_dead_letter: Queue,
}
