//! Returns: a return sale made from the original sale's lines, then settled (the goods
//! received back when restocked, its credit note posted).

use async_trait::async_trait;
use erpsync_core::SyncError;
use erpsync_core::model::ids::Sku;
use erpsync_core::ports::{ErpSale, ErpSaleState, SalesErp};
use reqwest::Method;
use serde_json::{Value, json};

use super::TrytonClient;
use super::transport::{encode, unexpected};
use super::values::{decimal_of, id_of, text_of};
use erpsync_core::ports::{ReturnDraft, ReturnProduct, ReturnsErp, SettledReturn};

impl TrytonClient {
    /// Posts an invoice or credit note made from a sale. Its lines carry the taxes mapped from
    /// the shop per destination, which Tryton warns differ from the products' defaults; that
    /// difference is deliberate, so the warning is skipped here.
    pub(super) async fn post_with_shop_taxes(&self, invoice_id: i64) -> Result<(), SyncError> {
        let refs = self.references().await?;
        let context = encode(&json!({"company": refs.company, "_skip_warnings": true}));
        self.call(
            Method::POST,
            &format!("model/account.invoice/{invoice_id}/post"),
            &[],
            Some(&json!({})),
            Some(&context),
        )
        .await?;
        Ok(())
    }
}

#[async_trait]
impl ReturnsErp for TrytonClient {
    async fn create_return(&self, draft: &ReturnDraft) -> Result<ErpSale, SyncError> {
        let refs = self.references().await?;
        let original = self
            .read(
                "sale.sale",
                draft.original_sale,
                &[
                    "party",
                    "invoice_address",
                    "shipment_address",
                    "currency",
                    "warehouse",
                    "payment_term",
                    "lines.product",
                    "lines.unit",
                    "lines.taxes",
                ],
            )
            .await?;
        let original_lines = original["lines"].as_array().cloned().unwrap_or_default();
        let like = |id: Option<i64>| {
            id.and_then(|id| original_lines.iter().find(|l| id_of(l, "id") == Some(id)))
        };
        let services: Vec<Sku> = draft
            .lines
            .iter()
            .filter_map(|l| match &l.product {
                ReturnProduct::Service(sku) => Some(sku.clone()),
                ReturnProduct::Goods => None,
            })
            .collect();
        let products = self.products_by_sku(&services).await?;
        let mut lines = Vec::with_capacity(draft.lines.len());
        for line in &draft.lines {
            let source = like(line.like_line);
            let taxes: Vec<i64> = source
                .and_then(|s| s["taxes"].as_array())
                .into_iter()
                .flatten()
                .filter_map(Value::as_i64)
                .collect();
            let (product, unit) = match &line.product {
                ReturnProduct::Goods => {
                    let source = source.ok_or_else(|| {
                        unexpected("a returned item without its original sale line")
                    })?;
                    (id_of(source, "product"), id_of(source, "unit"))
                }
                ReturnProduct::Service(sku) => {
                    let product = products.get(sku).ok_or_else(|| {
                        SyncError::permanent(
                            "erp_setup",
                            format!(
                                "the ERP has no service product {sku} for refunds ([erp] refund_sku / shipping_sku): create it, then redrive"
                            ),
                        )
                    })?;
                    (Some(product.id), Some(product.unit_id))
                }
            };
            lines.push(json!({
                "type": "line",
                "product": product,
                "unit": unit,
                "quantity": line.quantity.to_string(),
                "unit_price": line.unit_price.to_string(),
                "description": line.description,
                "taxes": [["add", taxes]],
            }));
        }
        let body = json!({
            "company": refs.company,
            "party": id_of(&original, "party"),
            "invoice_address": id_of(&original, "invoice_address"),
            "shipment_address": id_of(&original, "shipment_address"),
            "reference": draft.reference,
            "description": draft.description,
            "currency": id_of(&original, "currency"),
            "warehouse": id_of(&original, "warehouse").unwrap_or(refs.warehouse),
            "payment_term": id_of(&original, "payment_term").unwrap_or(refs.payment_term),
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

    async fn settle_return(&self, sale_id: i64, restock: bool) -> Result<SettledReturn, SyncError> {
        let sale = self
            .read(
                "sale.sale",
                sale_id,
                &[
                    "shipment_returns.state",
                    "invoices.state",
                    "invoices.number",
                    "invoices.total_amount",
                ],
            )
            .await?;
        let mut restocked = false;
        for shipment in sale["shipment_returns"].as_array().into_iter().flatten() {
            let Some(id) = id_of(shipment, "id") else {
                continue;
            };
            let state = shipment["state"].as_str().unwrap_or_default();
            if restock && state == "draft" {
                self.call_button("stock.shipment.out.return", id, "receive")
                    .await?;
            }
            if restock && matches!(state, "draft" | "received") {
                self.call_button("stock.shipment.out.return", id, "do")
                    .await?;
            }
            restocked |= restock;
        }
        let invoices = sale["invoices"].as_array().cloned().unwrap_or_default();
        let Some(invoice) = invoices.first() else {
            return Err(SyncError::retryable(
                "credit_note_pending",
                format!("the ERP has not made the credit note of return sale {sale_id} yet"),
            ));
        };
        let invoice_id = id_of(invoice, "id").ok_or_else(|| unexpected("an invoice without id"))?;
        if invoice["state"] == "draft" || invoice["state"] == "validated" {
            self.post_with_shop_taxes(invoice_id).await?;
        }
        let posted = self
            .read("account.invoice", invoice_id, &["number", "total_amount"])
            .await?;
        Ok(SettledReturn {
            credit_note: text_of(&posted, "number"),
            credit_total: decimal_of(&posted["total_amount"]).unwrap_or_default(),
            restocked,
        })
    }
}
