//! Customer shipments done, as shipments of their sales, for the shops' fulfilments.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use serde_json::{Value, json};

use super::TrytonClient;
use super::values::{datetime_value, id_of, stamp_of, text_of};
use erpsync_core::ports::{ErpShipment, ErpShipments, ShipmentKey, ShipmentPage};

#[async_trait]
impl ErpShipments for TrytonClient {
    async fn shipments_done_since(
        &self,
        since: time::OffsetDateTime,
        after: Option<ShipmentKey>,
        limit: usize,
    ) -> Result<ShipmentPage, SyncError> {
        let stamp = datetime_value(since);
        let mut domain = vec![
            json!(["state", "=", "done"]),
            json!([
                "OR",
                ["create_date", ">=", stamp],
                ["write_date", ">=", stamp]
            ]),
        ];
        // A shipment is done by a write, so its write date is its stamp, and the id orders
        // those done in one transaction (one stamp). Pages follow on from the last row read
        // (not an offset): a shipment written again or undone meanwhile shifts nothing.
        if let Some(after) = after {
            let last = datetime_value(after.changed_at);
            domain.push(json!([
                "OR",
                ["write_date", ">", last],
                ["AND", ["write_date", "=", last], ["id", ">", after.id]]
            ]));
        }
        let rows = self
            .search_page(
                "stock.shipment.out",
                Value::Array(domain),
                SHIPMENT_FIELDS,
                Some(json!([["write_date", "ASC"], ["id", "ASC"]])),
                None,
                Some((0, limit)),
            )
            .await?;
        let last = rows.last().and_then(|row| {
            Some(ShipmentKey {
                changed_at: stamp_of(row)?,
                id: id_of(row, "id")?,
            })
        });
        Ok(ShipmentPage {
            rows: rows.len(),
            last,
            shipments: self.shipments_of(&rows).await?,
        })
    }

    async fn shipment(&self, id: i64) -> Result<Option<ErpShipment>, SyncError> {
        let rows = self
            .search(
                "stock.shipment.out",
                json!([["id", "=", id], ["state", "=", "done"]]),
                SHIPMENT_FIELDS,
                None,
            )
            .await?;
        Ok(self.shipments_of(&rows).await?.into_iter().next())
    }
}

/// What a customer shipment is read with.
const SHIPMENT_FIELDS: &[&str] = &[
    "number",
    "reference",
    "create_date",
    "write_date",
    "carrier.party.name",
    "outgoing_moves.product.code",
    "outgoing_moves.quantity",
    "outgoing_moves.state",
    "outgoing_moves.sale",
];

impl TrytonClient {
    /// Customer shipment rows as shipments of their sales (rows of no sale are left out).
    async fn shipments_of(&self, rows: &[Value]) -> Result<Vec<ErpShipment>, SyncError> {
        let ids: Vec<i64> = rows.iter().filter_map(|r| id_of(r, "id")).collect();
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        // The sale each shipment belongs to, read through its moves (each move's origin is a
        // sale line): one read of the sales by id. Searching `sale.sale` on its `shipments`
        // (a computed field) scanned every sale's moves and outlasted the client's 30 s at
        // 2,000 sales on SQLite.
        let mut sale_ids: Vec<i64> = rows
            .iter()
            .flat_map(|row| row["outgoing_moves"].as_array().into_iter().flatten())
            .filter_map(|line| line["sale"].as_i64())
            .collect();
        sale_ids.sort_unstable();
        sale_ids.dedup();
        let sales = if sale_ids.is_empty() {
            Vec::new()
        } else {
            self.search(
                "sale.sale",
                json!([["id", "in", sale_ids]]),
                &["reference", "shipment_state"],
                None,
            )
            .await?
        };
        let by_id: HashMap<i64, (String, String)> = sales
            .iter()
            .filter_map(|sale| {
                Some((
                    id_of(sale, "id")?,
                    (
                        text_of(sale, "reference").unwrap_or_default(),
                        text_of(sale, "shipment_state").unwrap_or_default(),
                    ),
                ))
            })
            .collect();
        let mut sale_of: HashMap<i64, (String, String)> = HashMap::new();
        for row in rows {
            let sale = row["outgoing_moves"]
                .as_array()
                .into_iter()
                .flatten()
                .find_map(|line| line["sale"].as_i64().and_then(|id| by_id.get(&id)));
            if let (Some(id), Some(sale)) = (id_of(row, "id"), sale) {
                sale_of.insert(id, sale.clone());
            }
        }
        let mut shipments = Vec::with_capacity(rows.len());
        for row in rows {
            let (Some(id), Some(changed_at)) = (id_of(row, "id"), stamp_of(row)) else {
                continue;
            };
            let Some((sale_reference, sale_shipment_state)) = sale_of.get(&id).cloned() else {
                // Not from a sale (a manual shipment): nothing for a shop to show.
                continue;
            };
            let mut moves: Vec<(Sku, u32)> = Vec::new();
            for line in row["outgoing_moves"].as_array().into_iter().flatten() {
                let (Some(sku), Some(quantity)) = (
                    line["product"]["code"]
                        .as_str()
                        .and_then(|c| Sku::parse(c).ok()),
                    line["quantity"].as_f64(),
                ) else {
                    continue;
                };
                if line["state"] == "done" && quantity > 0.0 {
                    moves.push((sku, quantity.round() as u32));
                }
            }
            shipments.push(ErpShipment {
                id,
                number: text_of(row, "number").unwrap_or_else(|| id.to_string()),
                sale_reference,
                moves,
                tracking_number: text_of(row, "reference").filter(|r| !r.trim().is_empty()),
                carrier: row["carrier"]["party"]["name"].as_str().map(str::to_owned),
                sale_shipment_state,
                changed_at,
            });
        }
        Ok(shipments)
    }
}
