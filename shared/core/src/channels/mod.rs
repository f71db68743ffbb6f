//! Each channel's payloads parsed into the model (Shopify, WooCommerce, EasyPost) and their
//! webhook signatures; and, for an order whatever its platform, one place that picks the parser.

pub mod easypost;
pub(crate) mod json;
pub mod shopify;
pub mod signature;
pub mod woocommerce;

use crate::config::Platform;
use crate::error::ParseError;
use crate::model::ids::{ChannelId, ExternalOrderId};
use crate::model::order::ChannelOrder;

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
