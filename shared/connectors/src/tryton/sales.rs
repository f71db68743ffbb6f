//! Sales: found by their reference, created, quoted, confirmed, processed, read, amended and
//! cancelled, and the products their lines name. The customers a sale is for are in
//! `customers`.

use std::collections::HashMap;

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::mapping::CustomerDraft;
use erpsync_core::model::ids::{CountryCode, Email, Sku};
use erpsync_core::model::order::Address;
use erpsync_core::ports::{
    ErpAddress, ErpCustomer, ErpProduct, ErpSale, ErpSaleDetails, ErpSaleLine, ErpSaleState,
    NewSale, SaleAmendment, SalesErp,
};
use reqwest::Method;
use serde_json::{Value, json};

use super::TrytonClient;
use super::transport::unexpected;
use super::values::{decimal_of, id_of, stamp_of, text_of};

fn sale_state(text: &str) -> ErpSaleState {
    match text {
        "draft" => ErpSaleState::Draft,
        "quotation" => ErpSaleState::Quotation,
        "confirmed" => ErpSaleState::Confirmed,
        "processing" => ErpSaleState::Processing,
        "done" => ErpSaleState::Done,
        "cancelled" => ErpSaleState::Cancelled,
        other => ErpSaleState::Other(other.to_owned()),
    }
}

fn sale_of(value: &Value) -> Result<ErpSale, SyncError> {
    let id = id_of(value, "id").ok_or_else(|| unexpected("a sale without an id"))?;
    Ok(ErpSale {
        id,
        number: text_of(value, "number"),
        state: sale_state(&text_of(value, "state").unwrap_or_default()),
    })
}

impl TrytonClient {
    async fn sale_action(&self, sale_id: i64, action: &str) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let query = [("f", "number".to_owned()), ("f", "state".to_owned())];
        let result = self
            .call(
                Method::POST,
                &format!("model/sale.sale/{sale_id}/{action}"),
                &query,
                Some(&json!({})),
                Some(&refs.context),
            )
            .await?;
        sale_of(&result)
    }
}

impl TrytonClient {
    /// A gift card sold is issued and mailed by the shop. Tryton's `sale_gift_card` would
    /// make (and mail) its own when the sale is processed, for every unit that has no card
    /// yet: recording the shop's cards on the line first leaves it none to make, while the
    /// line still books to the gift-card liability account. Done before quoting, so a retry
    /// after a lost answer finds the cards and makes no second set.
    async fn record_shop_gift_cards(&self, sale_id: i64) -> Result<(), SyncError> {
        let lines = self
            .search(
                "sale.line",
                json!([
                    ["sale", "=", sale_id],
                    ["product.template.gift_card", "=", true],
                    ["quantity", ">", 0]
                ]),
                &["quantity", "unit_price", "product", "gift_cards"],
                None,
            )
            .await?;
        if lines.is_empty() {
            return Ok(());
        }
        let refs = self.references().await?;
        let sale = self
            .read("sale.sale", sale_id, &["reference", "currency"])
            .await?;
        let reference = text_of(&sale, "reference").unwrap_or_else(|| sale_id.to_string());
        for line in &lines {
            let Some(line_id) = id_of(line, "id") else {
                continue;
            };
            let issued = line["gift_cards"].as_array().map_or(0, Vec::len);
            let units = decimal_of(&line["quantity"])
                .and_then(|q| rust_decimal::prelude::ToPrimitive::to_u32(&q.trunc()))
                .unwrap_or(0);
            for unit in issued..usize::try_from(units).unwrap_or(0) {
                self.create(
                    "sale.gift_card",
                    &json!({
                        "company": refs.company,
                        "number": format!("{reference}/{line_id}-{}", unit + 1),
                        "product": id_of(line, "product"),
                        "value": line["unit_price"].clone(),
                        "currency": id_of(&sale, "currency"),
                        "origin": format!("sale.line,{line_id}"),
                    }),
                )
                .await?;
            }
        }
        Ok(())
    }
}

#[async_trait]
impl SalesErp for TrytonClient {
    async fn find_sale_by_reference(&self, reference: &str) -> Result<Option<ErpSale>, SyncError> {
        let rows = self
            .search(
                "sale.sale",
                json!([["reference", "=", reference]]),
                &["number", "state"],
                Some(json!([["id", "ASC"]])),
            )
            .await?;
        // The furthest along wins (a lost create can leave a younger or older draft beside
        // it); among equals the oldest; a cancelled one only when nothing else is left.
        let rank = |row: &&Value| match row["state"].as_str() {
            Some("processing" | "confirmed" | "done") => 0,
            Some("quotation") => 1,
            Some("draft") => 2,
            _ => 3,
        };
        rows.iter().min_by_key(rank).map(sale_of).transpose()
    }

