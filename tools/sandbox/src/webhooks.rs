//! The sandbox acting as the shop: webhook deliveries signed exactly as Shopify signs them
//! (`X-Shopify-Hmac-Sha256` over the raw body), with the documented headers.

use erpsync_core::channels::signature::sign_base64_hmac_sha256;
use secrecy::SecretString;

/// One delivery: which store, which topic, which delivery id, what body.
pub struct Delivery<'a> {
    pub shop_domain: &'a str,
    pub topic: &'a str,
    pub webhook_id: &'a str,
    pub body: &'a str,
}

/// POSTs the delivery to `url` signed with `secret`; the HTTP status the endpoint answered.
pub async fn deliver(
    http: &reqwest::Client,
    url: &str,
    delivery: &Delivery<'_>,
    secret: &SecretString,
) -> reqwest::Result<u16> {
    Ok(send(http, url, delivery, secret).await?.status().as_u16())
}

/// POSTs the delivery to `url` signed with `secret`; the endpoint's whole answer.
pub async fn send(
    http: &reqwest::Client,
    url: &str,
    delivery: &Delivery<'_>,
    secret: &SecretString,
) -> reqwest::Result<reqwest::Response> {
    let signature = sign_base64_hmac_sha256(delivery.body.as_bytes(), secret);
    http.post(url)
        .header("content-type", "application/json")
        .header("x-shopify-shop-domain", delivery.shop_domain)
        .header("x-shopify-topic", delivery.topic)
        .header("x-shopify-webhook-id", delivery.webhook_id)
        .header("x-shopify-hmac-sha256", signature)
        .header("x-shopify-api-version", "2026-07")
        .header("user-agent", "Shopify-Captain-Hook")
        .body(delivery.body.to_owned())
        .send()
        .await
}
