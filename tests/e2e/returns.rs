//! Refunds become ERP returns and credit notes: signed `refunds/create` webhooks through
//! shop-webhook onto the returns queue, return-sync behind the emulated event source
//! mapping, a Tryton of each test's own (the stock it checks is not moved by others).

use std::sync::Arc;

use erpsync_aws::sqs::attr;
use erpsync_connectors::TrytonClient;
use erpsync_core::model::ids::Sku;
use erpsync_core::model::state::{SyncState, SyncStatus};
use erpsync_core::ports::ErpStock;
use erpsync_e2e::{ReturnSync, Tryton, World, attribute, fixture, fresh_order, priced};
use erpsync_tools::queues;
use secrecy::SecretString;
use serde_json::{Value, json};

struct ReturnWorld {
    world: World,
    tryton: Tryton,
    returns: Arc<ReturnSync>,
}

impl ReturnWorld {
    async fn start() -> Self {
        let built = World::builder().own_tryton("returns").start().await;
        let (world, tryton) = built.with_tryton();
        let returns = world.return_sync();
        Self {
            world,
            tryton,
            returns,
        }
    }

    fn erp(tryton: &Tryton, world: &World) -> TrytonClient {
        TrytonClient::new(
            &tryton.url,
            SecretString::from(tryton.api_key.clone()),
            world.config.erp.clone(),
        )
        .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Shopify's documented refund for `order_id`, with a fresh id, as `edit` makes it.
    fn refund(&self, order_id: &str, edit: impl FnOnce(&mut Value)) -> (Value, String) {
        let mut refund = fixture("shopify-refunds-create.json");
        let id = uuid::Uuid::new_v4().as_u128() % 9_000_000_000 + 1_000_000_000;
        refund["id"] = json!(id as u64);
        // Each refund's money is a transaction of its own, as in Shopify.
        refund["transactions"][0]["id"] = json!(id as u64 + 1);
        refund["order_id"] = json!(order_id.parse::<u64>().unwrap_or_default());
        edit(&mut refund);
        (refund, id.to_string())
    }

    /// Delivers an order and its later versions (each a signed webhook through order-sync).
    async fn deliver_order(&self, topic: &str, webhook_id: &str, order: &Value) {
        self.world
            .deliver("uk-shop", topic, webhook_id, order)
            .await;
    }

    /// Delivers the refund as Shopify does and runs the returns queue dry.
    async fn deliver_refund(&self, refund: &Value, webhook_id: &str) {
        self.world
            .deliver_refund(&self.returns, "uk-shop", refund, webhook_id)
            .await;
    }

    async fn red_in_stock(&self) -> i64 {
        let erp = ReturnWorld::erp(&self.tryton, &self.world);
        let red = Sku::parse("IPOD2008RED").unwrap_or_else(|e| panic!("{e}"));
        erp.available(std::slice::from_ref(&red), "WH")
            .await
            .unwrap_or_else(|e| panic!("{e}"))
            .get(&red)
            .copied()
            .unwrap_or_default()
    }

    async fn refund_state(&self, order_id: &str, refund_id: &str) -> Option<SyncState> {
        self.world
            .refund_state("uk-shop", order_id, refund_id)
            .await
    }

    /// The return sales booked for a refund, with their credit notes.
    async fn returns(&self, order_id: &str, refund_id: &str) -> Vec<Value> {
        self.world
            .return_sales("uk-shop", order_id, refund_id)
            .await
    }
}

fn credit_total(sale: &Value) -> String {
    erpsync_e2e::decimal(&sale["invoices"][0]["total_amount"])
}

#[tokio::test]
async fn a_refund_with_the_goods_returned_restocks_them_and_makes_one_credit_note() {
    let mut returns = ReturnWorld::start().await;
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    returns
        .world
        .deliver("uk-shop", "orders/create", "wh-order", &order)
        .await;
    returns.world.dispatch(&format!("uk-shop/{order_id}")).await;
    assert_eq!(returns.red_in_stock().await, 99);

    // The red iPod: 199.00 less its 3.33 discount, and the 6 % the ERP charged on it.
    let (refund, refund_id) = returns.refund(&order_id, |refund| {
        priced(refund, 0, "return", "195.67", "11.74", "207.41");
    });
    returns.deliver_refund(&refund, "wh-refund-1").await;
    // Shopify retries the delivery: the same refund, booked once.
    returns.deliver_refund(&refund, "wh-refund-2").await;

    let booked = returns.returns(&order_id, &refund_id).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    let state = returns.refund_state(&order_id, &refund_id).await;
    assert_eq!(
        state.as_ref().map(|s| s.status),
        Some(SyncStatus::Synced),
        "{state:?}"
    );
    let sale = &booked[0];
    assert_eq!(sale["lines"][0]["product"]["code"], "IPOD2008RED");
    assert_eq!(sale["lines"][0]["quantity"].as_f64(), Some(-1.0));
    assert_eq!(sale["shipment_returns"][0]["state"], "done");
    // Posted, and settled by the refund's money (a payment on the refund's gateway journal).
    assert_eq!(sale["invoices"][0]["state"], "paid", "{sale}");
    assert_eq!(
        credit_total(sale),
        "-207.41",
        "the money the shop paid back"
    );
    assert_eq!(returns.red_in_stock().await, 100, "the red iPod is back");
    let state = returns
        .refund_state(&order_id, &refund_id)
        .await
        .unwrap_or_else(|| panic!("no refund state"));
    assert_eq!(state.status, SyncStatus::Synced);
    assert!(
        state
            .note
            .as_deref()
            .unwrap_or_default()
            .contains("goods back in stock"),
        "{state:?}"
    );
    returns.tryton.stop().await;
}

/// Three red iPods, one fulfilled in the shop (a 3PL's fulfilment; the ERP has shipped
/// nothing), then two refunded without restock: one had shipped, one had not. The refund
/// alone cannot say which (its line is `partial`), so return-sync waits for the order's
/// update; order-sync reads the refund against the fulfilments made before it and takes the
/// unshipped unit off the sale; return-sync then credits the shipped one only. Before, the
/// unshipped unit left the sale and was credited too.
#[tokio::test]
async fn a_refund_of_a_partly_fulfilled_line_credits_only_what_had_shipped() {
    let mut returns = ReturnWorld::start().await;
    let (mut order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    erpsync_e2e::set_quantity(&mut order, 1, 3);
    erpsync_e2e::tax_as_rated(&mut order);
    let created = erpsync_e2e::at_version(&order, "2026-11-29T10:00:00Z");
    returns
        .deliver_order("orders/create", "wh-create", &created)
        .await;
    let red = order["line_items"][1]["id"].clone();
    // Two of the three units: 2 x 199.00 less their 2.22 of the line's 3.33 discount, and
    // their 23.75 of its 35.62 tax at 6 %.
    let (mut refund, refund_id) = returns.refund(&order_id, |refund| {
        priced(refund, 0, "no_restock", "395.78", "23.75", "419.53");
        refund["refund_line_items"][0]["quantity"] = json!(2);
        refund["refund_line_items"][0]["line_item"]["fulfillment_status"] = json!("partial");
    });
    refund["created_at"] = json!("2026-11-29T12:00:00Z");
    returns
        .world
        .deliver_refund_once(&returns.returns, "uk-shop", &refund, "wh-refund")
        .await;
    let waiting = returns.refund_state(&order_id, &refund_id).await;
    assert_eq!(
        waiting
            .as_ref()
            .and_then(|s| s.last_error.as_ref())
            .map(|e| e.kind.as_str()),
        Some("refund_awaits_order"),
        "{waiting:?}"
    );

    let mut updated = erpsync_e2e::at_version(&order, "2026-11-29T12:00:05Z");
    updated["line_items"][1]["current_quantity"] = json!(1);
    if let Some(fulfilments) = updated["fulfillments"].as_array_mut() {
        fulfilments.push(json!({
            "id": 1, "status": "success", "created_at": "2026-11-29T11:00:00Z",
            "line_items": [{"id": red, "quantity": 1}]
        }));
    }
    if let Some(refunds) = updated["refunds"].as_array_mut() {
        refunds.push(refund.clone());
    }
    returns
        .deliver_order("orders/updated", "wh-update", &updated)
        .await;
    returns
        .world
        .drain_returns(&returns.returns, std::time::Duration::from_secs(60))
        .await;

    let sale = &returns
        .world
        .erp_sales(&format!("uk-shop/{order_id}"))
        .await[0];
    let red_units: f64 = sale["lines"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|l| l["product"]["code"] == "IPOD2008RED")
        .map(|l| l["quantity"].as_f64().unwrap_or_default())
        .sum();
    assert_eq!(red_units, 2.0, "the unshipped refunded unit left the sale");
    let booked = returns.returns(&order_id, &refund_id).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(
        credit_total(&booked[0]),
        "-209.76",
        "one unit credited: 419.53 paid back less the 197.89 + 11.88 of the unit that left the sale"
    );
    let state = returns.refund_state(&order_id, &refund_id).await;
    assert_eq!(
        state.as_ref().map(|s| s.status),
        Some(SyncStatus::Synced),
        "{state:?}"
    );
    assert!(returns.world.dead_letters().await.is_empty());
    returns.tryton.stop().await;
}

#[tokio::test]
async fn a_refund_without_returned_goods_is_a_credit_note_only() {
    let mut returns = ReturnWorld::start().await;
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    returns
        .world
        .deliver("uk-shop", "orders/create", "wh-order", &order)
        .await;
    returns.world.dispatch(&format!("uk-shop/{order_id}")).await;
    let before = returns.red_in_stock().await;

    // After dispatch the customer keeps the red iPod (no_restock) and gets part of it back.
    let (kept, kept_id) = returns.refund(&order_id, |refund| {
        priced(refund, 0, "no_restock", "50.00", "3.00", "53.00");
    });
    returns.deliver_refund(&kept, "wh-kept").await;
    // Goodwill: money back, no items.
    let (goodwill, goodwill_id) = returns.refund(&order_id, |refund| {
        refund["refund_line_items"] = json!([]);
        refund["transactions"][0]["amount"] = json!("15.00");
        // Without lines the refund names no shop currency: the money counts in the channel's.
        refund["transactions"][0]["currency"] = json!("GBP");
        refund["note"] = json!("late delivery");
    });
    returns.deliver_refund(&goodwill, "wh-goodwill").await;

    let kept_sale = &returns.returns(&order_id, &kept_id).await[0];
    assert_eq!(kept_sale["lines"][0]["product"]["code"], "REFUND");
    assert_eq!(
        kept_sale["shipment_returns"].as_array().map(Vec::len),
        Some(0),
        "nothing comes back"
    );
    assert_eq!(credit_total(kept_sale), "-53.00");
    // Paid back more than the items' amounts (and no adjustment says why): booked, and a
    // person told both amounts.
    let (odd, odd_id) = returns.refund(&order_id, |refund| {
        priced(refund, 0, "no_restock", "50.00", "3.00", "60.00");
    });
    returns.deliver_refund(&odd, "wh-odd").await;
    let state = returns
        .refund_state(&order_id, &odd_id)
        .await
        .unwrap_or_else(|| panic!("no refund state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention, "{state:?}");
    let note = state.note.unwrap_or_default();
    assert!(
        note.contains("totals 53.00") && note.contains("paid back 60.00"),
        "{note}"
    );
    let goodwill_sale = &returns.returns(&order_id, &goodwill_id).await[0];
    assert_eq!(goodwill_sale["lines"][0]["product"]["code"], "REFUND");
    assert_eq!(credit_total(goodwill_sale), "-15.00");
    assert_eq!(goodwill_sale["invoices"][0]["state"], "posted");
    assert_eq!(returns.red_in_stock().await, before, "stock untouched");
    returns.tryton.stop().await;
}

#[tokio::test]
async fn a_refund_for_an_order_the_erp_does_not_know_waits_for_it_then_needs_attention() {
    let mut returns = ReturnWorld::start().await;
    // Overtaken by its refund (a backlog on the orders queue): the refund waits, and is
    // booked once the order is in.
    let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
    let (early, early_id) = returns.refund(&order_id, |refund| {
        priced(refund, 0, "no_restock", "195.67", "11.74", "207.41");
    });
    returns
        .world
        .deliver_refund_once(&returns.returns, "uk-shop", &early, "wh-early")
        .await;
    let waiting = returns.refund_state(&order_id, &early_id).await;
    assert_eq!(
        waiting
            .as_ref()
            .and_then(|s| s.last_error.as_ref())
            .map(|e| e.kind.as_str()),
        Some("order_not_in_erp_yet"),
        "{waiting:?}"
    );
    returns
        .deliver_order("orders/create", "wh-late-order", &order)
        .await;
    returns
        .world
        .drain_returns(&returns.returns, std::time::Duration::from_secs(60))
        .await;
    let booked = returns.returns(&order_id, &early_id).await;
    assert_eq!(booked.len(), 1, "{booked:?}");
    assert_eq!(credit_total(&booked[0]), "-207.41");

    // One that never arrives: parked, once its receives run out, naming the order.
    let (refund, refund_id) = returns.refund("4507894699999", |_| {});
    returns
        .world
        .deliver_refund_once(&returns.returns, "uk-shop", &refund, "wh-unknown")
        .await;
    returns
        .world
        .drain_returns(&returns.returns, std::time::Duration::from_secs(120))
        .await;
    let sqs = aws_sdk_sqs::Client::new(&returns.world.sdk);
    let parked = queues::peek(&sqs, &returns.world.queue("ReturnsDeadLetterQueue"))
        .await
        .unwrap_or_else(|e| panic!("{e:#}"));
    assert_eq!(parked.len(), 1);
    assert_eq!(attribute(&parked[0], attr::ERROR_KIND), "retries_exhausted");
    let reason = attribute(&parked[0], attr::REASON);
    assert!(
        reason.contains("4507894699999") && reason.contains("order_not_in_erp_yet"),
        "{reason}"
    );
    let state = returns
        .refund_state("4507894699999", &refund_id)
        .await
        .unwrap_or_else(|| panic!("no refund state"));
    assert_eq!(state.status, SyncStatus::NeedsAttention);
    returns.tryton.stop().await;
}

/// "Cancel order + refund" in Shopify: the units refunded before dispatch (restock type
/// `cancel`), the order cancelled. Whichever arrives first, the ERP ends with no shipment,
/// nothing to invoice and no credit note; before, the refund credited goods the warehouse was
/// still to ship.
#[tokio::test]
async fn cancel_and_refund_before_dispatch_leave_no_shipment_invoice_or_credit_in_either_order() {
    let mut returns = ReturnWorld::start().await;
    for refund_first in [true, false] {
        let (order, order_id) = fresh_order("shopify-orders-create-multiline-discount-tax.json");
        let created = erpsync_e2e::at_version(&order, "2026-11-29T10:00:00Z");
        returns
            .deliver_order("orders/create", &format!("wh-create-{order_id}"), &created)
            .await;
        let (refund, refund_id) = returns.refund(&order_id, |refund| {
            let lines: Vec<Value> = order["line_items"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|line| {
                    json!({
                        "id": line["id"], "line_item_id": line["id"], "quantity": line["quantity"],
                        "restock_type": "cancel",
                        "subtotal_set": {"shop_money": {"amount": "195.67", "currency_code": "USD"}},
                        "total_tax_set": {"shop_money": {"amount": "11.74", "currency_code": "USD"}},
                        "line_item": {"sku": line["sku"], "fulfillment_status": null}
                    })
                })
                .collect();
            refund["refund_line_items"] = json!(lines);
            refund["transactions"][0]["amount"] = json!("622.23");
        });
        let mut cancelled = erpsync_e2e::at_version(&order, "2026-11-29T10:05:00Z");
        cancelled["cancelled_at"] = json!("2026-11-29T10:05:00Z");
        for line in cancelled["line_items"].as_array_mut().into_iter().flatten() {
            line["current_quantity"] = json!(0);
        }
        cancelled["refunds"] = json!([refund.clone()]);
        let steps = if refund_first {
            ["refund", "cancel"]
        } else {
            ["cancel", "refund"]
        };
        for step in steps {
            if step == "refund" {
                returns
                    .deliver_refund(&refund, &format!("wh-refund-{order_id}"))
                    .await;
            } else {
                returns
                    .deliver_order(
                        "orders/cancelled",
                        &format!("wh-cancel-{order_id}"),
                        &cancelled,
                    )
                    .await;
            }
        }
        let what = if refund_first {
            "refund first"
        } else {
            "cancel first"
        };
        assert!(
            returns.returns(&order_id, &refund_id).await.is_empty(),
            "{what}: no return sale, no credit note"
        );
        let state = returns
            .refund_state(&order_id, &refund_id)
            .await
            .unwrap_or_else(|| panic!("{what}: no refund state"));
        assert_eq!(state.status, SyncStatus::Synced, "{what}: {state:?}");
        let sales = returns
            .world
            .erp_search(
                "sale.sale",
                json!([["reference", "=", format!("uk-shop/{order_id}")]]),
                &["untaxed_amount", "shipments.state", "invoices.state"],
            )
            .await
            .unwrap_or_else(|e| panic!("{e:#}"));
        assert_eq!(sales.len(), 1, "{what}");
        let sale = &sales[0];
        assert_eq!(
            erpsync_e2e::decimal(&sale["untaxed_amount"]),
            "0.00",
            "{what}: {sale}"
        );
        for shipment in sale["shipments"].as_array().into_iter().flatten() {
            assert_eq!(
                shipment["state"], "cancelled",
                "{what}: nothing ships: {sale}"
            );
        }
        for invoice in sale["invoices"].as_array().into_iter().flatten() {
            assert_ne!(
                invoice["state"], "posted",
                "{what}: nothing invoiced: {sale}"
            );
        }
    }
    returns.tryton.stop().await;
}
