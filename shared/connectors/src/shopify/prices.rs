//! Prices: every variant's (a bulk read), and a product's variants' prices set.

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use serde_json::{Value, json};

use super::ShopifyAdmin;
use erpsync_core::ports::{ChannelPrices, ChannelVariant};

/// Every product's variants (all of them: up to 2,048 a product), as a bulk operation.
const VARIANTS_BULK: &str =
    "{ products { edges { node { id variants { edges { node { id sku price } } } } } } }";

/// A mutation: 10 points.
pub(super) const UPDATE_PRICES: &str =
    "mutation Prices($productId: ID!, $variants: [ProductVariantsBulkInput!]!) {
  productVariantsBulkUpdate(productId: $productId, variants: $variants) {
    productVariants { id price }
    userErrors { field message }
  }
}";

#[async_trait]
impl ChannelPrices for ShopifyAdmin {
    async fn variants(&self) -> Result<Vec<ChannelVariant>, SyncError> {
        // Variants are the lines with a parent (their product); products add nothing more.
        let mut variants = Vec::new();
        self.bulk_read(VARIANTS_BULK, |line| {
            let Some(product_id) = line["__parentId"].as_str() else {
                return;
            };
            let sku = line["sku"].as_str().and_then(|s| Sku::parse(s).ok());
            let price = line["price"]
                .as_str()
                .and_then(|p| p.parse::<rust_decimal::Decimal>().ok());
            if let (Some(sku), Some(price), Some(variant_id)) = (sku, price, line["id"].as_str()) {
                variants.push(ChannelVariant {
                    product_id: product_id.to_owned(),
                    variant_id: variant_id.to_owned(),
                    sku,
                    price,
                });
            }
        })
        .await?;
        Ok(variants)
    }

    async fn update_prices(
        &self,
        product_id: &str,
        prices: &[(String, rust_decimal::Decimal)],
    ) -> Result<(), SyncError> {
        let variants: Vec<Value> = prices
            .iter()
            .map(|(id, price)| json!({"id": id, "price": price.to_string()}))
            .collect();
        let data = self
            .graphql(
                UPDATE_PRICES,
                json!({"productId": product_id, "variants": variants}),
                10.0,
            )
            .await?;
        let errors = data["productVariantsBulkUpdate"]["userErrors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        match errors.first() {
            None => Ok(()),
            Some(error) => Err(SyncError::permanent(
                erpsync_core::flows::prices::REJECTED,
                format!(
                    "Shopify refused the prices of {product_id}: {}",
                    error["message"].as_str().unwrap_or("(no message)")
                ),
            )),
        }
    }
}