    async fn drop_duplicate_drafts(
        &self,
        reference: &str,
        keep: i64,
    ) -> Result<Vec<i64>, SyncError> {
        let drafts = self
            .search(
                "sale.sale",
                json!([
                    ["reference", "=", reference],
                    ["state", "=", "draft"],
                    ["id", "!=", keep]
                ]),
                &["id"],
                None,
            )
            .await?;
        let refs = self.references().await?;
        let mut dropped = Vec::new();
        for id in drafts.iter().filter_map(|row| id_of(row, "id")) {
            self.call(
                Method::DELETE,
                &format!("model/sale.sale/{id}"),
                &[],
                None,
                Some(&refs.context),
            )
            .await?;
            dropped.push(id);
        }
        Ok(dropped)
    }

    async fn products_by_sku(&self, skus: &[Sku]) -> Result<HashMap<Sku, ErpProduct>, SyncError> {
        let codes: Vec<&str> = skus.iter().map(Sku::as_str).collect();
        let rows = self
            .search(
                "product.product",
                json!([["code", "in", codes]]),
                &["code", "default_uom"],
                None,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                let sku = Sku::parse(&text_of(row, "code")?).ok()?;
                Some((
                    sku,
                    ErpProduct {
                        id: id_of(row, "id")?,
                        unit_id: id_of(row, "default_uom")?,
                    },
                ))
            })
            .collect())
    }

    // The customer methods are `customers`' (parties and their addresses).
    async fn find_customer_by_email(
        &self,
        email: &Email,
    ) -> Result<Option<ErpCustomer>, SyncError> {
        self.customer_with_email(email).await
    }

    async fn create_customer(&self, customer: &CustomerDraft) -> Result<ErpCustomer, SyncError> {
        self.create_party(customer).await
    }

    async fn add_address(
        &self,
        customer_id: i64,
        address: &Address,
    ) -> Result<ErpAddress, SyncError> {
        self.add_party_address(customer_id, address).await
    }

    async fn rename_customer(&self, customer_id: i64, name: &str) -> Result<(), SyncError> {
        self.rename_party(customer_id, name).await
    }

    async fn create_sale(&self, sale: &NewSale<'_>) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let draft = sale.draft;
        let currency = *refs
            .currencies
            .get(draft.currency.as_str())
            .ok_or_else(|| {
                SyncError::permanent(
                    "unknown_currency",
                    format!(
                        "currency {} is not set up in the ERP; add it to Tryton, then redrive",
                        draft.currency
                    ),
                )
            })?;
        let mut taxes = HashMap::new();
        for name in draft.tax_names() {
            let id = self
                .id_by_name(
                    "account.tax",
                    "name",
                    &name,
                    "a [[channels.tax_codes]] erp_tax",
                )
                .await?;
            taxes.insert(name, id);
        }
        let carrier = match &draft.carrier {
            Some(name) => Some(
                self.id_by_name("carrier", "party.name", name, "[channels.delivery_methods]")
                    .await?,
            ),
            None => None,
        };
        let mut lines = Vec::with_capacity(draft.lines.len());
        for line in &draft.lines {
            let line_taxes: Vec<i64> = line
                .taxes
                .iter()
                .filter_map(|t| taxes.get(t).copied())
                .collect();
            let product = sale.products.get(&line.sku).ok_or_else(|| {
                SyncError::permanent(
                    "unknown_sku",
                    format!("SKU {} is not a product in the ERP", line.sku),
                )
            })?;
            lines.push(json!({
                "type": "line",
                "product": product.id,
                "unit": product.unit_id,
                "quantity": line.quantity,
                "unit_price": line.unit_price.to_string(),
                "description": line.description,
                "taxes": [["add", line_taxes]],
            }));
        }
        let body = json!({
            "company": refs.company,
            "party": sale.customer_id,
            "invoice_address": sale.invoice_address_id,
            "shipment_address": sale.shipment_address_id,
            "reference": draft.reference,
            "description": draft.description,
            "currency": currency,
            "warehouse": refs.warehouse,
            "payment_term": refs.payment_term,
            "carrier": carrier,
            // sale_shipment_cost: the shop already charged shipping as a line.
            "shipment_cost_method": null,
            "lines": [["create", lines]],
        });
        let id = self.create("sale.sale", &body).await?;
        Ok(ErpSale {
            id,
            number: None,
            state: ErpSaleState::Draft,
        })
    }

    async fn quote_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.record_shop_gift_cards(sale_id).await?;
        self.sale_action(sale_id, "quote").await
    }

    async fn confirm_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.sale_action(sale_id, "confirm").await
    }

    async fn process_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        self.sale_action(sale_id, "process").await
    }

    async fn sale_details(&self, sale_id: i64) -> Result<ErpSaleDetails, SyncError> {
        let sale = self
            .read(
                "sale.sale",
                sale_id,
                &[
                    "number",
                    "state",
                    "party",
                    "invoice_address",
                    "shipment_address.street",
                    "shipment_address.postal_code",
                    "shipment_address.city",
                    "shipment_address.country.code",
                    "lines.type",
                    "lines.product.code",
                    "lines.unit",
                    "lines.quantity",
                    "lines.unit_price",
                    "lines.description",
                    "lines.taxes.type",
                    "lines.taxes.rate",
                    "shipments.state",
                    "invoices.state",
                    "amendments.state",
                    "amendments.create_date",
                ],
            )
            .await?;
        let address = &sale["shipment_address"];
        let lines = sale["lines"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter(|line| line["type"] == "line")
            .filter_map(|line| {
                Some(ErpSaleLine {
                    id: id_of(line, "id")?,
                    sku: line["product"]["code"]
                        .as_str()
                        .and_then(|c| Sku::parse(c).ok()),
                    product_id: id_of(line, "product"),
                    unit_id: id_of(line, "unit"),
                    quantity: decimal_of(&line["quantity"])?,
                    unit_price: decimal_of(&line["unit_price"])?,
                    description: text_of(line, "description"),
                    tax_rates: line["taxes"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default()
                        .iter()
                        .filter(|tax| tax["type"] == "percentage")
                        .filter_map(|tax| decimal_of(&tax["rate"]))
                        .collect(),
                })
            })
            .collect();
        let states = |field: &str| -> Vec<String> {
            sale[field]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|r| text_of(r, "state"))
                .collect()
        };
        Ok(ErpSaleDetails {
            sale: sale_of(&sale)?,
            customer_id: id_of(&sale, "party")
                .ok_or_else(|| unexpected("a sale without a party"))?,
            invoice_address_id: id_of(&sale, "invoice_address")
                .ok_or_else(|| unexpected("a sale without an invoice address"))?,
            shipment_address: ErpAddress {
                id: id_of(address, "id")
                    .ok_or_else(|| unexpected("a sale without a shipment address"))?,
                street: text_of(address, "street"),
                postal_code: text_of(address, "postal_code"),
                city: text_of(address, "city"),
                country: address["country"]["code"]
                    .as_str()
                    .and_then(|c| CountryCode::parse(c).ok()),
            },
            lines,
            // Waiting shipments are still re-planned by an amendment; anything further on is
            // the warehouse's.
            fulfilment_started: states("shipments")
                .iter()
                .any(|s| !matches!(s.as_str(), "draft" | "waiting" | "cancelled")),
            invoiced: states("invoices")
                .iter()
                .any(|s| !matches!(s.as_str(), "draft" | "cancelled")),
            draft_amendment_since: sale["amendments"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|a| a["state"] == "draft")
                .filter_map(stamp_of)
                .max(),
        })
    }

    async fn cancel_sale(&self, sale_id: i64) -> Result<ErpSale, SyncError> {
        let sale = sale_of(
            &self
                .read("sale.sale", sale_id, &["number", "state"])
                .await?,
        )?;
        if sale.state == ErpSaleState::Confirmed {
            // Tryton cancels only drafts and quotations; a confirmed sale goes back first.
            self.sale_action(sale_id, "draft").await?;
        }
        self.sale_action(sale_id, "cancel").await
    }

    async fn amend_sale(
        &self,
        sale_id: i64,
        amendment: &SaleAmendment,
    ) -> Result<ErpSale, SyncError> {
        let mut lines: Vec<Value> = amendment
            .lines
            .iter()
            .map(|line| {
                json!({
                    "action": "line",
                    "line": line.line_id,
                    "product": line.product_id,
                    "unit": line.unit_id,
                    "quantity": line.quantity.to_string().parse::<f64>().unwrap_or_default(),
                    "unit_price": line.unit_price.to_string(),
                    "description": line.description,
                })
            })
            .collect();
        if let Some(shipment_address) = amendment.shipment_address_id {
            let sale = self
                .read("sale.sale", sale_id, &["party", "invoice_address"])
                .await?;
            lines.push(json!({
                "action": "party",
                "party": id_of(&sale, "party"),
                "invoice_party": null,
                "invoice_address": id_of(&sale, "invoice_address"),
                "shipment_party": null,
                "shipment_address": shipment_address,
            }));
        }
        let body = json!({
            "sale": sale_id,
            "description": amendment.description.chars().take(200).collect::<String>(),
            "lines": [["create", lines]],
        });
        let id = self.create("sale.amendment", &body).await?;
        let refs = self.references().await?;
        self.call(
            Method::POST,
            &format!("model/sale.amendment/{id}/validate_amendment"),
            &[],
            Some(&json!({})),
            Some(&refs.context),
        )
        .await?;
        sale_of(
            &self
                .read("sale.sale", sale_id, &["number", "state"])
                .await?,
        )
    }
}
