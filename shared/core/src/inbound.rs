//! Channel payloads in, whatever the platform: one place that picks the parser.

use serde::Deserialize;

use crate::config::Platform;
use crate::error::ParseError;
use crate::ids::{ChannelId, ExternalOrderId};
use crate::order::ChannelOrder;
use crate::{shopify, woocommerce};

/// Just the order id, to route a message even when the rest does not parse.
pub fn order_id(platform: Platform, body: &[u8]) -> Result<ExternalOrderId, ParseError> {
    match platform {
        Platform::Shopify => shopify::order_id(body),
        Platform::Woocommerce => woocommerce::order_id(body),
    }
}

pub fn parse_order(
    platform: Platform,
    channel: &ChannelId,
    body: &[u8],
) -> Result<ChannelOrder, ParseError> {
    match platform {
        Platform::Shopify => shopify::parse_order(channel, body),
        Platform::Woocommerce => woocommerce::parse_order(channel, body),
    }
}

/// JSON into a raw payload type; the error names the JSON path that failed.
pub(crate) fn from_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ParseError> {
    let deserializer = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(deserializer).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." { "body".to_owned() } else { path };
        ParseError::new(field, e.into_inner().to_string())
    })
}
