//! Inventory: every item with what each location shows (a bulk read), the items of some
//! SKUs (a targeted read), and the quantities set.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use serde_json::{Value, json};

use super::ShopifyAdmin;
use super::transport::{next_page, nodes};
use erpsync_core::ports::{ChannelInventory, ChannelItem, StockChange};

/// SKUs per search: the targeted read's page holds one search's worth.
pub(super) const SKUS_PER_SEARCH: usize = 50;

/// Levels read with each item; an item stocked at more locations pages the rest (LEVELS).
pub(super) const LEVELS_PER_ITEM: u32 = 5;

/// Targeted read (real-time SKUs): one inventory level is 1 (itself) + 1 (location) + 1
/// (quantities); one item 1 + (2 + 5 x 3) = 18; the page 2 + 50 x 18 = 902 points.
pub(super) const ITEMS: &str =
    "query Items($first: Int!, $after: String, $query: String, $levels: Int!) {
  inventoryItems(first: $first, after: $after, query: $query) {
    nodes {
      id
      sku
      inventoryLevels(first: $levels) {
        nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
        pageInfo { hasNextPage endCursor }
      }
    }
    pageInfo { hasNextPage endCursor }
  }
}";
pub(super) const ITEMS_COST: f64 = 902.0;

/// The rest of one item's levels: 1 (item) + 2 + 50 x 3 = 153 points.
pub(super) const LEVELS: &str = "query Levels($id: ID!, $after: String) {
  inventoryItem(id: $id) {
    inventoryLevels(first: 50, after: $after) {
      nodes { location { id } quantities(names: [\"available\"]) { name quantity } }
      pageInfo { hasNextPage endCursor }
    }
  }
}";
pub(super) const LEVELS_COST: f64 = 153.0;

/// Full read of every item and its levels at every location, as a bulk operation.
const ITEMS_BULK: &str = "{ inventoryItems { edges { node { id sku inventoryLevels { edges { node { location { id } quantities(names: [\"available\"]) { name quantity } } } } } } } }";

pub(super) const SET: &str = "mutation Set($input: InventorySetQuantitiesInput!, $key: String!) {
  inventorySetQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { reason }
    userErrors { code field message }
  }
}";

/// An inventory level's location and available quantity.
fn level(level: &Value) -> Option<(String, i64)> {
    let location = level["location"]["id"].as_str()?.to_owned();
    let available = level["quantities"]
        .as_array()?
        .iter()
        .find(|q| q["name"] == "available")?["quantity"]
        .as_i64()?;
    Some((location, available))
}

impl ShopifyAdmin {
    /// The inventory items matching a search `query`, each with all its levels.
    async fn inventory_items(&self, query: String) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let variables = json!({"first": SKUS_PER_SEARCH, "after": after, "query": query,
                                   "levels": LEVELS_PER_ITEM});
            let data = self.graphql(ITEMS, variables, ITEMS_COST).await?;
            let page = &data["inventoryItems"];
            for node in nodes(page) {
                let Some(sku) = node["sku"].as_str().and_then(|s| Sku::parse(s).ok()) else {
                    continue;
                };
                let id = node["id"].as_str().unwrap_or_default().to_owned();
                let mut levels: HashMap<String, i64> = nodes(&node["inventoryLevels"])
                    .iter()
                    .filter_map(level)
                    .collect();
                let mut more = next_page(&node["inventoryLevels"]);
                while let Some(cursor) = more {
                    let data = self
                        .graphql(LEVELS, json!({"id": id, "after": cursor}), LEVELS_COST)
                        .await?;
                    let connection = &data["inventoryItem"]["inventoryLevels"];
                    levels.extend(nodes(connection).iter().filter_map(level));
                    more = next_page(connection);
                }
                items.push(ChannelItem {
                    sku,
                    inventory_item: id,
                    levels,
                });
            }
            match next_page(page) {
                Some(cursor) => after = Some(cursor),
                None => return Ok(items),
            }
        }
    }
}

#[async_trait]
impl ChannelInventory for ShopifyAdmin {
    /// The whole catalogue: a bulk operation, whatever its size.
    async fn items(&self) -> Result<Vec<ChannelItem>, SyncError> {
        // Items, then each one's levels by `__parentId` (Shopify does not promise children
        // follow their parent), kept as they arrive in their compact form.
        let mut roots: Vec<(Sku, String)> = Vec::new();
        let mut levels: HashMap<String, HashMap<String, i64>> = HashMap::new();
        self.bulk_read(ITEMS_BULK, |line| match line["__parentId"].as_str() {
            Some(parent) => {
                if let Some(level) = level(&line) {
                    levels.entry(parent.to_owned()).or_default().extend([level]);
                }
            }
            None => {
                let sku = line["sku"].as_str().and_then(|s| Sku::parse(s).ok());
                if let (Some(sku), Some(id)) = (sku, line["id"].as_str()) {
                    roots.push((sku, id.to_owned()));
                }
            }
        })
        .await?;
        Ok(roots
            .into_iter()
            .map(|(sku, id)| ChannelItem {
                sku,
                levels: levels.remove(&id).unwrap_or_default(),
                inventory_item: id,
            })
            .collect())
    }

    async fn items_with_skus(&self, skus: &[Sku]) -> Result<Vec<ChannelItem>, SyncError> {
        let mut items = Vec::new();
        // Shopify's search syntax; a page of terms per query keeps the query string short.
        for chunk in skus.chunks(SKUS_PER_SEARCH) {
            let query = chunk
                .iter()
                .map(|sku| format!("sku:'{}'", sku.as_str().replace('\'', "\\'")))
                .collect::<Vec<_>>()
                .join(" OR ");
            items.extend(self.inventory_items(query).await?);
        }
        // The search matches loosely (prefixes, case): keep the exact SKUs asked for.
        items.retain(|item| skus.contains(&item.sku));
        Ok(items)
    }

    async fn set_available(
        &self,
        changes: &[StockChange],
        idempotency_key: &str,
    ) -> Result<Vec<usize>, SyncError> {
        if changes.is_empty() {
            return Ok(Vec::new());
        }
        let quantities: Vec<Value> = changes
            .iter()
            .map(|c| {
                json!({"inventoryItemId": c.inventory_item, "locationId": c.location, "quantity": c.quantity,
                       "changeFromQuantity": c.change_from})
            })
            .collect();
        let input = json!({"name": "available", "reason": "correction",
                           "referenceDocumentUri": format!("erpsync://stock-sync/{idempotency_key}"), "quantities": quantities});
        let data = self
            .graphql(SET, json!({"input": input, "key": idempotency_key}), 10.0)
            .await?;
        let errors = data["inventorySetQuantities"]["userErrors"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mut stale = Vec::new();
        for error in &errors {
            let index = error["field"]
                .as_array()
                .and_then(|f| f.get(2))
                .and_then(|i| i.as_str()?.parse::<usize>().ok());
            match (error["code"].as_str(), index) {
                (Some("CHANGE_FROM_QUANTITY_STALE"), Some(index)) => stale.push(index),
                _ => {
                    return Err(SyncError::permanent(
                        "channel_rejected",
                        format!(
                            "Shopify refused the stock update: {}",
                            error["message"].as_str().unwrap_or("(no message)")
                        ),
                    ));
                }
            }
        }
        Ok(stale)
    }
}
