//! shop-webhook: the Shopify and WooCommerce webhook endpoint (a Lambda function URL).
//! Verifies the signature on the raw body, routes by topic (orders to order-sync, refunds to
//! return-sync) and enqueues; answers 200 only once the message is safe
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
    /// Refunds, for return-sync.
    pub returns: Queue,
    pub returns_dead_letter: Queue,
}

#[cfg(test)]
mod tests {
    use aws_lambda_events::event::lambda_function_urls::LambdaFunctionUrlRequest;
    use erpsync_core::channels::signature::verify_base64_hmac_sha256;
    use secrecy::SecretString;

    #[test]
    fn the_sample_event_is_a_function_url_request_signed_with_the_documented_test_secret() {
        let request: LambdaFunctionUrlRequest = serde_json::from_str(include_str!(
            "../../../events/shop-webhook/orders-create.json"
        ))
        .unwrap_or_else(|e| panic!("{e}"));
        let signature = request
            .headers
            .get("x-shopify-hmac-sha256")
            .and_then(|v| v.to_str().ok());
        let body = request.body.unwrap_or_default();
        let secret = [SecretString::from("test_secret_key".to_owned())];
        assert_eq!(
            verify_base64_hmac_sha256(body.as_bytes(), signature, &secret),
            Ok(())
        );
    }
}
